import { PassThrough } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { chatTools, MAX_TOOL_ROUNDS, roundTurns, runTools, toolInstructions, type ToolOutcome } from '../../../plugins/assistant-tools.js'
import { CHAT_SYSTEM_PROMPT, chatReservation, replyLimit, type Exchange } from '../../../plugins/chats.js'
import { toCents } from '../../../plugins/money.js'
import { AppError, toEnvelope } from '../../../plugins/errors.js'
import type { ModelEntry } from '../../../plugins/models.js'
import type { Verdict } from '../../../plugins/moderation.js'
import { estimateTokens, messageText, type ChatCall, type ChatToolCall } from '../../../providers/chat.js'
import {
  Chat, CHAT_STREAM_DESCRIPTION, ChatId, ChatListQuery, ChatMessage, ChatPage, ChatStreamDone, ChatStreamTool, ChatStreamUsage,
  CreateChatRequest, FeedbackRequest, MessageId, MessageListQuery, MessagePage, SendMessageRequest, TaskSuggestion, UpdateChatRequest,
  type ModerationWarningValue, type TaskSuggestionValue
} from '../../../schemas/chats.js'
import { ErrorResponse, errorResponses, type ErrorResponseBody } from '../../../schemas/errors.js'
import { AssistantDelta } from '../../../schemas/settings-assistant.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { addUnits, modelCalls, type Units } from '../../model-call.js'
import { SSE_TYPE, sseFrame, sseHeaders, sseSchema } from '../../sse.js'

const config = { auth: 'ai-token' as const, feature: 'chat' as const }
const common = { tags: ['chats'], security: [{ aiToken: [] }] }
const byId = Type.Object({ id: ChatId })
const byMessage = Type.Object({ id: ChatId, messageId: MessageId })
const who = (request: FastifyRequest) => request.principal as Principal
const READ_ERRORS = ['VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'NOT_FOUND', 'RATE_LIMITED'] as const
const CALL_ERRORS = [...READ_ERRORS, 'QUOTA_EXCEEDED', 'CONTENT_REJECTED', 'PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT'] as const
/** What a reply blocked by moderation is kept as. */
export const BLOCKED_REPLY = 'This reply was withheld by the content policy check.'
const maxOutput = replyLimit

/** /v1/chats: conversations kept by the service over the model catalog (SPEC §15). */
const chats: FastifyPluginAsyncTypebox = async (app) => {
  const calls = modelCalls(app, {
    feature: 'chat',
    messages: { settled: 'chat call settled', unrecorded: 'a chat call could not be recorded for analytics', streamFailed: 'chat stream ended with an error event' }
  })

  const screen = calls.screen

  /** The `warning` of an answer: the categories at the medium level, of the message or of the reply. */
  function warningOf (...verdicts: Verdict[]): ModerationWarningValue | undefined {
    const categories = [...new Set(verdicts.filter((v) => v.severity === 'medium').flatMap((v) => v.categories))].sort()
    if (categories.length === 0) return undefined
    return { severity: 'medium', categories, message: `This exchange touches a sensitive subject (${categories.join(', ')}).` }
  }

  /** Everything a new message needs before a vendor is called: the chat, the route, a prompt per model, the reservation. */
  async function prepare (request: FastifyRequest, reply: FastifyReply) {
    const principal = who(request)
    const { id } = request.params as { id: string }
    const body = request.body as { content: string, model?: string }
    const session = await app.chats.row(principal.userId, principal.mode, id)
    const route = app.models.route({ plan: principal.plan, mode: principal.mode, model: body.model ?? session.model ?? undefined, text: body.content })
    const signal = app.readiness.callSignal(reply.raw)
    const screened = await screen(request, principal, 'message', body.content, signal)
    const history = await app.chats.history(session)
    // A chat with assistant tools tells the model today's date and how to use them, and offers them.
    const tools = chatTools(session.tools)
    const system = tools.length === 0 ? CHAT_SYSTEM_PROMPT : `${CHAT_SYSTEM_PROMPT}\n${toolInstructions(session.tools, new Date())}`
    const toolTokens = tools.length === 0 ? 0 : estimateTokens(JSON.stringify(tools))
    const prompts = new Map<string, Awaited<ReturnType<typeof app.chats.prompt>>>()
    for (const model of [route.model, ...route.chain]) {
      if (!prompts.has(model.id)) prompts.set(model.id, await app.chats.prompt(model, history, body.content, maxOutput(model), system))
    }
    const reservation = chatReservation([...prompts.entries()].map(([modelId, p]) => ({ model: app.models.get(modelId) as ModelEntry, promptTokens: p.tokens + toolTokens })),
      tools.length === 0 ? 0 : MAX_TOOL_ROUNDS)
    const metered = await app.meter(request, reply, reservation.tokens, { costMicroUsd: reservation.costMicroUsd })
    const user = app.hash.user(principal.userId)
    const callFor = (model: ModelEntry): ChatCall => ({
      messages: (prompts.get(model.id) as { messages: ChatCall['messages'] }).messages,
      tools,
      model: model.upstreamModel,
      user,
      maxOutputTokens: maxOutput(model),
      signal
    })
    const promptTokens = (model: ModelEntry) => (prompts.get(model.id) as { tokens: number }).tokens
    const noteFailure = calls.noteFailure(request, principal)
    return { principal, session, sessionId: session.id, route, metered, signal, callFor, promptTokens, noteFailure, screened, content: body.content, started: performance.now() }
  }
  type Prepared = Awaited<ReturnType<typeof prepare>>

  /**
   * The tool rounds of a reply (chats with tools): each round's calls are run, their results added to the conversation,
   * and the next call made on the model that answered the first (no fallback within a reply). After MAX_TOOL_ROUNDS the
   * model may not call tools any more.
   */
  function toolRounds (prepared: Prepared, model: ModelEntry) {
    const conversation = [...prepared.callFor(model).messages]
    // The chain lists every model tried, the first included: only the one that answered.
    const pinned = { ...prepared.route, model, chain: [model] }
    const used: string[] = []
    const suggestions: TaskSuggestionValue[] = []
    let round = 0
    return {
      used,
      suggestions,
      /** Runs a round's tool calls; false when the reply must end here (no tools, or none left). */
      async run (toolCalls: ChatToolCall[], text: string, onOutcome?: (outcome: ToolOutcome) => void) {
        if (toolCalls.length === 0 || prepared.session.tools.length === 0 || round >= MAX_TOOL_ROUNDS) return false
        round++
        const outcomes = await runTools(app, prepared.principal, prepared.session.tools, toolCalls)
        for (const outcome of outcomes) {
          if (outcome.ranOnServer) used.push(outcome.call.name)
          if (outcome.suggestion !== undefined) suggestions.push(outcome.suggestion)
          onOutcome?.(outcome)
        }
        conversation.push(...roundTurns(text, outcomes))
        return true
      },
      /** The next call of the reply: the conversation so far; the last round may not call tools. */
      callFor: (m: ModelEntry): ChatCall => ({ ...prepared.callFor(m), messages: [...conversation], toolChoice: round >= MAX_TOOL_ROUNDS ? 'none' : 'auto' }),
      pinned
    }
  }

  const exchange = (prepared: Prepared, model: ModelEntry, reply: string, finishReason: Exchange['finishReason'], units: Units, ttftMs: number, charged: number): Exchange => ({
    userContent: prepared.content,
    reply,
    model,
    finishReason,
    inputTokens: units.inputTokens,
    outputTokens: units.outputTokens,
    costMicroUsd: charged,
    estimated: units.estimated,
    ttftMs,
    latencyMs: Math.round(performance.now() - prepared.started),
    flagged: false
  })

  app.post('', {
    config,
    schema: {
      operationId: 'createChat',
      summary: 'Start a chat',
      description: 'A conversation kept by the service. `model` fixes the model of its messages (checked against your plan when a message is sent); ' +
        'without it each message is routed by its task class. `contextRef` is your opaque reference (a book id), kept encrypted, never sent to a model.',
      ...common,
      body: ref(CreateChatRequest),
      response: { 201: ref(Chat), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    const principal = who(request)
    if (request.body.model !== undefined) app.models.route({ plan: principal.plan, mode: principal.mode, model: request.body.model, text: '' })
    const chat = await app.chats.create(principal.userId, principal.mode, request.body)
    return reply.code(201).header('location', `/v1/chats/${chat.id}`).send(chat)
  })

  app.get('', {
    config,
    schema: {
      operationId: 'listChats',
      summary: 'List your chats',
      description: 'Latest activity first, paged with `cursor` and `limit`; `archived` filters. Test-mode and live chats are kept apart.',
      ...common,
      querystring: ChatListQuery,
      response: { 200: ref(ChatPage), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'RATE_LIMITED') }
    }
  }, async (request) => app.chats.list(who(request).userId, who(request).mode, request.query))

  app.get('/:id', {
    config,
    schema: { operationId: 'getChat', summary: 'Read a chat', description: 'Another user\'s chat is NOT_FOUND.', ...common, params: byId, response: { 200: ref(Chat), ...errorResponses(...READ_ERRORS) } }
  }, async (request) => app.chats.get(who(request).userId, who(request).mode, request.params.id))

  app.patch('/:id', {
    config,
    schema: {
      operationId: 'updateChat',
      summary: 'Rename, archive or re-model a chat',
      description: '`title` null clears it; `archived` hides it from `archived=false` lists; `model` null goes back to routing per message.',
      ...common,
      params: byId,
      body: ref(UpdateChatRequest),
      response: { 200: ref(Chat), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request) => {
    const principal = who(request)
    if (typeof request.body.model === 'string') app.models.route({ plan: principal.plan, mode: principal.mode, model: request.body.model, text: '' })
    return app.chats.update(principal.userId, principal.mode, request.params.id, request.body)
  })

  app.delete('/:id', {
    config,
    schema: {
      operationId: 'deleteChat',
      summary: 'Delete a chat',
      description: 'Deletes the chat, its messages and their feedback for real, now. The usage ledger keeps its rows (no content).',
      ...common,
      params: byId,
      response: { 204: { description: 'Deleted.', type: 'null' }, ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    await app.chats.remove(who(request).userId, who(request).mode, request.params.id)
    return reply.code(204).send(null)
  })

  app.get('/:id/messages', {
    config,
    schema: {
      operationId: 'listChatMessages',
      summary: 'A chat\'s messages',
      description: 'Newest first, 50 a page by default (at most 100). A cursor of another chat is a VALIDATION_ERROR.',
      ...common,
      params: byId,
      querystring: MessageListQuery,
      response: { 200: ref(MessagePage), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request) => app.chats.messages(who(request).userId, who(request).mode, request.params.id, request.query))

  app.post('/:id/messages', {
    config,
    schema: {
      operationId: 'sendChatMessage',
      summary: 'Send a message and get the reply',
      description: 'The reply to `content`, with the chat\'s history cut to the model\'s context. The model is `model`, the chat\'s, or the one ' +
        'routed for the message\'s task class; a vendor failing before answering hands the call to the next model of its fallback chain. ' +
        '`AI-Provider` and `AI-Model` name who served. Tokens count against the chat quota (X-Quota-* headers). The user\'s message and the ' +
        'reply are stored together once the reply is complete; a call that fails stores nothing.',
      ...common,
      params: byId,
      body: ref(SendMessageRequest),
      response: { 201: ref(ChatMessage), ...errorResponses(...CALL_ERRORS) }
    }
  }, async (request, reply) => {
    const prepared = await prepare(request, reply)
    let done = await calls.complete(request, prepared)
    const spoken = (result: typeof done.result) => messageText({ role: 'assistant', content: result.text, toolCalls: result.toolCalls })
    let units = calls.measured(prepared, done.model, done.result.usage, spoken(done.result))
    const texts = [done.result.text]
    const rounds = toolRounds(prepared, done.model)
    while (await rounds.run(done.result.toolCalls, done.result.text)) {
      try {
        done = await app.models.complete(rounds.pinned, prepared.principal.mode, rounds.callFor, prepared.noteFailure)
      } catch (err) {
        // The rounds that were answered are charged; this one failed before its answer.
        const outcome = prepared.signal.aborted ? calls.abortOutcome() : 'failed'
        const failure = app.readiness.failure(err as Error)
        await calls.settle(request, prepared, done.provider.name, done.model, units, outcome)
        await calls.recordCharged(request, prepared, done.model, units, outcome, { ttftMs: null, errorCode: outcome === 'failed' ? toEnvelope(failure).code : null })
        throw failure
      }
      units = addUnits(units, calls.measured(prepared, done.model, done.result.usage, spoken(done.result)))
      texts.push(done.result.text)
    }
    const text = texts.filter((t) => t !== '').join('\n\n')
    const charged = await calls.settle(request, prepared, done.provider.name, done.model, units, 'completed')
    const latency = Math.round(performance.now() - prepared.started)
    const checked = await screen(request, prepared.principal, 'reply', text, prepared.signal)
    await calls.recordCharged(request, prepared, done.model, units, checked.severity === 'high' ? 'blocked' : 'completed', { ttftMs: latency, errorCode: null })
    // A blocked reply is kept as the notice that replaced it, flagged: the history stays whole, the text is gone.
    const entry = checked.severity === 'high'
      ? { ...exchange(prepared, done.model, BLOCKED_REPLY, 'content_filter', units, latency, charged), flagged: true }
      : exchange(prepared, done.model, text, done.result.finishReason, units, latency, charged)
    const message = await app.chats.addExchange(prepared.session, entry)
    const warning = warningOf(prepared.screened, checked)
    const tooling = prepared.session.tools.length === 0 || checked.severity === 'high' ? {} : { toolsUsed: rounds.used, suggestions: rounds.suggestions }
    return reply.code(201).header('ai-provider', done.provider.name).header('ai-model', done.model.id)
      .send({ ...message, ...(warning === undefined ? {} : { warning }), ...tooling })
  })

  app.post('/:id/stream', {
    config,
    schema: {
      operationId: 'streamChatMessage',
      summary: 'Send a message and stream the reply',
      description: 'As POST /v1/chats/{id}/messages, answered as server-sent events. Fallback to another vendor happens only before the first ' +
        'byte; after it, a vendor failure ends the stream with an `error` event. A client that leaves is charged for what was generated; ' +
        'an unfinished reply is not stored.',
      ...common,
      params: byId,
      body: ref(SendMessageRequest),
      response: {
        200: { description: 'The reply as server-sent events.', content: { [SSE_TYPE]: { schema: sseSchema(CHAT_STREAM_DESCRIPTION, { delta: AssistantDelta, tool: ChatStreamTool, suggestion: TaskSuggestion, usage: ChatStreamUsage, done: ChatStreamDone, error: ErrorResponse }) } } },
        ...errorResponses(...CALL_ERRORS)
      }
    }
  }, async (request, reply) => {
    const prepared = await prepare(request, reply)
    const { opened, ttftMs } = await calls.stream(request, prepared)
    const out = new PassThrough()
    const write = (event: string, data: unknown) => { if (!out.writableEnded && !out.destroyed) out.write(sseFrame(event, data)) }
    const { model, provider } = opened
    sseHeaders(reply).header('ai-provider', provider.name).header('ai-model', model.id)
    const rounds = toolRounds(prepared, model)
    // The pump settles every outcome itself and never rejects.
    calls.pump(request, prepared, opened, ttftMs, {
      delta: (text) => write('delta', { text }),
      toolRound: async (toolCalls, text) => {
        const more = await rounds.run(toolCalls, text, (outcome) => {
          if (outcome.ranOnServer) write('tool', { name: outcome.call.name })
          if (outcome.suggestion !== undefined) write('suggestion', outcome.suggestion)
        })
        return more ? app.models.stream(rounds.pinned, prepared.principal.mode, rounds.callFor, prepared.noteFailure) : null
      },
      finish: async ({ finishReason, text, units, charged }) => {
        write('usage', { inputTokens: units.inputTokens, outputTokens: units.outputTokens })
        const checked = await screen(request, prepared.principal, 'reply', text, prepared.signal)
        await calls.recordCharged(request, prepared, model, units, checked.severity === 'high' ? 'blocked' : 'completed', { ttftMs, errorCode: null })
        if (checked.severity === 'high') {
          throw new AppError('CONTENT_REJECTED', 'The reply was blocked by the content policy check and is not kept: discard what was shown.', { categories: checked.categories })
        }
        const message = await app.chats.addExchange(prepared.session, exchange(prepared, model, text, finishReason, units, ttftMs, charged))
        const warning = warningOf(prepared.screened, checked)
        write('done', { messageId: message.id, finishReason, usage: message.usage, costCents: toCents(charged), model: model.id, ...(warning === undefined ? {} : { warning }) })
      },
      error: (envelope) => {
        const body: ErrorResponseBody = { error: { code: envelope.code, message: envelope.message, requestId: request.id } }
        write('error', body)
      },
      close: () => out.end()
    })
    return reply.send(out as never)
  })

  app.post('/:id/messages/:messageId/feedback', {
    config,
    schema: {
      operationId: 'rateChatMessage',
      summary: 'Rate a reply',
      description: 'One rating per reply (1 helpful, -1 not), replaced when sent again; the comment is stored encrypted and never sent to a model.',
      ...common,
      params: byMessage,
      body: ref(FeedbackRequest),
      response: { 204: { description: 'Recorded.', type: 'null' }, ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    await app.chats.feedback(who(request).userId, who(request).mode, request.params.id, request.params.messageId, request.body)
    return reply.code(204).send(null)
  })
}

export default chats
