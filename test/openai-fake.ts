import { HttpResponse } from 'msw'

/**
 * Responses in the documented shapes of OpenAI's Chat Completions API (chat.completion objects and
 * chat.completion.chunk server-sent events), for msw handlers.
 */
export const OPENAI_URL = 'https://api.openai.com/v1/chat/completions'
export const MODERATION_URL = 'https://api.openai.com/v1/moderations'

export interface FakeSuggestion { settingId: string, value: unknown, reason: string }

/** A function call of the model, as the fakes send it: its id, the function's name and its arguments (any JSON). */
export interface FakeToolCall { id: string, name: string, arguments: unknown }

const settingsCall = (suggestions: FakeSuggestion[]): FakeToolCall[] =>
  suggestions.length === 0 ? [] : [{ id: 'call_1', name: 'suggest_settings', arguments: { suggestions } }]

/** A chat.completion with text (null: none) and any function tool calls. */
export function completionWith (text: string | null, toolCalls: FakeToolCall[] = [], usage = { prompt_tokens: 900, completion_tokens: 40 }) {
  return {
    id: 'chatcmpl-fake1',
    object: 'chat.completion',
    created: 1_763_800_000,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [{
      index: 0,
      message: {
        role: 'assistant',
        content: text,
        refusal: null,
        ...(toolCalls.length === 0
          ? {}
          : { tool_calls: toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: JSON.stringify(c.arguments) } })) })
      },
      logprobs: null,
      finish_reason: toolCalls.length === 0 ? 'stop' : 'tool_calls'
    }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens }
  }
}

export function completion (text: string, suggestions: FakeSuggestion[] = [], usage = { prompt_tokens: 900, completion_tokens: 40 }) {
  return completionWith(text, settingsCall(suggestions), usage)
}

const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
  id: 'chatcmpl-fake2', object: 'chat.completion.chunk', created: 1_763_800_000, model: 'gpt-4o-mini-2024-07-18', system_fingerprint: 'fp_1', choices, ...extra
})

/** The `data:` payloads of a streamed reply: deltas, each tool call's arguments in two pieces, finish, then the usage chunk. */
export function chunksWith (deltas: string[], toolCalls: FakeToolCall[] = [], usage: { prompt_tokens: number, completion_tokens: number } | null = { prompt_tokens: 900, completion_tokens: 40 }) {
  const out: unknown[] = [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }])]
  for (const text of deltas) out.push(chunk([{ index: 0, delta: { content: text }, finish_reason: null }]))
  for (const [index, call] of toolCalls.entries()) {
    const args = JSON.stringify(call.arguments)
    const cut = Math.floor(args.length / 2)
    out.push(chunk([{ index: 0, delta: { tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }, finish_reason: null }]))
    out.push(chunk([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: args.slice(0, cut) } }] }, finish_reason: null }]))
    out.push(chunk([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: args.slice(cut) } }] }, finish_reason: null }]))
  }
  out.push(chunk([{ index: 0, delta: {}, finish_reason: toolCalls.length > 0 ? 'tool_calls' : 'stop' }]))
  if (usage !== null) out.push(chunk([], { usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } }))
  return out
}

/** The `data:` payloads of a streamed reply: deltas, tool-call argument pieces, finish, then the usage chunk. */
export function streamChunks (deltas: string[], suggestions: FakeSuggestion[] = [], usage: { prompt_tokens: number, completion_tokens: number } | null = { prompt_tokens: 900, completion_tokens: 40 }) {
  return chunksWith(deltas, settingsCall(suggestions), usage)
}

const encoder = new TextEncoder()

/**
 * An SSE response of the given chunks, ending with `data: [DONE]`. `cutAfter` errors the body after that many
 * chunks (a connection reset); `stallAfter` stops sending after that many and never ends (until aborted).
 */
export function sseResponse (chunks: unknown[], opts: { cutAfter?: number, stallAfter?: number } = {}) {
  const stream = new ReadableStream<Uint8Array>({
    async start (controller) {
      for (const [i, c] of chunks.entries()) {
        if (opts.cutAfter === i) { controller.error(new Error('connection reset')); return }
        if (opts.stallAfter === i) return
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(c)}\n\n`))
        await new Promise((resolve) => setImmediate(resolve))
      }
      controller.enqueue(encoder.encode('data: [DONE]\n\n'))
      controller.close()
    }
  })
  return new HttpResponse(stream, { headers: { 'content-type': 'text/event-stream; charset=utf-8' } })
}

/** OpenAI's error body. */
export function openaiError (status: number, message: string, headers: Record<string, string> = {}) {
  return HttpResponse.json({ error: { message, type: status === 429 ? 'rate_limit_exceeded' : 'server_error', param: null, code: null } }, { status, headers })
}

/** The categories of omni-moderation-latest, as its moderation objects list them. */
export const MODERATION_CATEGORIES = ['harassment', 'harassment/threatening', 'hate', 'hate/threatening', 'illicit', 'illicit/violent', 'self-harm',
  'self-harm/instructions', 'self-harm/intent', 'sexual', 'sexual/minors', 'violence', 'violence/graphic'] as const

/** A moderation object (POST /v1/moderations) with the given scores, every other category near 0; `flagged` as OpenAI sets it. */
export function moderation (scoresPerInput: Array<Partial<Record<(typeof MODERATION_CATEGORIES)[number], number>>>) {
  return {
    id: 'modr-fake1',
    model: 'omni-moderation-latest',
    results: scoresPerInput.map((scores) => {
      const all = Object.fromEntries(MODERATION_CATEGORIES.map((c) => [c, scores[c] ?? 0.000012]))
      return {
        flagged: Object.values(all).some((s) => s >= 0.5),
        categories: Object.fromEntries(MODERATION_CATEGORIES.map((c) => [c, (all[c] as number) >= 0.5])),
        category_scores: all,
        category_applied_input_types: Object.fromEntries(MODERATION_CATEGORIES.map((c) => [c, ['text']]))
      }
    })
  }
}
