import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { APIConnectionError, APIError, OpenAI } from 'openai'
import { Stream } from 'openai/streaming'
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, ChatCompletionMessageParam, ChatCompletionToolChoiceOption } from 'openai/resources/chat/completions'
import type { VendorId } from '../schemas/models.js'
import { attemptControl, type StopReason } from './attempt.js'
import { toFinishReason, type ChatCall, type ChatEvent, type ChatMessage, type ChatProvider, type ChatUsage, type FinishReason, type ToolChoice } from './chat.js'
import { ProviderError } from './provider-error.js'
import { DEFAULT_RETRY_POLICY, withRetry, type RetryPolicy } from './retry.js'
import { VENDORS, vendorError } from './vendors.js'

/** The first streamed chunk, and every next one, must come within this (SPEC §9). */
export const FIRST_BYTE_TIMEOUT_MS = 15_000
export const MODERATION_MODEL = 'omni-moderation-latest'

/** An OpenAI SDK error (or a stop of ours) as the contract's error, for the vendor behind the endpoint. */
export function mapOpenAIError (err: unknown, stopped: StopReason | null, log: FastifyBaseLogger, vendor: VendorId = 'openai', model?: string): ProviderError {
  if (stopped !== null) return vendorError(vendor, { kind: 'stopped', reason: stopped }, log)
  if (err instanceof ProviderError) return err
  if (err instanceof APIConnectionError) return vendorError(vendor, { kind: 'connection' }, log)
  if (err instanceof APIError && err.status !== undefined) {
    const answer = { status: err.status, code: typeof err.code === 'string' ? err.code : null, type: err.type ?? null, message: err.message }
    return vendorError(vendor, { kind: 'http', answer, headers: err.headers }, log, model)
  }
  return vendorError(vendor, { kind: 'unreadable' }, log)
}

/**
 * A failed answer of the Chat Completions API as the SDK's error, built as the SDK builds it (`makeStatusError`):
 * a JSON body without an `error` field is the error itself (Gemini answers an array), a body that is not JSON is the
 * message. `mapOpenAIError` then reads it like any other.
 */
export function openaiStatusError (status: number, body: string, headers: Headers): APIError {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {}
  const error = typeof json === 'object' && json !== null && (json as { error?: unknown }).error == null ? { error: json } : json
  return APIError.generate(status, error as object | undefined, json ? undefined : body, headers)
}

/** A turn in the Chat Completions format: tool calls as `tool_calls`, a tool's answer with its `tool_call_id`. */
export function openaiMessage (message: ChatMessage): ChatCompletionMessageParam {
  if (message.role === 'tool') return { role: 'tool', tool_call_id: message.toolCallId, content: message.content }
  if (message.role === 'assistant' && message.toolCalls !== undefined && message.toolCalls.length > 0) {
    return {
      role: 'assistant',
      content: message.content === '' ? null : message.content,
      tool_calls: message.toolCalls.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }))
    }
  }
  return { role: message.role, content: message.content }
}

const openaiToolChoice = (choice: ToolChoice): ChatCompletionToolChoiceOption =>
  typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } }

export interface OpenAIChatOptions {
  /** Who is behind the endpoint (default openai): how errors are read and which request fields it takes. */
  vendor?: VendorId
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

/**
 * OpenAI, or any vendor speaking its Chat Completions format (Qwen, DeepSeek, xAI, Gemini), through the official
 * SDK; its own retries are off so that one policy rules.
 */
export function createOpenAIChat (opts: OpenAIChatOptions) {
  const vendor = opts.vendor ?? 'openai'
  const client = new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseURL, maxRetries: 0, timeout: opts.timeoutMs })
  const idleMs = Math.min(opts.firstByteTimeoutMs ?? FIRST_BYTE_TIMEOUT_MS, opts.timeoutMs)
  const policy = opts.retry ?? DEFAULT_RETRY_POLICY
  const log = opts.log

  const userField = VENDORS[vendor].userField
  /** OpenAI's own fields (`store`, `safety_identifier`, `max_completion_tokens`) go to OpenAI only; compatible vendors take `max_tokens`. */
  const body = (call: ChatCall): Omit<ChatCompletionCreateParams, 'stream'> => ({
    model: call.model ?? opts.model,
    messages: call.messages.map(openaiMessage),
    ...(call.tools.length === 0
      ? {}
      : { tools: call.tools.map((tool) => ({ type: 'function' as const, function: tool })), tool_choice: openaiToolChoice(call.toolChoice ?? 'auto') }),
    ...(call.responseFormat === undefined
      ? {}
      : { response_format: { type: 'json_schema' as const, json_schema: { name: call.responseFormat.name, strict: call.responseFormat.strict ?? true, schema: call.responseFormat.schema } } }),
    ...(call.temperature === undefined ? {} : { temperature: call.temperature }),
    ...(call.stop === undefined ? {} : { stop: call.stop }),
    ...(vendor === 'openai'
      ? { safety_identifier: call.user, store: false, max_completion_tokens: call.maxOutputTokens }
      : { max_tokens: call.maxOutputTokens, ...(userField === 'user' ? { user: call.user } : {}) })
  })
  /**
   * Chat completions go straight over the global fetch with the Chat Completions API's documented request
   * (https://platform.openai.com/docs/api-reference/chat/create): the SDK's request machinery costs about as much
   * CPU again as the HTTP call itself (docs/performance.md), and this is the hot path. A failed answer is the SDK's
   * own error (`openaiStatusError`); a stream is read by the SDK's own parser (`Stream.fromSSEResponse`).
   */
  const completionsUrl = `${opts.baseURL.replace(/\/+$/, '')}/chat/completions`
  const headers = (accept: string) => ({ authorization: `Bearer ${opts.apiKey}`, 'content-type': 'application/json', accept })
  const jsonHeaders = headers('application/json')
  const streamHeaders = headers('text/event-stream')

  /** The body of an answer; cut off in the middle, the vendor may have done (and charged) the work, so no retry. */
  async function readText (res: Response, signal: AbortSignal): Promise<string> {
    try {
      return await res.text()
    } catch (err) {
      if (signal.aborted) throw err
      throw vendorError(vendor, { kind: 'unreadable' }, log)
    }
  }

  /** Posts a request; answers the response when it is a success, throws the contract's error when not. */
  async function post (params: ChatCompletionCreateParams, signal: AbortSignal): Promise<Response> {
    let res: Response
    try {
      res = await fetch(completionsUrl, { method: 'POST', headers: params.stream === true ? streamHeaders : jsonHeaders, body: JSON.stringify(params), signal })
    } catch (err) {
      // A stop of ours explains itself (the caller reads the attempt's reason); anything else is the network.
      if (signal.aborted) throw err
      throw vendorError(vendor, { kind: 'connection' }, log)
    }
    if (res.ok) return res
    throw mapOpenAIError(openaiStatusError(res.status, await readText(res, signal), res.headers), null, log, vendor, params.model)
  }

  /** A call answered all at once; a body that is not JSON comes back as its text. */
  async function createCompletion (params: Omit<ChatCompletionCreateParams, 'stream'>, signal: AbortSignal): Promise<ChatCompletion> {
    const res = await post({ ...params, stream: false }, signal)
    const text = await readText(res, signal)
    if (!(res.headers.get('content-type') ?? '').includes('json')) return text as unknown as ChatCompletion
    try {
      return JSON.parse(text) as ChatCompletion
    } catch {
      throw vendorError(vendor, { kind: 'unreadable' }, log)
    }
  }

  const mapError = (err: unknown, stopped: StopReason | null, call?: ChatCall) => mapOpenAIError(err, stopped, log, vendor, call?.model ?? opts.model)

  const retrying = <T>(signal: AbortSignal, attempt: () => Promise<T>) => withRetry(attempt, (err) => (err as ProviderError).retry, {
    policy,
    signal,
    onRetry: (attemptNo, delayMs, err) => log.warn({ provider: vendor, attempt: attemptNo, delayMs, code: (err as ProviderError).code }, 'provider call retried')
  })

  /** One attempt of a call answered all at once (no idle timer: OpenAI sends nothing until the reply is whole). */
  async function once<T> (signal: AbortSignal, deadline: AbortSignal, work: (attemptSignal: AbortSignal) => Promise<T>, call?: ChatCall): Promise<T> {
    const control = attemptControl(signal, deadline, null)
    try {
      const result = await control.race(work(control.signal))
      control.done()
      return result
    } catch (err) {
      control.end()
      throw mapError(err, control.reason(), call)
    }
  }

  async function moderate (texts: string[], signal: AbortSignal) {
    const deadline = AbortSignal.timeout(opts.timeoutMs)
    const result = await retrying(AbortSignal.any([signal, deadline]), async () =>
      once(signal, deadline, (attemptSignal) => client.moderations.create({ model: MODERATION_MODEL, input: texts }, { signal: attemptSignal })))
    return result.results
  }

  const provider = {
    name: vendor,
    model: opts.model,

    async * stream (call: ChatCall): AsyncGenerator<ChatEvent> {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      const retrySignal = AbortSignal.any([call.signal, deadline])
      // Retries end with the first chunk: after it, bytes may already be on their way to the client.
      const opened = await retrying(retrySignal, async () => {
        const control = attemptControl(call.signal, deadline, idleMs)
        try {
          const res = await control.race(post({ ...body(call), stream: true, stream_options: { include_usage: true } }, control.signal))
          const chunks = Stream.fromSSEResponse<ChatCompletionChunk>(res, control.controller)[Symbol.asyncIterator]()
          const first = await control.race(chunks.next())
          control.touch()
          return { control, chunks, first }
        } catch (err) {
          control.end()
          throw mapError(err, control.reason(), call)
        }
      })
      const { control, chunks } = opened
      const tools: Array<{ id: string, name: string, arguments: string }> = []
      let finishReason: FinishReason | null = null
      let usage: ChatUsage | null = null
      let whole = false
      try {
        for (let next = opened.first; next.done !== true; next = await control.race(chunks.next())) {
          control.touch()
          const chunk: ChatCompletionChunk = next.value
          if (chunk.usage != null) usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens }
          const choice = chunk.choices[0]
          if (choice === undefined) continue
          for (const toolCall of choice.delta?.tool_calls ?? []) {
            const open = tools[toolCall.index] ?? { id: '', name: '', arguments: '' }
            open.id += toolCall.id ?? ''
            open.name += toolCall.function?.name ?? ''
            open.arguments += toolCall.function?.arguments ?? ''
            tools[toolCall.index] = open
          }
          if (choice.finish_reason != null) finishReason = toFinishReason(choice.finish_reason)
          const text = choice.delta?.content
          if (typeof text === 'string' && text !== '') yield { type: 'delta', text }
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
        // The SDK ends a stream quietly when it is aborted: a stop of ours then explains the early end.
        throw mapError(new ProviderError('PROVIDER_ERROR', 'The chat provider ended the stream before the reply was complete.'), control.reason(), call)
      }
      // A vendor that names no call id (OpenAI always does) gets one of ours, so a caller can answer the call.
      for (const [i, tool] of tools.entries()) if (tool !== undefined) yield { type: 'tool', id: tool.id === '' ? `call_${i}` : tool.id, name: tool.name, arguments: tool.arguments }
      yield { type: 'end', finishReason, usage }
    },

    async complete (call: ChatCall) {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      const completion = await retrying(AbortSignal.any([call.signal, deadline]), async () =>
        once(call.signal, deadline, (signal) => createCompletion(body(call), signal), call))
      // A body that is not a chat completion (an HTML page from a proxy arrives as text) cannot be read.
      const shape = completion as unknown as { choices?: unknown }
      if (typeof shape !== 'object' || !Array.isArray(shape.choices)) throw new ProviderError('PROVIDER_ERROR', 'The chat provider sent a response that cannot be read.')
      const choice = completion.choices[0] as (typeof completion.choices)[number] | undefined
      if (choice?.message === undefined) throw new ProviderError('PROVIDER_ERROR', 'The chat provider sent no answer.')
      const toolCalls = (choice.message.tool_calls ?? []).flatMap((c) => c.type === 'function' ? [{ id: c.id, name: c.function.name, arguments: c.function.arguments }] : [])
      return {
        text: choice.message.content ?? '',
        toolArguments: toolCalls.map((c) => c.arguments),
        toolCalls,
        finishReason: toFinishReason(choice.finish_reason),
        usage: completion.usage == null ? null : { inputTokens: completion.usage.prompt_tokens, outputTokens: completion.usage.completion_tokens }
      }
    },

    /** True when the moderation endpoint flags any of the texts. */
    async flagged (texts: string[], signal: AbortSignal): Promise<boolean> {
      return (await moderate(texts, signal)).some((r) => r.flagged)
    },

    /** The moderation endpoint's score per category (0 to 1), one record per text. */
    async moderationScores (texts: string[], signal: AbortSignal): Promise<Array<Record<string, number>>> {
      return (await moderate(texts, signal)).map((r) => ({ ...(r.category_scores as unknown as Record<string, number>) }))
    }
  } satisfies ChatProvider & Record<string, unknown>
  return provider
}

export type OpenAIChat = ReturnType<typeof createOpenAIChat>

declare module 'fastify' {
  interface FastifyInstance {
    /** The live chat provider; null when OPENAI_API_KEY is not set (live calls then get PROVIDER_NOT_CONFIGURED). */
    openaiChat: OpenAIChat | null
  }
}

/** Builds the OpenAI client from OPENAI_* variables. No call is made until a user asks something. */
export default fp(async function openaiChat (app) {
  const { OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL, OPENAI_TIMEOUT_MS } = app.config
  app.decorate('openaiChat', OPENAI_API_KEY === undefined
    ? null
    : createOpenAIChat({ apiKey: OPENAI_API_KEY, baseURL: OPENAI_BASE_URL, model: OPENAI_MODEL, timeoutMs: OPENAI_TIMEOUT_MS, log: app.log }))
}, { name: 'openai-chat', fastify: '5.x', dependencies: ['config'] })
