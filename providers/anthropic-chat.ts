import { Anthropic, APIConnectionError, APIError } from '@anthropic-ai/sdk'
import type {
  ContentBlockParam, MessageCreateParamsBase, MessageParam, RawMessageStreamEvent, StopReason as AnthropicStopReason, ToolChoice as AnthropicToolChoice
} from '@anthropic-ai/sdk/resources/messages/messages'
import type { FastifyBaseLogger } from 'fastify'
import { attemptControl, type StopReason } from './attempt.js'
import type { ChatCall, ChatCompletion, ChatEvent, ChatMessage, ChatProvider, ChatUsage, FinishReason, ToolChoice } from './chat.js'
import { FIRST_BYTE_TIMEOUT_MS } from './openai-chat.js'
import { ProviderError } from './provider-error.js'
import { DEFAULT_RETRY_POLICY, withRetry, type RetryPolicy } from './retry.js'
import { vendorError } from './vendors.js'

/** Anthropic's stop reasons in the contract's words: a refusal is a content filter, running out of room is `length`. */
export function toAnthropicFinish (reason: AnthropicStopReason | null | undefined): FinishReason {
  if (reason === 'max_tokens' || reason === 'model_context_window_exceeded') return 'length'
  if (reason === 'refusal') return 'content_filter'
  return 'stop'
}

/** An Anthropic SDK error (or a stop of ours) as the contract's error. */
export function mapAnthropicError (err: unknown, stopped: StopReason | null, log: FastifyBaseLogger, model?: string): ProviderError {
  if (stopped !== null) return vendorError('anthropic', { kind: 'stopped', reason: stopped }, log)
  if (err instanceof ProviderError) return err
  if (err instanceof APIConnectionError) return vendorError('anthropic', { kind: 'connection' }, log)
  // An `error` event inside a stream arrives as an APIError without a status: Anthropic's overloaded_error, mostly.
  if (err instanceof APIError) {
    const answer = { status: err.status ?? (err.type === 'overloaded_error' ? 529 : 500), code: err.errorCode, type: err.type, message: err.message }
    return vendorError('anthropic', { kind: 'http', answer, headers: err.headers }, log, model)
  }
  return vendorError('anthropic', { kind: 'unreadable' }, log)
}

export interface AnthropicChatOptions {
  apiKey: string
  baseURL: string
  /** The model of calls that name none. */
  model: string
  /** Whole call, all attempts included. */
  timeoutMs: number
  firstByteTimeoutMs?: number
  retry?: RetryPolicy
  log: FastifyBaseLogger
}

/** A turn's content blocks: its text, then its tool calls as `tool_use` (arguments parsed), or a tool's answer as `tool_result`. */
function blocksOf (message: ChatMessage): ContentBlockParam[] {
  if (message.role === 'tool') return [{ type: 'tool_result', tool_use_id: message.toolCallId, content: message.content }]
  const text: ContentBlockParam[] = message.content === '' ? [] : [{ type: 'text', text: message.content }]
  if (message.role !== 'assistant' || message.toolCalls === undefined) return text
  return [...text, ...message.toolCalls.map((c): ContentBlockParam => ({ type: 'tool_use', id: c.id, name: c.name, input: JSON.parse(c.arguments === '' ? '{}' : c.arguments) as Record<string, unknown> }))]
}

const anthropicToolChoice = (choice: ToolChoice): AnthropicToolChoice => {
  if (choice === 'required') return { type: 'any' }
  return typeof choice === 'string' ? { type: choice } : { type: 'tool', name: choice.name }
}

/**
 * The Messages API's request: system text apart, turns alternating user/assistant starting with the user (turns of
 * one role in a row are joined; a tool's answer is a user turn of `tool_result` blocks), tools with their JSON
 * schema, the keyed user hash as `metadata.user_id`. A turn of text only stays a string.
 */
export function anthropicRequest (call: ChatCall, model: string): MessageCreateParamsBase {
  const system = call.messages.filter((m) => m.role === 'system').map((m) => m.content).join('\n\n')
  const turns: Array<{ role: 'user' | 'assistant', blocks: ContentBlockParam[] }> = []
  for (const m of call.messages) {
    if (m.role === 'system') continue
    const role = m.role === 'assistant' ? 'assistant' : 'user'
    const last = turns.at(-1)
    if (last !== undefined && last.role === role) last.blocks.push(...blocksOf(m))
    else turns.push({ role, blocks: blocksOf(m) })
  }
  if (turns[0]?.role === 'assistant') turns.unshift({ role: 'user', blocks: [{ type: 'text', text: '(conversation continues)' }] })
  const messages: MessageParam[] = turns.map(({ role, blocks }) => ({
    role,
    content: blocks.every((b) => b.type === 'text') ? blocks.map((b) => (b as { text: string }).text).join('\n\n') : blocks
  }))
  return {
    model: call.model ?? model,
    max_tokens: call.maxOutputTokens,
    ...(system === '' ? {} : { system }),
    messages,
    ...(call.tools.length === 0
      ? {}
      : {
          tools: call.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.parameters as { type: 'object' } })),
          ...(call.toolChoice === undefined ? {} : { tool_choice: anthropicToolChoice(call.toolChoice) })
        }),
    ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
    ...(call.stop === undefined ? {} : { stop_sequences: call.stop }),
    metadata: { user_id: call.user }
  }
}

/** Anthropic's Messages API through its official SDK (not its OpenAI-compatible endpoint); SDK retries off, one policy rules. */
export function createAnthropicChat (opts: AnthropicChatOptions) {
  const client = new Anthropic({ apiKey: opts.apiKey, baseURL: opts.baseURL, maxRetries: 0, timeout: opts.timeoutMs })
  const idleMs = Math.min(opts.firstByteTimeoutMs ?? FIRST_BYTE_TIMEOUT_MS, opts.timeoutMs)
  const policy = opts.retry ?? DEFAULT_RETRY_POLICY
  const log = opts.log
  const mapError = (err: unknown, stopped: StopReason | null, call: ChatCall) => mapAnthropicError(err, stopped, log, call.model ?? opts.model)
  const retrying = <T>(signal: AbortSignal, attempt: () => Promise<T>) => withRetry(attempt, (err) => (err as ProviderError).retry, {
    policy,
    signal,
    onRetry: (attemptNo, delayMs, err) => log.warn({ provider: 'anthropic', attempt: attemptNo, delayMs, code: (err as ProviderError).code }, 'provider call retried')
  })

  return {
    name: 'anthropic',
    model: opts.model,

    async * stream (call: ChatCall): AsyncGenerator<ChatEvent> {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      // Retries end with the first event: after it, bytes may already be on their way to the client.
      const opened = await retrying(AbortSignal.any([call.signal, deadline]), async () => {
        const control = attemptControl(call.signal, deadline, idleMs)
        try {
          const stream = await control.race(client.messages.create({ ...anthropicRequest(call, opts.model), stream: true }, { signal: control.signal }))
          const events = stream[Symbol.asyncIterator]()
          const first = await control.race(events.next())
          control.touch()
          return { control, events, first }
        } catch (err) {
          control.end()
          throw mapError(err, control.reason(), call)
        }
      })
      const { control, events } = opened
      const tools = new Map<number, { id: string, name: string, arguments: string }>()
      let inputTokens: number | null = null
      let outputTokens: number | null = null
      let finishReason: FinishReason | null = null
      let whole = false
      try {
        for (let next = opened.first; next.done !== true; next = await control.race(events.next())) {
          control.touch()
          const event: RawMessageStreamEvent = next.value
          if (event.type === 'message_start') {
            inputTokens = event.message.usage.input_tokens
            outputTokens = event.message.usage.output_tokens
          } else if (event.type === 'content_block_start' && event.content_block.type === 'tool_use') {
            tools.set(event.index, { id: event.content_block.id, name: event.content_block.name, arguments: '' })
          } else if (event.type === 'content_block_delta') {
            if (event.delta.type === 'text_delta' && event.delta.text !== '') yield { type: 'delta', text: event.delta.text }
            const tool = tools.get(event.index)
            if (event.delta.type === 'input_json_delta' && tool !== undefined) tool.arguments += event.delta.partial_json
          } else if (event.type === 'message_delta') {
            // message_delta's usage is cumulative; the input count came with message_start.
            outputTokens = event.usage.output_tokens
            finishReason = toAnthropicFinish(event.delta.stop_reason)
          }
        }
        whole = true
      } catch (err) {
        throw mapError(err, control.reason(), call)
      } finally {
        // A stream read to its end leaves nothing open; one left early (a failure, or a reader that stopped) is aborted.
        if (whole) control.done()
        else control.end()
      }
      if (finishReason === null) {
        throw mapError(new ProviderError('PROVIDER_ERROR', 'The chat provider ended the stream before the reply was complete.'), control.reason(), call)
      }
      for (const tool of tools.values()) yield { type: 'tool', id: tool.id, name: tool.name, arguments: tool.arguments === '' ? '{}' : tool.arguments }
      const usage: ChatUsage | null = inputTokens === null || outputTokens === null ? null : { inputTokens, outputTokens }
      yield { type: 'end', finishReason, usage }
    },

    async complete (call: ChatCall): Promise<ChatCompletion> {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      const message = await retrying(AbortSignal.any([call.signal, deadline]), async () => {
        const control = attemptControl(call.signal, deadline, null)
        try {
          const result = await control.race(client.messages.create({ ...anthropicRequest(call, opts.model), stream: false }, { signal: control.signal }))
          control.done()
          return result
        } catch (err) {
          control.end()
          throw mapError(err, control.reason(), call)
        }
      })
      if (!Array.isArray((Object(message) as { content?: unknown }).content)) throw new ProviderError('PROVIDER_ERROR', 'The chat provider sent a response that cannot be read.')
      const toolCalls = message.content.flatMap((block) => block.type === 'tool_use' ? [{ id: block.id, name: block.name, arguments: JSON.stringify(block.input) }] : [])
      return {
        text: message.content.flatMap((block) => block.type === 'text' ? [block.text] : []).join(''),
        toolArguments: toolCalls.map((c) => c.arguments),
        toolCalls,
        finishReason: toAnthropicFinish(message.stop_reason),
        usage: { inputTokens: message.usage.input_tokens, outputTokens: message.usage.output_tokens }
      }
    }
  } satisfies ChatProvider
}
