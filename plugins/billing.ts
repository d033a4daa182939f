import fp from 'fastify-plugin'
import type { BalanceValue, BillingLimitsValue, BillingUsageValue, TransactionValue } from '../schemas/billing.js'
import type { Mode } from '../schemas/principal.js'
import { planCreditTerms } from './credits.js'
import { AppError } from './errors.js'
import { quotaPeriod } from './metering.js'
import { MICRO_PER_CENT, toCents } from './money.js'

export type BillingPeriod = 'day' | 'week' | 'month'

/** Start and end of the current UTC day, ISO week (Monday to Monday) or month. */
export function billingPeriod (period: BillingPeriod, now: Date): { start: Date, end: Date } {
  if (period !== 'week') return quotaPeriod(period, now)
  const day = quotaPeriod('day', now).start
  const sinceMonday = (day.getUTCDay() + 6) % 7
  const start = new Date(day.getTime() - sinceMonday * 86_400_000)
  return { start, end: new Date(start.getTime() + 7 * 86_400_000) }
}

interface TransactionRow {
  id: string
  at: Date
  kind: 'use' | 'grant'
  operation_id: string
  feature: string | null
  model: string | null
  provider: string | null
  units_in: string
  units_out: string
  charged: string
  credit: string
  markup_percent: number | null
  price_in: string | null
  price_out: string | null
  session_id: string | null
  reason: string | null
}

/** Both kinds of money movement of a user and mode, as one list: charged calls and credits added. */
const TRANSACTIONS = `SELECT * FROM (
    SELECT 'use_' || id AS id, at, 'use' AS kind, coalesce(request_id, 'use_' || id) AS operation_id, feature, model, provider, units_in, units_out,
      charged_micro_usd AS charged, 0::bigint AS credit, markup_percent, price_in_micro_usd_per_1m AS price_in,
      price_out_micro_usd_per_1m AS price_out, session_id, NULL::text AS reason
    FROM usage_ledger WHERE user_id = $1 AND mode = $2 AND billed
    UNION ALL
    SELECT 'grant_' || id, at, 'grant', 'grant_' || id, NULL, NULL, NULL, 0, 0, 0, amount_micro_usd, NULL, NULL, NULL, NULL, reason
    FROM credit_grants WHERE user_id = $1 AND mode = $2
  ) t`

const per1M = (micro: string | null) => micro === null ? null : Number(micro) / 1e6

function toTransaction (row: TransactionRow): TransactionValue {
  const charged = Number(row.charged)
  const credit = Number(row.credit)
  return {
    id: row.id,
    timestamp: row.at.toISOString(),
    operationType: row.kind === 'use' ? 'usage' : 'credit-grant',
    operationId: row.operation_id,
    feature: row.feature,
    model: row.model,
    provider: row.provider,
    tokensInput: Number(row.units_in),
    tokensOutput: Number(row.units_out),
    costMicroUsd: charged,
    costCents: toCents(charged),
    creditMicroUsd: credit,
    creditCents: toCents(credit),
    markupPercent: row.markup_percent,
    inputCostPer1M: per1M(row.price_in),
    outputCostPer1M: per1M(row.price_out),
    ...(row.session_id === null ? {} : { sessionId: row.session_id }),
    ...(row.reason === null ? {} : { reason: row.reason })
  }
}

const encode = (row: { at: Date, id: string }) => Buffer.from(`${row.at.toISOString()}|${row.id}`).toString('base64url')
function decode (cursor: string): { at: Date, id: string } {
  const match = /^([^|]+)\|((?:use|grant)_[0-9]{1,18})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'))
  const at = new Date(match?.[1] ?? 'x')
  if (match === null || Number.isNaN(at.getTime())) {
    throw new AppError('VALIDATION_ERROR', 'The cursor is not one of this list\'s.', { fields: [{ location: 'querystring', path: '/cursor', message: 'is not a cursor of the transactions' }] })
  }
  return { at, id: match[2] as string }
}

declare module 'fastify' {
  interface FastifyInstance {
    billing: ReturnType<typeof createBilling>
  }
}

interface Who { userId: string, mode: Mode, plan: string }

export function createBilling (app: import('fastify').FastifyInstance, clock: () => Date = () => new Date()) {
  const credits = app.metering.credits
  const termsOf = (plan: string) => planCreditTerms(app.entitlements.plans, plan)

  return {
    async balance (who: Who): Promise<BalanceValue> {
      const b = await credits.balance(app.store, who, termsOf(who.plan))
      const total = b.freeMicroUsd + b.purchasedMicroUsd
      return {
        billed: b.billed,
        balanceCents: toCents(total),
        balanceMicroUsd: total,
        freeCreditsRemainingCents: toCents(b.freeMicroUsd),
        freeCreditsResetAt: b.freeResetsAt.toISOString(),
        purchasedCreditsCents: toCents(b.purchasedMicroUsd),
        lifetimeUsageCents: toCents(b.lifetimeMicroUsd)
      }
    },

    async limits (who: Who): Promise<BillingLimitsValue> {
      const terms = termsOf(who.plan)
      const b = await credits.balance(app.store, who, terms)
      const today = await credits.today(app.store, who)
      const graceEnds = terms === null || b.limitReachedAt === null ? null : new Date(b.limitReachedAt.getTime() + terms.graceMs)
      return {
        billed: terms !== null,
        markupPercent: terms?.markupPercent ?? null,
        monthlyFreeCents: terms === null ? null : terms.monthlyFreeMicroUsd / MICRO_PER_CENT,
        dailyTokenLimit: terms?.dailyTokenLimit ?? null,
        dailyTokensUsed: today.tokens,
        dailyResetAt: today.resetsAt.toISOString(),
        monthlyCostLimitCents: terms?.monthlyCostLimitMicroUsd == null ? null : terms.monthlyCostLimitMicroUsd / MICRO_PER_CENT,
        monthlyChargedCents: toCents(b.monthChargedMicroUsd + b.monthReservedMicroUsd),
        graceHours: terms === null ? null : terms.graceMs / 3_600_000,
        graceEndsAt: graceEnds?.toISOString() ?? null,
        monthlyResetAt: b.freeResetsAt.toISOString()
      }
    },

    async usage (who: Who, period: BillingPeriod): Promise<BillingUsageValue> {
      const { start, end } = billingPeriod(period, clock())
      const { rows } = await app.store.query<{ feature: string, model: string | null, calls: string, units_in: string, units_out: string, charged: string }>(
        `SELECT feature, model, count(*) AS calls, sum(units_in) AS units_in, sum(units_out) AS units_out, sum(charged_micro_usd) AS charged
         FROM usage_ledger WHERE user_id = $1 AND mode = $2 AND at >= $3 AND at < $4 GROUP BY feature, model
         ORDER BY sum(charged_micro_usd) DESC, feature, model`, [who.userId, who.mode, start, end])
      const data = rows.map((r) => ({
        feature: r.feature,
        model: r.model,
        calls: Number(r.calls),
        tokensInput: r.feature === 'background-removal' ? 0 : Number(r.units_in),
        tokensOutput: r.feature === 'background-removal' ? 0 : Number(r.units_out),
        costMicroUsd: Number(r.charged),
        costCents: toCents(Number(r.charged))
      }))
      const total = data.reduce((sum, r) => sum + r.costMicroUsd, 0)
      return { period, from: start.toISOString(), to: end.toISOString(), costMicroUsd: total, costCents: toCents(total), data }
    },

    async transactions (who: Pick<Who, 'userId' | 'mode'>, page: { cursor?: string, limit: number }) {
      const params: unknown[] = [who.userId, who.mode, page.limit + 1]
      let where = ''
      if (page.cursor !== undefined) {
        const after = decode(page.cursor)
        params.push(after.at, after.id)
        where = 'WHERE (at, id) < ($4::timestamptz, $5::text)'
      }
      const { rows } = await app.store.query<TransactionRow>(`${TRANSACTIONS} ${where} ORDER BY at DESC, id DESC LIMIT $3`, params)
      const shown = rows.slice(0, page.limit)
      const last = shown.at(-1)
      return { data: shown.map(toTransaction), nextCursor: rows.length > page.limit && last !== undefined ? encode(last) : null }
    },

    /** One transaction of the user's; NOT_FOUND for another user's or an unknown id. */
    async transaction (who: Pick<Who, 'userId' | 'mode'>, id: string): Promise<TransactionValue> {
      const { rows } = await app.store.query<TransactionRow>(`${TRANSACTIONS} WHERE id = $3`, [who.userId, who.mode, id])
      if (rows[0] === undefined) throw new AppError('NOT_FOUND', 'There is no such transaction.')
      return toTransaction(rows[0])
    }
  }
}

/** The read side of credits: balance, limits, usage by period and the transactions, for GET /v1/billing/…. */
export default fp(async function billing (app) {
  app.decorate('billing', createBilling(app))
}, { name: 'billing', fastify: '5.x', dependencies: ['store', 'metering', 'entitlements'] })
