import { randomBytes } from 'node:crypto'
import { PassThrough } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { chatReservation } from '../../../plugins/chats.js'
import { AppError, invalidBody, logFailure, REQUEST_ID_HEADER, toEnvelope, type Envelope } from '../../../plugins/errors.js'
import type { ModelEntry } from '../../../plugins/models.js'
import {
  modelProblem, outputLimit, promptTokens, readCompletionRequest, unsupportedFields, type CompletionInput
} from '../../../plugins/openai-compatible.js'
import type { ChatCall, ChatToolCall, FinishReason } from '../../../providers/chat.js'
import {
  ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, OPENAI_BODY_LIMIT, OPENAI_ERROR_TYPES, OpenAIModelList, openaiErrorResponses,
  type ChatCompletionValue, type OpenAIErrorBody
} from '../../../schemas/openai.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { modelCalls } from '../../model-call.js'
import { SSE_TYPE, sseHeaders, sseSchema } from '../../sse.js'

const FEATURE = 'openai-compatible' as const
const config = { auth: 'ai-token' as const, feature: FEATURE }
const common = { tags: ['openai-compatible'], security: [{ aiToken: [] }] }
const who = (request: FastifyRequest) => request.principal as Principal
const CALL_ERRORS = ['VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'LICENSE_INACTIVE', 'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE', 'CONTENT_REJECTED', 'QUOTA_EXCEEDED', 'INSUFFICIENT_CREDITS', 'RATE_LIMITED', 'PROVIDER_ERROR',
  'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT'] as const

export const STREAM_DESCRIPTION = 'With `stream: true`: server-sent events in OpenAI\'s format, each `data: {chat.completion.chunk}`: ' +
  'the first carries `delta.role`, then `delta.content` pieces, then `delta.tool_calls` (each call whole, with its index and id), ' +
  'then a chunk with `finish_reason`; with `stream_options.include_usage` a last chunk with empty `choices` and `usage` (the others carry ' +
  '`usage: null`); then `data: [DONE]`. A failure after the first chunk is one `data: {"error": {...}}` event in the error shape, and no [DONE].'

/** OpenAI's error body of an envelope: our code in `code`, the first failing field in `param`, the message naming the fields. */
export function openaiError (envelope: Envelope): OpenAIErrorBody {
  const fields = envelope.code === 'VALIDATION_ERROR' && Array.isArray(envelope.details?.fields)
    ? envelope.details.fields as Array<{ path: string, message: string }>
    : []
  const named = fields.slice(0, 5).map((f) => `${f.path === '/' ? 'body' : f.path.slice(1).replaceAll('/', '.')} ${f.message}`)
  const message = named.length === 0 ? envelope.message : `Invalid request: ${named.join('; ')}${fields.length > named.length ? ` (and ${fields.length - named.length} more)` : ''}.`
  const first = fields[0]
  return {
    error: {
      message,
      type: OPENAI_ERROR_TYPES[envelope.status] ?? 'server_error',
      param: first === undefined || first.path === '/' ? null : first.path.slice(1).replaceAll('/', '.'),
      code: envelope.code,
      ...(envelope.details === undefined ? {} : { details: envelope.details })
    }
  }
}

const sseData = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`

/**
 * /v1/openai: Chat Completions and Models in OpenAI's wire format over the model catalog, so that any OpenAI SDK is a
 * client. Metering, credits, rate limits, moderation and the disclosure are those of a feature of the registry.
 */
const openai: FastifyPluginAsyncTypebox = async (app) => {
  const calls = modelCalls(app, {
    feature: FEATURE,
    messages: {
      settled: 'OpenAI-compatible call settled',
      unrecorded: 'an OpenAI-compatible call could not be recorded for analytics',
      streamFailed: 'OpenAI-compatible stream ended with an error event'
    }
  })
  /** `created` of the model list: when this server loaded the catalog. */
  const catalogLoaded = Math.floor(Date.now() / 1000)

  // Every failure under /v1/openai (auth, rate limits, validation, providers) in OpenAI's error shape.
  app.setErrorHandler(async (err: FastifyError, request, reply) => {
    const envelope = toEnvelope(err)
    logFailure(request, err, envelope)
    request.errorCode = envelope.code
    return reply.code(envelope.status).headers(envelope.headers ?? {}).header(REQUEST_ID_HEADER, request.id)
      .type('application/json; charset=utf-8').send(openaiError(envelope))
  })
  app.setNotFoundHandler(async (request) => {
    throw new AppError('NOT_FOUND', 'No such route: the OpenAI-compatible surface has POST /v1/openai/chat/completions and GET /v1/openai/models.')
  })

  /** Refused OpenAI fields are named with the reason before the schema would call them unknown. */
  const refuseUnsupported = async (request: FastifyRequest) => {
    const problems = unsupportedFields(request.body)
    if (problems.length > 0) throw invalidBody(...problems)
  }

  /** Everything before a vendor is called: the request read, the route and its models that can serve it, the reservation. */
  async function prepare (request: FastifyRequest, reply: FastifyReply, input: CompletionInput, modelId: string) {
    const principal = who(request)
    const route = app.models.route({ plan: principal.plan, mode: principal.mode, model: modelId, text: '' })
    const problem = modelProblem(route.model, input)
    if (problem !== null) throw invalidBody(problem)
    const tokens = new Map<string, number>()
    for (const model of [route.model, ...route.chain]) if (!tokens.has(model.id)) tokens.set(model.id, await promptTokens(model, input))
    const tokensOn = (model: ModelEntry) => tokens.get(model.id) as number
    const fits = (model: ModelEntry) => tokensOn(model) + outputLimit(model, input) <= model.contextTokens
    if (!fits(route.model)) {
      throw invalidBody({ path: '/messages', message: `with the reply limit, they exceed the context of ${route.model.id} (${route.model.contextTokens.toLocaleString('en')} tokens)` })
    }
    // A fallback serves only a request it can serve as asked: never with a field dropped or a limit lowered.
    const chain = route.chain.filter((model) => modelProblem(model, input) === null && fits(model))
    const signal = app.readiness.callSignal(reply.raw)
    await calls.screen(request, principal, 'message', input.lastUserText, signal)
    const reservation = chatReservation(chain.concat(route.model).map((model) => ({ model, promptTokens: tokensOn(model), outputTokens: outputLimit(model, input) })))
    const metered = await app.meter(request, reply, reservation.tokens, { costMicroUsd: reservation.costMicroUsd })
    request.log.info({ model: route.model.id, messages: input.messages.length, tools: input.tools.length, stream: input.stream }, 'OpenAI-compatible call')
    const user = app.hash.user(principal.userId)
    const callFor = (model: ModelEntry): ChatCall => ({
      messages: input.messages,
      tools: input.tools,
      ...(input.toolChoice === undefined ? {} : { toolChoice: input.toolChoice }),
      ...(input.temperature === undefined ? {} : { temperature: input.temperature }),
      ...(input.stop === undefined ? {} : { stop: input.stop }),
      ...(input.responseFormat === undefined ? {} : { responseFormat: input.responseFormat }),
      model: model.upstreamModel,
      user,
      maxOutputTokens: outputLimit(model, input),
      signal
    })
    return { principal, route: { ...route, chain }, metered, signal, callFor, promptTokens: tokensOn, noteFailure: calls.noteFailure(request, principal), started: performance.now() }
  }

  const finishOf = (reason: FinishReason, toolCalls: ChatToolCall[]) => reason === 'stop' && toolCalls.length > 0 ? 'tool_calls' as const : reason
  const wireCalls = (toolCalls: ChatToolCall[]) => toolCalls.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }))
  const completionId = () => `chatcmpl-${randomBytes(12).toString('base64url')}`

  app.post('/chat/completions', {
    config,
    bodyLimit: OPENAI_BODY_LIMIT,
    preValidation: refuseUnsupported,
    schema: {
      operationId: 'openaiCreateChatCompletion',
      summary: 'Chat Completions in OpenAI\'s format',
      description: 'OpenAI\'s Chat Completions over the model catalog: point any OpenAI SDK at `{base}/v1/openai` with an AI token as its ' +
        'API key. `model` is a catalog id (GET /v1/openai/models); a vendor failing before answering hands the call to the next model ' +
        'of its fallback chain that can serve the request as asked, and `model` in the answer says which one did (also `AI-Model`, `AI-Provider`). ' +
        'The messages go to the vendor as given (Anthropic models get them in their Messages format). Tokens count against the plan\'s ' +
        'openai-compatible quota (X-Quota-* headers) and, on plans billed in credits, are paid from the balance. Nothing is stored but the ' +
        `usage-ledger row. ${STREAM_DESCRIPTION} Errors are OpenAI-shaped with the service's code in \`error.code\`.`,
      ...common,
      body: ref(ChatCompletionRequest),
      response: {
        200: {
          description: 'The completion (JSON), or its chunks as server-sent events with `stream: true`.',
          content: { 'application/json': { schema: ref(ChatCompletion) }, [SSE_TYPE]: { schema: sseSchema(STREAM_DESCRIPTION, { message: ChatCompletionChunk }) } }
        },
        ...openaiErrorResponses(...CALL_ERRORS)
      }
    }
  }, async (request, reply) => {
    const input = readCompletionRequest(request.body)
    const prepared = await prepare(request, reply, input, request.body.model)
    const created = Math.floor(Date.now() / 1000)
    const id = completionId()

    if (!input.stream) {
      const done = await calls.complete(request, prepared)
      const toolCalls = done.result.toolCalls
      const units = calls.measured(prepared, done.model, done.result.usage, done.result.text + toolCalls.map((c) => c.name + c.arguments).join(''))
      const latency = Math.round(performance.now() - prepared.started)
      // Charged before the reply is checked: a moderation endpoint that fails cannot lose the vendor's charge.
      await calls.settle(request, prepared, done.provider.name, done.model, units, 'completed')
      const { severity } = await calls.screen(request, prepared.principal, 'reply', done.result.text, prepared.signal)
      await calls.recordCharged(request, prepared, done.model, units, severity === 'high' ? 'blocked' : 'completed', { ttftMs: latency, errorCode: null })
      // A reply blocked by moderation is not shown: no content, no tool calls, finish_reason content_filter.
      const blocked = severity === 'high'
      const body: ChatCompletionValue = {
        id,
        object: 'chat.completion',
        created,
        model: done.model.id,
        choices: [{
          index: 0,
          message: {
            role: 'assistant',
            content: blocked || (done.result.text === '' && toolCalls.length > 0) ? null : done.result.text,
            refusal: null,
            ...(blocked || toolCalls.length === 0 ? {} : { tool_calls: wireCalls(toolCalls) })
          },
          logprobs: null,
          finish_reason: blocked ? 'content_filter' : finishOf(done.result.finishReason, toolCalls)
        }],
        usage: { prompt_tokens: units.inputTokens, completion_tokens: units.outputTokens, total_tokens: units.inputTokens + units.outputTokens }
      }
      return reply.header('ai-provider', done.provider.name).header('ai-model', done.model.id).send(body)
    }

    const { opened, ttftMs } = await calls.stream(request, prepared)
    const { model, provider } = opened
    const out = new PassThrough()
    const write = (data: unknown) => { if (!out.writableEnded && !out.destroyed) out.write(sseData(data)) }
    const usageField = input.includeUsage ? { usage: null } : {}
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
      ({ id, object: 'chat.completion.chunk', created, model: model.id, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }], ...usageField })
    write(chunk({ role: 'assistant', content: '' }))
    sseHeaders(reply).header('ai-provider', provider.name).header('ai-model', model.id)
    // The pump settles every outcome itself and never rejects.
    calls.pump(request, prepared, opened, ttftMs, {
      delta: (text) => write(chunk({ content: text })),
      finish: async ({ finishReason, text, toolCalls, units }) => {
        const { severity } = await calls.screen(request, prepared.principal, 'reply', text, prepared.signal)
        await calls.recordCharged(request, prepared, model, units, severity === 'high' ? 'blocked' : 'completed', { ttftMs, errorCode: null })
        if (severity === 'high') throw new AppError('CONTENT_REJECTED', 'The reply was blocked by the content policy check: discard what was shown.')
        for (const [index, call] of wireCalls(toolCalls).entries()) write(chunk({ tool_calls: [{ index, ...call }] }))
        write(chunk({}, finishOf(finishReason, toolCalls)))
        if (input.includeUsage) {
          write({ id, object: 'chat.completion.chunk', created, model: model.id, choices: [], usage: { prompt_tokens: units.inputTokens, completion_tokens: units.outputTokens, total_tokens: units.inputTokens + units.outputTokens } })
        }
        out.write('data: [DONE]\n\n')
      },
      error: (envelope) => write(openaiError(envelope)),
      close: () => out.end()
    })
    return reply.send(out as never)
  })

  app.get('/models', {
    config,
    schema: {
      operationId: 'openaiListModels',
      summary: 'Models in OpenAI\'s format',
      description: 'The catalog models this caller can use now (its plan, the vendors configured on this server; every model in test mode), ' +
        'as OpenAI\'s model list. GET /v1/ai/models has their limits and prices.',
      ...common,
      response: { 200: ref(OpenAIModelList), ...openaiErrorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'LICENSE_INACTIVE', 'RATE_LIMITED') }
    }
  }, async (request) => {
    const principal = who(request)
    const data = app.models.list(principal.plan, principal.mode)
      .filter((m) => m.accessible)
      .map((m) => ({ id: m.id, object: 'model' as const, created: catalogLoaded, owned_by: m.vendor }))
    return { object: 'list' as const, data }
  })
}

export default openai
