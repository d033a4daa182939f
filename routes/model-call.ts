import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AiCall, CallOutcome } from '../plugins/ai-calls.js'
import { costMicroUsd } from '../plugins/chats.js'
import { AppError, toEnvelope, type Envelope } from '../plugins/errors.js'
import type { Verdict } from '../plugins/moderation.js'
import type { MeteredCall } from '../plugins/metering.js'
import type { FailureObserver, Models, ModelEntry, Route } from '../plugins/models.js'
import { estimateTokens, messageText, type ChatCall, type ChatEvent, type ChatToolCall, type ChatUsage } from '../providers/chat.js'
import type { FeatureId } from '../plugins/features.js'
import type { Principal } from '../schemas/principal.js'

// The life of a call on the model catalog, shared by the routes that make one (chats, the OpenAI-compatible surface):
// what it is charged, what analytics keeps of it, and how a stream ends whatever happens — so that a failure never
// loses a ledger row and a charged call is always recorded.

/** A call made ready by its route: who asks, its reservation, its models' prompt sizes, its abort signal. */
export interface PreparedCall {
  principal: Principal
  metered: MeteredCall
  route: Route
  /** The call as a model of the route is asked it. */
  callFor: (model: ModelEntry) => ChatCall
  /** Told of each model that failed before its first byte. */
  noteFailure: FailureObserver
  signal: AbortSignal
  /** The prompt's tokens on a model (what is charged when the vendor sends no count). */
  promptTokens: (model: ModelEntry) => number
  /** performance.now() when the request started. */
  started: number
  /** The chat the call belongs to, for the ledger row. */
  sessionId?: string
}

/** Tokens of a call: the vendor's counts, or ours (flagged) when it sent none. Never zero for a prompt that was sent. */
export type Units = ChatUsage & { estimated: boolean }

/** The units of several calls of one reply (tool rounds), charged together. */
export const addUnits = (a: Units, b: Units): Units => ({ inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens, estimated: a.estimated || b.estimated })
const NO_UNITS: Units = { inputTokens: 0, outputTokens: 0, estimated: false }

export interface ModelCallOptions {
  feature: FeatureId
  /** Log messages of this route. */
  messages: { settled: string, unrecorded: string, streamFailed: string }
}

type Opened = Awaited<ReturnType<Models['stream']>>

/** How a route answers a stream: its frames, written as the events come. */
export interface StreamHandlers {
  delta: (text: string) => void
  /** After the call is settled (`charged` is what the user paid): check the reply, write the last frames. */
  finish: (end: { finishReason: Extract<ChatEvent, { type: 'end' }>['finishReason'], text: string, toolCalls: ChatToolCall[], units: Units, charged: number }) => Promise<void>
  /** The error frame of a stream that failed (not written when the client left). */
  error: (envelope: Envelope) => void
  /**
   * A round ended with tool calls the route runs itself (assistant tools): it runs them and opens the next round on the
   * same model, or answers null to end the reply here. The rounds are charged together, once.
   */
  toolRound?: (toolCalls: ChatToolCall[], text: string) => Promise<Opened | null>
  /** Ends the response, whatever happened. */
  close: () => void
}

const CLEAN: Verdict = { severity: 'none', categories: [] }

export function modelCalls (app: FastifyInstance, opts: ModelCallOptions) {
  const stopping = () => app.readiness.stopSignal.aborted
  /** Why a call that reached a vendor was stopped: it was charged for what was sent either way. */
  const abortOutcome = (): CallOutcome => stopping() ? 'shutdown' : 'client-aborted'

  /**
   * MODERATION=openai: what a text scores, in the thresholds' severities. High blocks a message (CONTENT_REJECTED,
   * before anything is reserved); every level is logged by its categories only, never the text. No text (a reply
   * that is a tool call only): nothing to check.
   */
  async function screen (request: FastifyRequest, principal: Principal, stage: 'message' | 'reply', text: string, signal: AbortSignal): Promise<Verdict> {
    if (!app.moderation.enabled || text === '') return CLEAN
    const verdict = await app.moderation.check(principal.mode, [text], signal)
    if (verdict.severity !== 'none') request.log.info({ check: 'moderation', stage, severity: verdict.severity, categories: verdict.categories }, 'moderation found a category')
    if (stage === 'message' && verdict.severity === 'high') {
      throw new AppError('CONTENT_REJECTED', 'The message was refused by the content policy check: rephrase it.', { categories: verdict.categories })
    }
    return verdict
  }

  /** Keeps what happened to a call for the operators' analytics; a failure to keep it is logged, never the caller's. */
  async function record (request: FastifyRequest, call: Omit<AiCall, 'feature'>) {
    try {
      await app.aiCalls.record({ feature: opts.feature, ...call })
    } catch (err) {
      request.log.warn({ err }, opts.messages.unrecorded)
    }
  }

  function measured (call: PreparedCall, model: ModelEntry, usage: ChatUsage | null, generated: string): Units {
    if (usage !== null) return { ...usage, estimated: false }
    return { inputTokens: call.promptTokens(model), outputTokens: estimateTokens(generated), estimated: true }
  }

  /** Charges a call that reached a vendor (ledger row, settled reservation) and logs its figures; returns what the user was charged. */
  async function settle (request: FastifyRequest, call: PreparedCall, provider: string, model: ModelEntry, units: Units, outcome: CallOutcome) {
    const cost = costMicroUsd(model, units.inputTokens, units.outputTokens)
    const charged = await call.metered.settle({
      provider,
      model: model.id,
      unitsIn: units.inputTokens,
      unitsOut: units.outputTokens,
      units: units.inputTokens + units.outputTokens,
      estimated: units.estimated,
      costMicroUsd: cost,
      price: { inputMicroUsdPer1M: model.inputMicroUsdPer1M, outputMicroUsdPer1M: model.outputMicroUsdPer1M },
      ...(call.sessionId === undefined ? {} : { sessionId: call.sessionId })
    })
    request.log.info({ vendor: provider, model: model.id, inputTokens: units.inputTokens, outputTokens: units.outputTokens, costMicroUsd: cost, chargedMicroUsd: charged, estimated: units.estimated, outcome }, opts.messages.settled)
    return charged
  }

  /** A charged call's analytics row: its outcome, tokens, cost and timings. */
  const recordCharged = (request: FastifyRequest, call: PreparedCall, model: ModelEntry, units: Units, outcome: CallOutcome, timing: { ttftMs: number | null, errorCode: string | null }) =>
    record(request, {
      mode: call.principal.mode,
      model: model.id,
      vendor: model.vendor,
      outcome,
      ...(timing.errorCode === null ? {} : { errorCode: timing.errorCode }),
      inputTokens: units.inputTokens,
      outputTokens: units.outputTokens,
      costMicroUsd: costMicroUsd(model, units.inputTokens, units.outputTokens),
      ...(timing.ttftMs === null ? {} : { ttftMs: timing.ttftMs }),
      latencyMs: Math.round(performance.now() - call.started)
    })

  /** The analytics row of a model that failed before its first byte (a fallback may still serve the call). */
  const noteFailure = (request: FastifyRequest, principal: Principal) => (model: ModelEntry, code: string) =>
    record(request, { mode: principal.mode, model: model.id, vendor: model.vendor, outcome: 'failed', errorCode: code })

  /** A call that failed before any answer: charged for its prompt when it was stopped (its client left), released otherwise. */
  async function failedBeforeAnswer (request: FastifyRequest, call: PreparedCall, err: unknown): Promise<never> {
    if (call.signal.aborted) {
      const units = measured(call, call.route.model, null, '')
      await settle(request, call, call.route.model.vendor, call.route.model, units, abortOutcome())
      await recordCharged(request, call, call.route.model, units, abortOutcome(), { ttftMs: null, errorCode: null })
    } else {
      await call.metered.release()
    }
    throw app.readiness.failure(err as Error)
  }

  /** The call, whole, on the first model of its route that answers; a call no model answered is released (or charged its prompt when its client left). */
  async function complete (request: FastifyRequest, call: PreparedCall) {
    try {
      return await app.models.complete(call.route, call.principal.mode, call.callFor, call.noteFailure)
    } catch (err) {
      return failedBeforeAnswer(request, call, err)
    }
  }

  /** The call, streamed, opened on the first model of its route that gives its first event; with the time to it. */
  async function stream (request: FastifyRequest, call: PreparedCall) {
    try {
      const opened = await app.models.stream(call.route, call.principal.mode, call.callFor, call.noteFailure)
      return { opened, ttftMs: Math.round(performance.now() - call.started) }
    } catch (err) {
      return failedBeforeAnswer(request, call, err)
    }
  }

  /**
   * Pumps an opened stream into the route's frames. Every outcome is settled here: a finished reply before `finish`
   * checks it, a stream that failed or lost its client for what was generated. Never rejects.
   */
  async function pump (request: FastifyRequest, call: PreparedCall, opened: Opened, ttftMs: number, handlers: StreamHandlers) {
    const { model, provider } = opened
    let text = ''
    let toolCalls: ChatToolCall[] = []
    let settled = false
    // What the rounds answered so far, and the text of the round being read (null between rounds).
    let done = NO_UNITS
    let roundText: string | null = ''
    try {
      let end: Extract<ChatEvent, { type: 'end' }> | undefined
      for (let current: Opened | null = opened; current !== null;) {
        roundText = ''
        toolCalls = []
        for (let next = current.first; next.done !== true; next = await current.events.next()) {
          const event = next.value
          if (event.type === 'delta') {
            // The text of a round after a tool round starts a new paragraph.
            const piece = roundText === '' && text !== '' ? `\n\n${event.text}` : event.text
            text += piece
            roundText += piece
            handlers.delta(piece)
          } else if (event.type === 'tool') {
            toolCalls.push({ id: event.id, name: event.name, arguments: event.arguments })
          } else {
            end = event
          }
        }
        done = addUnits(done, measured(call, model, (end as Extract<ChatEvent, { type: 'end' }>).usage, messageText({ role: 'assistant', content: roundText, toolCalls })))
        const finishedText = roundText
        roundText = null
        current = toolCalls.length > 0 && handlers.toolRound !== undefined ? await handlers.toolRound(toolCalls, finishedText) : null
      }
      const finished = end as Extract<ChatEvent, { type: 'end' }>
      const charged = await settle(request, call, provider.name, model, done, 'completed')
      settled = true
      await handlers.finish({ finishReason: finished.finishReason, text, toolCalls, units: done, charged })
    } catch (err) {
      const clientLeft = call.signal.aborted && !stopping()
      const envelope = toEnvelope(app.readiness.failure(err as Error))
      if (!settled) {
        // The rounds that ended, and what the one under way generated (a round that failed to open generated nothing).
        const units = roundText === null ? done : addUnits(done, measured(call, model, null, roundText))
        const outcome = call.signal.aborted ? abortOutcome() : 'failed'
        await settle(request, call, provider.name, model, units, outcome)
        await recordCharged(request, call, model, units, outcome, { ttftMs, errorCode: outcome === 'failed' ? envelope.code : null })
      }
      if (!clientLeft) {
        request.log.warn({ err, code: envelope.code }, opts.messages.streamFailed)
        request.errorCode = envelope.code
        handlers.error(envelope)
      }
    } finally {
      handlers.close()
    }
  }

  return { stopping, abortOutcome, screen, record, measured, settle, recordCharged, noteFailure, complete, stream, pump }
}
