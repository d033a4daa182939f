import fp from 'fastify-plugin'
import type { AiAnalyticsValue } from '../schemas/analytics.js'
import type { Mode } from '../schemas/principal.js'
import { toCents } from './money.js'
import type { Store } from './store/index.js'
import { callOutcome } from './metrics.js'

const TABLE = 'ai_calls'
const DAY_MS = 86_400_000
export const DEFAULT_ANALYTICS_DAYS = 30

export type CallOutcome = 'completed' | 'failed' | 'client-aborted' | 'shutdown' | 'blocked'

/** One call to a model vendor as analytics keeps it: what happened, never who asked or what was said. */
export interface AiCall {
  feature: string
  mode: Mode
  model: string
  vendor: string
  outcome: CallOutcome
  errorCode?: string
  inputTokens?: number
  outputTokens?: number
  costMicroUsd?: number
  ttftMs?: number
  latencyMs?: number
}

interface FigureRow {
  model: string,
  vendor: string,
  calls: string,
  completed: string,
  errors: string,
  aborted: string,
  blocked: string,
  input_tokens: string,
  output_tokens: string,
  cost_micro_usd: string,
  ttft_p50: number | null,
  ttft_p95: number | null
}

/** The calls of every model vendor, and the report of GET /v1/admin/analytics/ai over them and the chats' feedback. */
export function createAiCalls (db: Store, now: () => Date = () => new Date()) {
  return {
    async record (call: AiCall) {
      await db.query(`INSERT INTO ${TABLE} (feature, mode, model, vendor, outcome, error_code, input_tokens, output_tokens, cost_micro_usd, ttft_ms, latency_ms, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [call.feature, call.mode, call.model, call.vendor, call.outcome, call.errorCode ?? null, call.inputTokens ?? 0, call.outputTokens ?? 0,
        call.costMicroUsd ?? 0, call.ttftMs ?? null, call.latencyMs ?? null, now()])
    },

    /** Calls, tokens, cost, errors, feedback and time to first token by model and vendor over [from, to). */
    async report (query: { from?: string, to?: string, mode?: Mode }): Promise<AiAnalyticsValue> {
      const to = query.to === undefined ? now() : new Date(query.to)
      const from = query.from === undefined ? new Date(to.getTime() - DEFAULT_ANALYTICS_DAYS * DAY_MS) : new Date(query.from)
      const mode = query.mode ?? 'live'
      const { rows: figures } = await db.query<FigureRow>(`SELECT model, vendor, count(*) AS calls,
          count(*) FILTER (WHERE outcome = 'completed') AS completed,
          count(*) FILTER (WHERE outcome = 'failed') AS errors,
          count(*) FILTER (WHERE outcome IN ('client-aborted', 'shutdown')) AS aborted,
          count(*) FILTER (WHERE outcome = 'blocked') AS blocked,
          coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
          coalesce(sum(cost_micro_usd), 0) AS cost_micro_usd,
          percentile_disc(0.5) WITHIN GROUP (ORDER BY ttft_ms) FILTER (WHERE outcome = 'completed') AS ttft_p50,
          percentile_disc(0.95) WITHIN GROUP (ORDER BY ttft_ms) FILTER (WHERE outcome = 'completed') AS ttft_p95
        FROM ${TABLE} WHERE at >= $1 AND at < $2 AND mode = $3 GROUP BY model, vendor`, [from, to, mode])
      const { rows: ratings } = await db.query<{ model: string, vendor: string, up: string, down: string }>(`SELECT f.model, f.vendor,
          count(*) FILTER (WHERE f.rating = 1) AS up, count(*) FILTER (WHERE f.rating = -1) AS down
        FROM chat_feedback f JOIN chat_sessions s ON s.id = f.session_id
        WHERE f.updated_at >= $1 AND f.updated_at < $2 AND s.mode = $3 GROUP BY f.model, f.vendor`, [from, to, mode])
      const rows = new Map<string, AiAnalyticsValue['data'][number]>()
      const rowOf = (model: string, vendor: string) => {
        const key = `${vendor}\u0000${model}`
        let row = rows.get(key)
        if (row === undefined) {
          row = { model, vendor, calls: 0, completed: 0, errors: 0, aborted: 0, blocked: 0, inputTokens: 0, outputTokens: 0, costMicroUsd: 0, costCents: 0, feedbackUp: 0, feedbackDown: 0, ttftP50Ms: null, ttftP95Ms: null }
          rows.set(key, row)
        }
        return row
      }
      for (const f of figures) {
        const costMicroUsd = Number(f.cost_micro_usd)
        Object.assign(rowOf(f.model, f.vendor), {
          calls: Number(f.calls),
          completed: Number(f.completed),
          errors: Number(f.errors),
          aborted: Number(f.aborted),
          blocked: Number(f.blocked),
          inputTokens: Number(f.input_tokens),
          outputTokens: Number(f.output_tokens),
          costMicroUsd,
          costCents: toCents(costMicroUsd),
          ttftP50Ms: f.ttft_p50,
          ttftP95Ms: f.ttft_p95
        })
      }
      // A rating names the model that wrote the reply; a reply of a model since taken out of the catalog still counts.
      for (const r of ratings) Object.assign(rowOf(r.model, r.vendor), { feedbackUp: Number(r.up), feedbackDown: Number(r.down) })
      const data = [...rows.values()].sort((a, b) => b.calls - a.calls || a.vendor.localeCompare(b.vendor) || a.model.localeCompare(b.model))
      const sum = (pick: (r: (typeof data)[number]) => number) => data.reduce((total, r) => total + pick(r), 0)
      const costMicroUsd = sum((r) => r.costMicroUsd)
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        mode,
        data,
        totals: {
          calls: sum((r) => r.calls),
          completed: sum((r) => r.completed),
          errors: sum((r) => r.errors),
          aborted: sum((r) => r.aborted),
          blocked: sum((r) => r.blocked),
          inputTokens: sum((r) => r.inputTokens),
          outputTokens: sum((r) => r.outputTokens),
          costMicroUsd,
          costCents: toCents(costMicroUsd),
          feedbackUp: sum((r) => r.feedbackUp),
          feedbackDown: sum((r) => r.feedbackDown)
        }
      }
    },

    /** Deletes call rows older than `days` days; returns how many. */
    async purge (days: number): Promise<number> {
      const { rowCount } = await db.query(`DELETE FROM ${TABLE} WHERE at < $1`, [new Date(now().getTime() - days * DAY_MS)])
      return rowCount
    }
  }
}

export type AiCalls = ReturnType<typeof createAiCalls>

declare module 'fastify' {
  interface FastifyInstance {
    aiCalls: AiCalls
  }
}

/** The record of model calls behind GET /v1/admin/analytics/ai. */
export default fp(async function aiCalls (app) {
  const calls = createAiCalls(app.store)
  const record = calls.record
  // Every recorded call is in the metrics too, whether or not the database takes its row.
  calls.record = async (call) => {
    app.metrics.providerCall({
      feature: call.feature,
      mode: call.mode,
      vendor: call.vendor,
      model: call.model,
      outcome: callOutcome(call.outcome, call.errorCode),
      ...(call.latencyMs === undefined ? {} : { seconds: call.latencyMs / 1000 }),
      ...(call.ttftMs === undefined ? {} : { firstTokenSeconds: call.ttftMs / 1000 }),
      ...(call.inputTokens === undefined ? {} : { tokensIn: call.inputTokens }),
      ...(call.outputTokens === undefined ? {} : { tokensOut: call.outputTokens })
    })
    await record(call)
  }
  app.decorate('aiCalls', calls)
}, { name: 'ai-calls', fastify: '5.x', dependencies: ['store', 'metrics'] })
