import { PassThrough } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError, toEnvelope } from '../../../../plugins/errors.js'
import { costMicroUsd } from '../../../../plugins/chats.js'
import type { CallEstimate, MeteredCall } from '../../../../plugins/metering.js'
import type { ModelEntry } from '../../../../plugins/models.js'
import { toCents } from '../../../../plugins/money.js'
import type { OpenAIChat } from '../../../../providers/openai-chat.js'
import { MAX_OUTPUT_TOKENS } from '../../../../plugins/settings-assistant.js'
import { estimatePromptTokens, estimateTokens, type ChatCall, type ChatEvent, type ChatProvider, type ChatUsage } from '../../../../providers/chat.js'
import { ErrorResponse, errorResponses, type ErrorResponseBody } from '../../../../schemas/errors.js'
import type { Principal } from '../../../../schemas/principal.js'
import { SSE_TYPE, sseFrame, sseHeaders, sseSchema, wantsStream } from '../../../sse.js'
import { ref } from '../../../../schemas/refs.js'
import { errorOutcome } from '../../../../providers/provider-error.js'
import {
  ASSISTANT_STREAM_DESCRIPTION, AssistantDelta, AssistantDone, AssistantReply, AssistantRequest, Suggestion,
  type AssistantReplyValue, type AssistantRequestValue
} from '../../../../schemas/settings-assistant.js'

/**
 * The assistant's live provider: the catalog model of SETTINGS_ASSISTANT_MODEL on its vendor (null without that
 * vendor's key), or OpenAI with OPENAI_MODEL (null without OPENAI_API_KEY).
 */
function liveProvider (app: FastifyInstance): ChatProvider | null {
  const id = app.config.SETTINGS_ASSISTANT_MODEL
  if (id === undefined) return app.openaiChat
  // Checked at startup: a model of the catalog that can call tools.
  const entry = app.models.get(id) as ModelEntry
  const vendor = app.models.provider(entry.vendor)
  if (vendor === undefined) return null
  return {
    name: vendor.name,
    model: entry.id,
    stream: (call) => vendor.stream({ ...call, model: entry.upstreamModel }),
    complete: async (call) => vendor.complete({ ...call, model: entry.upstreamModel })
  }
}

type ModelPrice = NonNullable<Parameters<MeteredCall['settle']>[0]['price']>

const messages: FastifyPluginAsyncTypebox = async (app) => {
  const assistant = app.settingsAssistant
  const live = liveProvider(app)
  /** A call stopped by the shutdown (not by its client) says so, whatever the provider's error said. */
  const stopping = () => app.readiness.stopSignal.aborted
  /** Why a call that reached the provider ended early: it was charged for the prompt either way. */
  const abortOutcome = () => stopping() ? 'shutdown' : 'client-aborted'

  /** The provider call in the metrics: `ok` or what ended it, its seconds, and for a stream its first token's. */
  function observe (request: FastifyRequest, provider: ChatProvider, outcome: string, started: number, firstAt?: number) {
    app.metrics.providerCall({
      feature: 'settings-assistant',
      mode: (request.principal as Principal).mode,
      vendor: provider.name,
      model: provider.model,
      outcome,
      seconds: (performance.now() - started) / 1000,
      ...(firstAt === undefined ? {} : { firstTokenSeconds: (firstAt - started) / 1000 })
    })
  }
  /** What ended a call that failed: its client, the shutdown, or the provider's error code. */
  const ended = (call: ChatCall, err: unknown) => call.signal.aborted ? abortOutcome() : errorOutcome(err)

  /** Units of a finished (or cut) call: the provider's counts, or ours (flagged) when it sent none. Never zero. */
  function measured (call: ChatCall, usage: ChatUsage | null, generated: string): { usage: ChatUsage, estimated: boolean } {
    if (usage !== null) return { usage, estimated: false }
    return { usage: { inputTokens: estimatePromptTokens(call), outputTokens: estimateTokens(generated) }, estimated: true }
  }

  /**
   * What a call of `provider` costs: at the catalog's prices for a catalog model (SETTINGS_ASSISTANT_MODEL, or
   * OPENAI_MODEL when the catalog has it), else at the plans file's price table.
   */
  function priced (provider: ChatProvider, inputTokens: number, outputTokens: number): CallEstimate & { price?: ModelPrice } {
    const entry = app.models.get(provider.model)
    if (entry === undefined) return { provider: provider.name, model: provider.model, unitsIn: inputTokens, unitsOut: outputTokens }
    return {
      costMicroUsd: costMicroUsd(entry, inputTokens, outputTokens),
      price: { inputMicroUsdPer1M: entry.inputMicroUsdPer1M, outputMicroUsdPer1M: entry.outputMicroUsdPer1M }
    }
  }

  async function settle (request: FastifyRequest, metered: MeteredCall, provider: ChatProvider, units: { usage: ChatUsage, estimated: boolean }, outcome: string) {
    const { inputTokens, outputTokens } = units.usage
    const pricing = priced(provider, inputTokens, outputTokens)
    const charged = await metered.settle({
      provider: provider.name,
      model: provider.model,
      unitsIn: inputTokens,
      unitsOut: outputTokens,
      units: inputTokens + outputTokens,
      estimated: units.estimated,
      ...('costMicroUsd' in pricing ? { costMicroUsd: pricing.costMicroUsd, price: pricing.price } : {})
    })
    request.log.info({ provider: provider.name, model: provider.model, inputTokens, outputTokens, estimated: units.estimated, costMicroUsd: charged, outcome }, 'assistant call settled')
    return { quota: metered.quotaAfter(inputTokens + outputTokens), usage: { inputTokens, outputTokens, costMicroUsd: charged, costCents: toCents(charged) } }
  }

  function checked (request: FastifyRequest, toolArguments: string[]) {
    const { accepted, dropped } = assistant.checkSuggestions(toolArguments)
    const droppedCount = Object.values(dropped).reduce((a, b) => a + b, 0)
    if (droppedCount > 0) request.log.info({ accepted: accepted.length, dropped }, 'assistant suggestions dropped')
    return accepted
  }

  /** The JSON reply: one provider call, suggestions checked, usage settled. */
  async function replyJson (request: FastifyRequest, provider: ChatProvider, call: ChatCall, metered: MeteredCall): Promise<AssistantReplyValue> {
    let result: Awaited<ReturnType<ChatProvider['complete']>>
    const started = performance.now()
    try {
      result = await provider.complete(call)
    } catch (err) {
      observe(request, provider, ended(call, err), started)
      // A call stopped (its client left, or the shutdown) has had its prompt sent: that is charged. Any other failure charged nothing.
      if (call.signal.aborted) await settle(request, metered, provider, measured(call, null, ''), abortOutcome())
      else await metered.release()
      throw app.readiness.failure(err as Error)
    }
    observe(request, provider, 'ok', started)
    const suggestions = checked(request, result.toolArguments)
    const units = measured(call, result.usage, result.text + result.toolArguments.join(''))
    const { quota, usage } = await settle(request, metered, provider, units, 'completed')
    return { id: request.id, reply: result.text, suggestions, finishReason: result.finishReason, usage, quota }
  }

  /**
   * The SSE reply. Headers wait for the provider's first event, so a failure before it is an ordinary error
   * response (and may still be retried upstream); after it, a failure ends the stream with an `error` event.
   */
  async function replyStream (request: FastifyRequest, reply: FastifyReply, provider: ChatProvider, call: ChatCall, metered: MeteredCall) {
    const started = performance.now()
    const events = provider.stream(call)[Symbol.asyncIterator]()
    let first: IteratorResult<ChatEvent>
    try {
      first = await events.next()
    } catch (err) {
      observe(request, provider, ended(call, err), started)
      if (call.signal.aborted) await settle(request, metered, provider, measured(call, null, ''), abortOutcome())
      else await metered.release()
      throw app.readiness.failure(err as Error)
    }
    const firstAt = performance.now()
    const out = new PassThrough()
    const write = (event: string, data: unknown) => { if (!out.writableEnded && !out.destroyed) out.write(sseFrame(event, data)) }

    const pump = async () => {
      let text = ''
      const tools: string[] = []
      try {
        let end: Extract<ChatEvent, { type: 'end' }> | undefined
        for (let next = first; next.done !== true; next = await events.next()) {
          const event = next.value
          if (event.type === 'delta') {
            text += event.text
            write('delta', { text: event.text })
          } else if (event.type === 'tool') {
            tools.push(event.arguments)
          } else {
            end = event
          }
        }
        const finished = end as Extract<ChatEvent, { type: 'end' }>
        for (const suggestion of checked(request, tools)) write('suggestion', suggestion)
        const units = measured(call, finished.usage, text + tools.join(''))
        observe(request, provider, 'ok', started, firstAt)
        const { quota, usage } = await settle(request, metered, provider, units, 'completed')
        write('done', { id: request.id, finishReason: finished.finishReason, usage, quota })
      } catch (err) {
        const clientLeft = call.signal.aborted && !stopping()
        observe(request, provider, ended(call, err), started, firstAt)
        await settle(request, metered, provider, measured(call, null, text + tools.join('')), call.signal.aborted ? abortOutcome() : 'provider-failed')
        if (!clientLeft) {
          const envelope = toEnvelope(app.readiness.failure(err as Error))
          request.log.warn({ err }, 'assistant stream ended with an error event')
          request.errorCode = envelope.code
          const body: ErrorResponseBody = { error: { code: envelope.code, message: envelope.message, requestId: request.id } }
          write('error', body)
        }
      } finally {
        out.end()
      }
    }

    sseHeaders(reply)
    // pump() settles every outcome itself and never rejects.
    pump()
    return reply.send(out)
  }

  app.post('/messages', {
    config: { auth: 'ai-token', feature: 'settings-assistant' },
    schema: {
      operationId: 'askSettingsAssistant',
      summary: 'Ask the Settings Assistant',
      description: 'Sends the question (with optional history and app context) to the assistant. With `Accept: text/event-stream` ' +
        'the answer streams as server-sent events; otherwise one JSON reply. Suggestions are checked against the catalog: ' +
        'the app receives only known settings with allowed values. Quota is counted in tokens (X-Quota-* headers); ' +
        '`AI-Provider` names the provider (`sandbox` for test-mode tokens).',
      tags: ['settings-assistant'],
      security: [{ aiToken: [] }],
      body: ref(AssistantRequest),
      response: {
        200: {
          description: 'The reply: JSON, or an SSE stream when asked for with `Accept: text/event-stream`.',
          content: {
            'application/json': { schema: ref(AssistantReply) },
            [SSE_TYPE]: { schema: sseSchema(ASSISTANT_STREAM_DESCRIPTION, { delta: AssistantDelta, suggestion: Suggestion, done: AssistantDone, error: ErrorResponse }) }
          }
        },
        ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'QUOTA_EXCEEDED', 'CONTENT_REJECTED',
          'RATE_LIMITED', 'PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT')
      }
    }
  }, async (request, reply) => {
    const principal = request.principal as Principal
    const body = request.body as AssistantRequestValue
    // Test-mode tokens only ever reach the sandbox; live ones only a real provider.
    const provider: ChatProvider | null = principal.mode === 'test' ? app.sandboxChat : live
    if (provider === null) {
      throw new AppError('PROVIDER_NOT_CONFIGURED', 'The Settings Assistant is not set up on this server (no key for its model\'s vendor): use a test-mode key, or ask the operator.')
    }
    reply.header('ai-provider', provider.name)

    const signal = app.readiness.callSignal(reply.raw)
    const call: ChatCall = {
      messages: assistant.messages(body),
      tools: [assistant.tool],
      user: app.hash.user(principal.userId),
      maxOutputTokens: MAX_OUTPUT_TOKENS,
      signal
    }
    // MODERATION=openai starts only with OPENAI_API_KEY; test-mode calls never leave the process.
    if (app.config.MODERATION === 'openai' && principal.mode === 'live') {
      const texts = [body.message, ...(body.history ?? []).filter((t) => t.role === 'user').map((t) => t.content)]
      if (await (app.openaiChat as OpenAIChat).flagged(texts, signal)) {
        request.log.info({ check: 'moderation' }, 'message refused by moderation')
        throw new AppError('CONTENT_REJECTED', 'The message was refused by the content policy check: rephrase it.')
      }
    }
    const metered = await app.meter(request, reply, estimatePromptTokens(call) + MAX_OUTPUT_TOKENS, priced(provider, estimatePromptTokens(call), MAX_OUTPUT_TOKENS))
    if (wantsStream(request.headers.accept)) return replyStream(request, reply, provider, call, metered)
    return replyJson(request, provider, call, metered)
  })
}

export default messages
