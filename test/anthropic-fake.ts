import { HttpResponse } from 'msw'

/**
 * Responses in the documented shapes of Anthropic's Messages API (a `message` object, and the streamed events
 * message_start, content_block_start/delta/stop, message_delta, message_stop, ping and error), for msw handlers.
 */
export const ANTHROPIC_URL = 'https://api.anthropic.com/v1/messages'

export function anthropicMessage (text: string, opts: { tool?: { name: string, input: unknown }, stopReason?: string, usage?: { input_tokens: number, output_tokens: number } } = {}) {
  const content: unknown[] = text === '' ? [] : [{ type: 'text', text, citations: null }]
  if (opts.tool !== undefined) content.push({ type: 'tool_use', id: 'toolu_01', name: opts.tool.name, input: opts.tool.input })
  return {
    id: 'msg_01fake',
    type: 'message',
    role: 'assistant',
    model: 'claude-haiku-4-5-20251001',
    content,
    stop_reason: opts.stopReason ?? (opts.tool === undefined ? 'end_turn' : 'tool_use'),
    stop_sequence: null,
    usage: { input_tokens: 320, output_tokens: 25, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, ...opts.usage }
  }
}

/** The events of a streamed reply: text deltas, an optional tool call in two JSON pieces, then the closing events. */
export function anthropicEvents (deltas: string[], opts: { tool?: { name: string, input: unknown }, stopReason?: string, usage?: { input: number, output: number } } = {}) {
  const usage = opts.usage ?? { input: 320, output: 25 }
  const events: Array<{ type: string } & Record<string, unknown>> = [
    { type: 'message_start', message: { ...anthropicMessage(''), content: [], stop_reason: null, usage: { input_tokens: usage.input, output_tokens: 1 } } },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'ping' }
  ]
  for (const text of deltas) events.push({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })
  events.push({ type: 'content_block_stop', index: 0 })
  if (opts.tool !== undefined) {
    const json = JSON.stringify(opts.tool.input)
    const cut = Math.floor(json.length / 2)
    events.push({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_01', name: opts.tool.name, input: {} } })
    events.push({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: json.slice(0, cut) } })
    events.push({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: json.slice(cut) } })
    events.push({ type: 'content_block_stop', index: 1 })
  }
  events.push({ type: 'message_delta', delta: { stop_reason: opts.stopReason ?? (opts.tool === undefined ? 'end_turn' : 'tool_use'), stop_sequence: null }, usage: { output_tokens: usage.output } })
  events.push({ type: 'message_stop' })
  return events
}

const encoder = new TextEncoder()

/** An SSE response of the events (`event:` and `data:` lines); `cutAfter` resets, `stallAfter` stops sending. */
export function anthropicStream (events: Array<{ type: string }>, opts: { cutAfter?: number, stallAfter?: number } = {}) {
  const stream = new ReadableStream<Uint8Array>({
    async start (controller) {
      for (const [i, e] of events.entries()) {
        if (opts.cutAfter === i) { controller.error(new Error('connection reset')); return }
        if (opts.stallAfter === i) return
        controller.enqueue(encoder.encode(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`))
        await new Promise((resolve) => setImmediate(resolve))
      }
      controller.close()
    }
  })
  return new HttpResponse(stream, { headers: { 'content-type': 'text/event-stream; charset=utf-8' } })
}

/** Anthropic's error body: `{type: "error", error: {type, message}}`. */
export function anthropicError (status: number, type: string, message: string, headers: Record<string, string> = {}) {
  return HttpResponse.json({ type: 'error', error: { type, message }, request_id: 'req_011fake' }, { status, headers })
}
