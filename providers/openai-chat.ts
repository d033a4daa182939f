import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { APIConnectionError, APIConnectionTimeoutError, APIError, OpenAI } from 'openai'
import type { ChatCompletionChunk, ChatCompletionCreateParams } from 'openai/resources/chat/completions'
import { toFinishReason, type ChatCall, type ChatEvent, type ChatProvider, type ChatUsage, type FinishReason } from './chat.js'
import { ProviderError } from './provider-error.js'
import { DEFAULT_RETRY_POLICY, retryAfterMs, withRetry, type RetryPolicy } from './retry.js'

/** The first streamed chunk, and every next one, must come within this (SPEC §9). */
export const FIRST_BYTE_TIMEOUT_MS = 15_000
export const MODERATION_MODEL = 'omni-moderation-latest'

type StopReason = 'client' | 'deadline' | 'idle'

/**
 * One attempt's abort controller: aborted by the caller's signal, by the whole-call deadline, or by the idle
 * timer (no byte within `idleMs`); remembers which.
 */
function attemptControl (signal: AbortSignal, deadline: AbortSignal, idleMs: number | null) {
  const controller = new AbortController()
  let reason: StopReason | null = null
  const stop = (why: StopReason) => { reason ??= why; controller.abort() }
  const onClient = () => stop('client')
  const onDeadline = () => stop('deadline')
  signal.addEventListener('abort', onClient, { once: true })
  deadline.addEventListener('abort', onDeadline, { once: true })
  let timer: NodeJS.Timeout | undefined
  const touch = () => {
    if (idleMs === null) return
    clearTimeout(timer)
    timer = setTimeout(() => stop('idle'), idleMs)
  }
  // Rejects once the attempt is stopped, whatever the transport does with a pending read.
  const stopped = new Promise<never>((_resolve, reject) => {
    controller.signal.addEventListener('abort', () => reject(new Error('attempt stopped')), { once: true })
  })
  stopped.catch(() => {})
  if (signal.aborted) onClient()
  touch()
  return {
    signal: controller.signal,
    touch,
    /** `work`, or a rejection as soon as the attempt is stopped (a late rejection of `work` is then ignored). */
    race <T>(work: Promise<T>): Promise<T> {
      work.catch(() => {})
      return Promise.race([work, stopped])
    },
    reason: () => reason,
    /** The attempt is over: stop its timer and anything of it still open upstream. */
    end () {
      clearTimeout(timer)
      controller.abort()
      signal.removeEventListener('abort', onClient)
      deadline.removeEventListener('abort', onDeadline)
    }
  }
}

/** An SDK error (or a stop of ours) as the contract's error, retryable where another attempt may help. */
export function mapOpenAIError (err: unknown, stopped: StopReason | null, log: FastifyBaseLogger): ProviderError {
  if (stopped === 'client') return new ProviderError('PROVIDER_ERROR', 'The call was cancelled by the client.')
  if (stopped !== null || err instanceof APIConnectionTimeoutError) {
    return new ProviderError('PROVIDER_TIMEOUT', stopped === 'idle'
      ? 'The chat provider sent nothing within the time limit.'
      : 'The chat provider did not finish within the time limit.')
  }
  if (err instanceof ProviderError) return err
  if (err instanceof APIConnectionError) {
    return new ProviderError('PROVIDER_UNAVAILABLE', 'The chat provider cannot be reached: retry later.', { retry: true })
  }
  if (err instanceof APIError && err.status !== undefined) {
    const status = err.status
    if (status === 429) {
      const after = retryAfterMs(err.headers)
      const headers: Record<string, string> = after === undefined ? {} : { 'retry-after': String(Math.max(1, Math.ceil(after / 1000))) }
      return new ProviderError('PROVIDER_UNAVAILABLE', 'The chat provider is busy: retry later.', { retry: true, afterMs: after }, headers)
    }
    if (status >= 500 || status === 408 || status === 409) {
      return new ProviderError('PROVIDER_ERROR', `The chat provider failed (HTTP ${status}).`, { retry: true, afterMs: retryAfterMs(err.headers) })
    }
    if (status === 401 || status === 403) {
      log.error({ provider: 'openai', status }, 'OpenAI refused the configured key (OPENAI_API_KEY): the assistant is unavailable until it is fixed')
      return new ProviderError('PROVIDER_UNAVAILABLE', 'The chat provider is not available right now.')
    }
    if (status === 404) log.error({ provider: 'openai', status }, 'OpenAI does not know the configured model (OPENAI_MODEL)')
    return new ProviderError('PROVIDER_ERROR', `The chat provider refused the request (HTTP ${status}).`)
  }
  return new ProviderError('PROVIDER_ERROR', 'The chat provider sent a response that cannot be read.')
}

export interface OpenAIChatOptions {
  apiKey: string
  baseURL: string
  model: string
  /** Whole call, all attempts included. */
  timeoutMs: number
  firstByteTimeoutMs?: number
  retry?: RetryPolicy
  log: FastifyBaseLogger
}

/** OpenAI (or any compatible endpoint) through the official SDK; its own retries are off so that one policy rules. */
export function createOpenAIChat (opts: OpenAIChatOptions) {
  const client = new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseURL, maxRetries: 0, timeout: opts.timeoutMs })
  const idleMs = Math.min(opts.firstByteTimeoutMs ?? FIRST_BYTE_TIMEOUT_MS, opts.timeoutMs)
  const policy = opts.retry ?? DEFAULT_RETRY_POLICY
  const log = opts.log

  const body = (call: ChatCall): Omit<ChatCompletionCreateParams, 'stream'> => ({
    model: opts.model,
    messages: call.messages,
    tools: [{ type: 'function', function: { name: call.tool.name, description: call.tool.description, parameters: call.tool.parameters } }],
    tool_choice: 'auto',
    safety_identifier: call.user,
    store: false,
    max_completion_tokens: call.maxOutputTokens
  })

  const retrying = <T>(signal: AbortSignal, attempt: () => Promise<T>) => withRetry(attempt, (err) => (err as ProviderError).retry, {
    policy,
    signal,
    onRetry: (attemptNo, delayMs, err) => log.warn({ provider: 'openai', attempt: attemptNo, delayMs, code: (err as ProviderError).code }, 'provider call retried')
  })

  /** One attempt of a call answered all at once (no idle timer: OpenAI sends nothing until the reply is whole). */
  async function once<T> (signal: AbortSignal, deadline: AbortSignal, work: (attemptSignal: AbortSignal) => Promise<T>): Promise<T> {
    const control = attemptControl(signal, deadline, null)
    try {
      const result = await control.race(work(control.signal))
      control.end()
      return result
    } catch (err) {
      control.end()
      throw mapOpenAIError(err, control.reason(), log)
    }
  }

  const provider = {
    name: 'openai',
    model: opts.model,

    async * stream (call: ChatCall): AsyncGenerator<ChatEvent> {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      const retrySignal = AbortSignal.any([call.signal, deadline])
      // Retries end with the first chunk: after it, bytes may already be on their way to the client.
      const opened = await retrying(retrySignal, async () => {
        const control = attemptControl(call.signal, deadline, idleMs)
        try {
          const stream = await control.race(client.chat.completions.create({ ...body(call), stream: true, stream_options: { include_usage: true } }, { signal: control.signal }))
          const chunks = stream[Symbol.asyncIterator]()
          const first = await control.race(chunks.next())
          control.touch()
          return { control, chunks, first }
        } catch (err) {
          control.end()
          throw mapOpenAIError(err, control.reason(), log)
        }
      })
      const { control, chunks } = opened
      const tools: string[] = []
      let finishReason: FinishReason | null = null
      let usage: ChatUsage | null = null
      try {
        for (let next = opened.first; next.done !== true; next = await control.race(chunks.next())) {
          control.touch()
          const chunk: ChatCompletionChunk = next.value
          if (chunk.usage != null) usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens }
          const choice = chunk.choices[0]
          if (choice === undefined) continue
          for (const toolCall of choice.delta?.tool_calls ?? []) {
            tools[toolCall.index] = (tools[toolCall.index] ?? '') + (toolCall.function?.arguments ?? '')
          }
          if (choice.finish_reason != null) finishReason = toFinishReason(choice.finish_reason)
          const text = choice.delta?.content
          if (typeof text === 'string' && text !== '') yield { type: 'delta', text }
        }
      } catch (err) {
        throw mapOpenAIError(err, control.reason(), log)
      } finally {
        control.end()
      }
      if (finishReason === null) {
        // The SDK ends a stream quietly when it is aborted: a stop of ours then explains the early end.
        throw mapOpenAIError(new ProviderError('PROVIDER_ERROR', 'The chat provider ended the stream before the reply was complete.'), control.reason(), log)
      }
      for (const args of tools) if (args !== undefined) yield { type: 'tool', arguments: args }
      yield { type: 'end', finishReason, usage }
    },

    async complete (call: ChatCall) {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      const completion = await retrying(AbortSignal.any([call.signal, deadline]), async () =>
        once(call.signal, deadline, (signal) => client.chat.completions.create({ ...body(call), stream: false }, { signal })))
      // A body that is not a chat completion (an HTML page from a proxy arrives as text) cannot be read.
      const shape = completion as unknown as { choices?: unknown }
      if (typeof shape !== 'object' || !Array.isArray(shape.choices)) throw new ProviderError('PROVIDER_ERROR', 'The chat provider sent a response that cannot be read.')
      const choice = completion.choices[0] as (typeof completion.choices)[number] | undefined
      if (choice?.message === undefined) throw new ProviderError('PROVIDER_ERROR', 'The chat provider sent no answer.')
      return {
        text: choice.message.content ?? '',
        toolArguments: (choice.message.tool_calls ?? []).flatMap((c) => c.type === 'function' ? [c.function.arguments] : []),
        finishReason: toFinishReason(choice.finish_reason),
        usage: completion.usage === undefined ? null : { inputTokens: completion.usage.prompt_tokens, outputTokens: completion.usage.completion_tokens }
      }
    },

    /** True when the moderation endpoint flags any of the texts. */
    async flagged (texts: string[], signal: AbortSignal): Promise<boolean> {
      const deadline = AbortSignal.timeout(opts.timeoutMs)
      const result = await retrying(AbortSignal.any([signal, deadline]), async () =>
        once(signal, deadline, (attemptSignal) => client.moderations.create({ model: MODERATION_MODEL, input: texts }, { signal: attemptSignal })))
      return result.results.some((r) => r.flagged)
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
