import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError } from './errors.js'
import type { FeatureId } from './features.js'
import type { FeaturePlanValue, PlansFileValue, PriceValue } from '../schemas/plans.js'
import type { Mode, Principal } from '../schemas/principal.js'
import { createCredits, planCreditTerms, type CreditAsk, type CreditHold, type CreditTerms } from './credits.js'
import { FEATURES } from './features.js'
import { withMarkup } from './money.js'
import type { Queryable, Store } from './store/index.js'
import { columnsOf, groupCommit } from './store/group-commit.js'

/** A reservation not settled within this is taken for a crashed process and released by the sweep. */
export const RESERVATION_TTL_MS = 5 * 60_000

export interface QuotaKey { userId: string, mode: Mode, feature: FeatureId }
export interface QuotaLimit { limit: number, period: 'day' | 'month' }
export interface Reservation extends QuotaKey {
  id: string
  units: number
  periodStart: Date
  resetsAt: Date
  /** Settled and in-flight units of the period right after this reservation (this one included). */
  spent: number
  /** The plan's credit terms when the call is billed in money, and what it holds. */
  billing?: { terms: CreditTerms, hold: CreditHold }
}

/** The prices a call was charged at, kept on its ledger row. */
export interface AppliedPrice { inputMicroUsdPer1M?: number, outputMicroUsdPer1M?: number, perCallMicroUsd?: number }
export interface Settlement {
  provider: string
  model?: string | null
  unitsIn?: number
  unitsOut?: number
  /** Units charged against the quota. */
  units: number
  costMicroUsd?: number
  requestId?: string | null
  /** The provider sent no usage: the units were counted by us. */
  estimated?: boolean
  /** The prices `costMicroUsd` was worked out from. */
  price?: AppliedPrice
  /** The chat the call belongs to. */
  sessionId?: string
}

const PERIOD_ADJECTIVE = { day: 'daily', month: 'monthly' } as const

/** Start and end of the UTC quota period holding `now`. */
export function quotaPeriod (period: 'day' | 'month', now: Date): { start: Date, end: Date } {
  const y = now.getUTCFullYear()
  const m = now.getUTCMonth()
  const d = now.getUTCDate()
  return period === 'day'
    ? { start: new Date(Date.UTC(y, m, d)), end: new Date(Date.UTC(y, m, d + 1)) }
    : { start: new Date(Date.UTC(y, m, 1)), end: new Date(Date.UTC(y, m + 1, 1)) }
}

interface CounterRow { used: string, reserved: string }
interface ReserveItem { key: QuotaKey, start: Date, units: number, limit: number, id: string, requestId: string | null, expiresAt: Date }

/**
 * Reserves $5 units: creates the period's counter row or adds to it, only while used + reserved stays within the
 * limit ($6), and records the reservation ($7, request $8, expiring $9), all in one statement (one round trip,
 * one commit). No row back: the quota cannot cover it.
 */
const RESERVE = `WITH counter AS (
    INSERT INTO quota_usage (user_id, mode, feature, period_start, reserved)
    SELECT $1::text, $2::text, $3::text, $4::timestamptz, $5::bigint WHERE $5::bigint <= $6::bigint
    ON CONFLICT (user_id, mode, feature, period_start) DO UPDATE SET reserved = quota_usage.reserved + EXCLUDED.reserved
      WHERE quota_usage.used + quota_usage.reserved + EXCLUDED.reserved <= $6::bigint
    RETURNING used, reserved
  ), reservation AS (
    INSERT INTO quota_reservations (id, user_id, mode, feature, period_start, units, request_id, expires_at)
    SELECT $7, $1, $2, $3, $4, $5, $8, $9 FROM counter
  )
  SELECT used, reserved FROM counter`

/**
 * Settles reservation $1 in one statement: one ledger row (keyed by the reservation, so a retried settlement that
 * had in fact committed changes nothing), the reservation's units leave `reserved` and the settled units ($6)
 * join `used`. `found`: the reservation was still there.
 */
const SETTLE = `WITH ledger AS (
    INSERT INTO usage_ledger (user_id, mode, feature, provider, model, units_in, units_out, units, cost_micro_usd, request_id, estimated, reservation_id,
      charged_micro_usd, billed, markup_percent, price_in_micro_usd_per_1m, price_out_micro_usd_per_1m, price_per_call_micro_usd, session_id)
    VALUES ($2, $3, $4, $7, $8, $9, $10, $6, $11, $12, $13, $1, $14, $15, $16, $17, $18, $19, $20)
    ON CONFLICT (reservation_id) DO NOTHING
    RETURNING id
  ), reservation AS (
    DELETE FROM quota_reservations WHERE id = $1 AND EXISTS (SELECT 1 FROM ledger) RETURNING units
  ), counter AS (
    UPDATE quota_usage SET reserved = reserved - COALESCE((SELECT units FROM reservation), 0), used = used + $6
    WHERE user_id = $2 AND mode = $3 AND feature = $4 AND period_start = $5 AND EXISTS (SELECT 1 FROM ledger)
  )
  SELECT (SELECT count(*) FROM reservation)::int AS found, (SELECT count(*) FROM ledger)::int AS recorded`

/**
 * Many reservations in one statement (group commit; RESERVE's parameters as arrays, one element per call). The units asked of one
 * counter row are summed and taken only if all of them fit: the row is written once, in key order (so that two
 * batches lock rows in the same order). Each call reads the counter as it stands after its own reservation, as if
 * they had run one after the other in order. No counter columns back: the row's sum did not fit, and the calls
 * are reserved one by one (RESERVE) so that those that fit still do.
 */
const RESERVE_MANY = `WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::timestamptz[])
      WITH ORDINALITY AS i(user_id, mode, feature, period_start, units, quota_limit, id, request_id, expires_at, n)
  ), wanted AS (
    SELECT user_id, mode, feature, period_start, sum(units) AS units, min(quota_limit) AS quota_limit FROM input GROUP BY 1, 2, 3, 4
  ), counter AS (
    INSERT INTO quota_usage (user_id, mode, feature, period_start, reserved)
    SELECT user_id, mode, feature, period_start, units FROM wanted WHERE units <= quota_limit ORDER BY 1, 2, 3, 4
    ON CONFLICT (user_id, mode, feature, period_start) DO UPDATE SET reserved = quota_usage.reserved + EXCLUDED.reserved
      WHERE quota_usage.used + quota_usage.reserved + EXCLUDED.reserved <= (SELECT w.quota_limit FROM wanted w
        WHERE w.user_id = EXCLUDED.user_id AND w.mode = EXCLUDED.mode AND w.feature = EXCLUDED.feature AND w.period_start = EXCLUDED.period_start)
    RETURNING user_id, mode, feature, period_start, used, reserved
  ), reservation AS (
    INSERT INTO quota_reservations (id, user_id, mode, feature, period_start, units, request_id, expires_at)
    SELECT i.id, i.user_id, i.mode, i.feature, i.period_start, i.units, i.request_id, i.expires_at FROM input i
    JOIN counter c USING (user_id, mode, feature, period_start)
  )
  SELECT c.used, c.reserved - (sum(i.units) OVER whole - sum(i.units) OVER upto) AS reserved,
    count(*) OVER whole AS together
  FROM input i LEFT JOIN counter c USING (user_id, mode, feature, period_start)
  WINDOW whole AS (PARTITION BY i.user_id, i.mode, i.feature, i.period_start),
    upto AS (PARTITION BY i.user_id, i.mode, i.feature, i.period_start ORDER BY i.n)
  ORDER BY i.n`

/**
 * Many settlements of unbilled calls in one statement (group commit; SETTLE's parameters as arrays, one element per call), each
 * as SETTLE does it: its ledger row (keyed by the reservation), its reservation gone, its units moved. The counter
 * rows are locked in key order first (the uncorrelated sub-select runs once, before any row is written), then
 * written once each. `found` per call, in order.
 */
const SETTLE_MANY = `WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], $7::text[], $8::text[],
      $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::boolean[], $14::bigint[], $15::boolean[], $16::integer[],
      $17::bigint[], $18::bigint[], $19::bigint[], $20::text[])
      WITH ORDINALITY AS i(reservation_id, user_id, mode, feature, period_start, units, provider, model, units_in, units_out,
        cost_micro_usd, request_id, estimated, charged, billed, markup_percent, price_in, price_out, price_per_call, session_id, n)
  ), ledger AS (
    INSERT INTO usage_ledger (user_id, mode, feature, provider, model, units_in, units_out, units, cost_micro_usd, request_id, estimated, reservation_id,
      charged_micro_usd, billed, markup_percent, price_in_micro_usd_per_1m, price_out_micro_usd_per_1m, price_per_call_micro_usd, session_id)
    SELECT user_id, mode, feature, provider, model, units_in, units_out, units, cost_micro_usd, request_id, estimated, reservation_id,
      charged, billed, markup_percent, price_in, price_out, price_per_call, session_id FROM input ORDER BY n
    ON CONFLICT (reservation_id) DO NOTHING
    RETURNING reservation_id
  ), reservation AS (
    DELETE FROM quota_reservations r USING ledger l WHERE r.id = l.reservation_id RETURNING r.id, r.units
  ), moved AS (
    SELECT i.user_id, i.mode, i.feature, i.period_start, sum(COALESCE(r.units, 0)) AS released, sum(i.units) AS used
    FROM input i JOIN ledger l ON l.reservation_id = i.reservation_id LEFT JOIN reservation r ON r.id = i.reservation_id
    GROUP BY 1, 2, 3, 4
  ), locked AS (
    SELECT q.user_id, q.mode, q.feature, q.period_start FROM quota_usage q JOIN moved m USING (user_id, mode, feature, period_start)
    ORDER BY 1, 2, 3, 4 FOR UPDATE OF q
  ), counter AS (
    UPDATE quota_usage q SET reserved = q.reserved - m.released, used = q.used + m.used FROM moved m
    WHERE (SELECT count(*) FROM locked) >= 0 AND q.user_id = m.user_id AND q.mode = m.mode AND q.feature = m.feature AND q.period_start = m.period_start
  )
  SELECT r.id IS NOT NULL AS found FROM input i LEFT JOIN reservation r ON r.id = i.reservation_id ORDER BY i.n`

/** The most calls one group-commit statement takes. */
export const GROUP_COMMIT_MAX = 64

/** A settlement found its ledger row already there: the transaction that charged credits again is rolled back. */
class AlreadySettled extends Error {}

/** Deletes the reservations matching `where` (on $1) and gives their units back to their counter rows; one statement. */
const giveBack = (where: string) => `WITH gone AS (
    DELETE FROM quota_reservations WHERE ${where} RETURNING user_id, mode, feature, period_start, units
  ), total AS (
    SELECT user_id, mode, feature, period_start, sum(units) AS units, count(*) AS reservations FROM gone GROUP BY 1, 2, 3, 4
  ), counter AS (
    UPDATE quota_usage q SET reserved = q.reserved - t.units FROM total t
    WHERE q.user_id = t.user_id AND q.mode = t.mode AND q.feature = t.feature AND q.period_start = t.period_start
  )
  SELECT COALESCE(sum(reservations), 0)::int AS released FROM total`
const RELEASE = giveBack('id = $1')
const RELEASE_EXPIRED = giveBack('expires_at < $1')

interface LedgerRow {
  id: string,
  at: Date,
  feature: string,
  provider: string,
  model: string | null,
  units_in: string,
  units_out: string,
  units: string,
  cost_micro_usd: string,
  request_id: string | null,
  estimated: boolean
}

/**
 * Quotas that hold under concurrency and across instances: a reservation is one conditional UPDATE of the
 * counter row (PostgreSQL serialises writers on that row), so no two calls can spend the same units.
 */
export function createMetering (store: Store, clock: () => Date = () => new Date()) {
  const credits = createCredits(clock)

  /** Used and reserved units of the current period. */
  async function usage (key: QuotaKey, quota: QuotaLimit, db: Queryable = store): Promise<{ used: number, reserved: number, resetsAt: Date }> {
    const { start, end } = quotaPeriod(quota.period, clock())
    const { rows } = await db.query<CounterRow>(`SELECT used, reserved FROM quota_usage
      WHERE user_id = $1 AND mode = $2 AND feature = $3 AND period_start = $4`, [key.userId, key.mode, key.feature, start])
    return { used: Number(rows[0]?.used ?? 0), reserved: Number(rows[0]?.reserved ?? 0), resetsAt: end }
  }

  /** QUOTA_EXCEEDED, with what is used and reserved of the period. */
  async function exceeded (db: Queryable, key: QuotaKey, quota: QuotaLimit, now: Date, end: Date): Promise<never> {
    const { used, reserved } = await usage(key, quota, db)
    throw new AppError('QUOTA_EXCEEDED', `The ${PERIOD_ADJECTIVE[quota.period]} quota of ${key.feature} is used up.`, {
      limit: quota.limit,
      used: used + reserved,
      resetsAt: end.toISOString()
    }, { 'retry-after': String(Math.max(1, Math.ceil((end.getTime() - now.getTime()) / 1000))) })
  }

  /** RESERVE's parameters (RESERVE_MANY takes them as arrays). */
  const reserveParams = (item: ReserveItem) => [item.key.userId, item.key.mode, item.key.feature, item.start, item.units, item.limit,
    item.id, item.requestId, item.expiresAt]

  /** The reservation statement of one call on `db`: the counters after it, or null when the quota cannot cover it. */
  async function reserveOne (db: Queryable, item: ReserveItem): Promise<CounterRow | null> {
    const { rows } = await db.query<CounterRow>(RESERVE, reserveParams(item))
    return rows[0] ?? null
  }

  /** Reservations outside a transaction, grouped (RESERVE_MANY); a call whose row's sum did not fit with others is tried alone. */
  const reserveGrouped = groupCommit(async (items: ReserveItem[]): Promise<Array<CounterRow | 'alone' | 'again'>> => {
    const { rows } = await store.query<{ used: string | null, reserved: string | null, together: string }>(RESERVE_MANY, columnsOf(items.map(reserveParams)))
    return rows.map((row) => row.used !== null ? { used: row.used, reserved: row.reserved as string } : Number(row.together) === 1 ? 'alone' : 'again')
  }, { maxBatch: GROUP_COMMIT_MAX })

  /** The quota reservation on `db` (grouped with others' when on the store itself); QUOTA_EXCEEDED when the quota cannot cover it. */
  async function reserveQuota (db: Queryable | null, key: QuotaKey, quota: QuotaLimit, units: number, id: string, requestId: string | null, now: Date, expiresAt: Date) {
    const { start, end } = quotaPeriod(quota.period, now)
    const item: ReserveItem = { key, start, units, limit: quota.limit, id, requestId, expiresAt }
    let counters: CounterRow | null
    if (db !== null) counters = await reserveOne(db, item)
    else {
      const grouped = await reserveGrouped(item)
      counters = grouped === 'alone' ? null : grouped === 'again' ? await reserveOne(store, item) : grouped
    }
    if (counters === null) return exceeded(db ?? store, key, quota, now, end)
    return { ...key, id, units, periodStart: start, resetsAt: end, spent: Number(counters.used) + Number(counters.reserved) }
  }

  const settleParams = (reservation: Reservation, settlement: Settlement, charged: number) => [reservation.id, reservation.userId, reservation.mode,
    reservation.feature, reservation.periodStart, settlement.units, settlement.provider, settlement.model ?? null,
    settlement.unitsIn ?? 0, settlement.unitsOut ?? 0, settlement.costMicroUsd ?? 0, settlement.requestId ?? null,
    settlement.estimated ?? false, charged, reservation.billing !== undefined, reservation.billing?.terms.markupPercent ?? null,
    settlement.price?.inputMicroUsdPer1M ?? null, settlement.price?.outputMicroUsdPer1M ?? null, settlement.price?.perCallMicroUsd ?? null,
    settlement.sessionId ?? null]

  /** Settlements of unbilled calls outside a transaction, grouped (SETTLE_MANY). */
  const settleGrouped = groupCommit(async (items: Array<{ reservation: Reservation, settlement: Settlement }>): Promise<boolean[]> => {
    // A reservation twice in one group: the first settles it, the others find it gone.
    const ids = new Set<string>()
    const first = items.map(({ reservation }) => {
      if (ids.has(reservation.id)) return false
      ids.add(reservation.id)
      return true
    })
    const unique = items.filter((_, i) => first[i])
    const { rows } = await store.query<{ found: boolean }>(SETTLE_MANY, columnsOf(unique.map(({ reservation, settlement }) => settleParams(reservation, settlement, 0))))
    let at = 0
    return items.map((_, i) => first[i] === true && (rows[at++] as { found: boolean }).found)
  }, { maxBatch: GROUP_COMMIT_MAX })

  return {
    usage,
    credits,
    /**
     * Reserves `units` or throws QUOTA_EXCEEDED with limit, used and resetsAt. With `billing`, the call's estimated
     * charge is held in the same transaction (INSUFFICIENT_CREDITS when it cannot be): both or neither. Held for
     * `holdMs` (RESERVATION_TTL_MS unless the call outlives a request, like a job), then the sweep gives it back.
     */
    async reserve (key: QuotaKey, quota: QuotaLimit, units: number, requestId: string | null = null, billing?: { terms: CreditTerms, ask: CreditAsk }, holdMs = RESERVATION_TTL_MS): Promise<Reservation> {
      const now = clock()
      const id = randomUUID()
      const expiresAt = new Date(now.getTime() + holdMs)
      if (billing === undefined) return reserveQuota(null, key, quota, units, id, requestId, now, expiresAt)
      return store.transaction(async (tx) => {
        // The credits first: they lock the user's account row, which every credit path takes before the quota row.
        const hold = await credits.reserve(tx, key, billing.terms, id, billing.ask, expiresAt)
        const reservation = await reserveQuota(tx, key, quota, units, id, requestId, now, expiresAt)
        return { ...reservation, billing: { terms: billing.terms, hold } }
      })
    },

    /**
     * Turns a reservation into used units and one ledger row, atomically; a billed call is charged `charged` (its cost
     * with the markup) in the same transaction. False if it was already gone. A settlement repeated after its first
     * attempt did commit changes nothing: the ledger row is keyed by the reservation. `within`: in the caller's
     * transaction (a job that records its outcome and its charge together).
     */
    async settle (reservation: Reservation, settlement: Settlement, within?: Queryable): Promise<boolean> {
      const billing = reservation.billing
      if (billing === undefined) {
        if (within === undefined) return settleGrouped({ reservation, settlement })
        const { rows } = await within.query<{ found: number }>(SETTLE, settleParams(reservation, settlement, 0))
        return rows[0]?.found === 1
      }
      const charge = withMarkup(settlement.costMicroUsd ?? 0, billing.terms.markupPercent)
      const tokens = FEATURES[reservation.feature].unit === 'tokens' ? settlement.units : 0
      const charged = async (tx: Queryable) => {
        const collectedMicroUsd = await credits.settle(tx, reservation, billing.terms, reservation.id, charge, tokens)
        const { rows } = await tx.query<{ found: number, recorded: number }>(SETTLE, settleParams(reservation, settlement, collectedMicroUsd))
        if (rows[0]?.recorded !== 1) throw new AlreadySettled()
        return rows[0].found === 1
      }
      if (within === undefined) {
        try {
          return await store.transaction(charged)
        } catch (err) {
          if (err instanceof AlreadySettled) return false
          throw err
        }
      }
      // Inside the caller's transaction: a repeated settlement undoes only its own charge.
      await within.exec('SAVEPOINT settlement')
      try {
        return await charged(within)
      } catch (err) {
        if (!(err instanceof AlreadySettled)) throw err
        await within.exec('ROLLBACK TO SAVEPOINT settlement')
        return false
      }
    },

    /** Gives the reserved units back (the call failed before the provider charged), and the credits it held. */
    async release (reservation: Reservation): Promise<void> {
      if (reservation.billing === undefined) {
        await store.query(RELEASE, [reservation.id])
        return
      }
      await store.transaction(async (tx) => {
        await credits.release(tx, reservation.id)
        await tx.query(RELEASE, [reservation.id])
      })
    },

    /** Releases reservations (and credit holds) left by a crashed process; returns how many quota reservations. */
    async releaseExpired (): Promise<number> {
      const { rows } = await store.query<{ released: number }>(RELEASE_EXPIRED, [clock()])
      for (const id of await credits.expired(store)) await store.transaction((tx) => credits.release(tx, id))
      // An aggregate: always one row.
      return (rows[0] as { released: number }).released
    },

    /** Ledger rows of a user and mode, newest first; `before` is the cursor (a row id) of the next page. */
    async events (userId: string, mode: Mode, page: { before?: string, limit: number }) {
      const params: unknown[] = [userId, mode, page.limit + 1]
      if (page.before !== undefined) params.push(page.before)
      const { rows } = await store.query<LedgerRow>(`SELECT * FROM usage_ledger WHERE user_id = $1 AND mode = $2
        ${page.before === undefined ? '' : 'AND id < $4'} ORDER BY id DESC LIMIT $3`, params)
      const shown = rows.slice(0, page.limit)
      return {
        events: shown.map((row) => ({
          id: String(row.id),
          at: row.at.toISOString(),
          feature: row.feature,
          provider: row.provider,
          model: row.model,
          unitsIn: Number(row.units_in),
          unitsOut: Number(row.units_out),
          units: Number(row.units),
          costMicroUsd: Number(row.cost_micro_usd),
          requestId: row.request_id,
          estimated: row.estimated
        })),
        nextCursor: rows.length > page.limit ? String(shown[shown.length - 1]?.id) : null
      }
    }
  }
}

export type Metering = ReturnType<typeof createMetering>

/** The price-table entry of a call (`provider/model`, else `provider`). */
function priceOf (prices: PlansFileValue['prices'], s: Pick<Settlement, 'provider' | 'model'>): PriceValue | undefined {
  return (s.model == null ? undefined : prices?.[`${s.provider}/${s.model}`]) ?? prices?.[s.provider]
}

/** Cost of a settled call in micro-USD from the plans file's prices (`provider/model`, else `provider`; none: 0). */
export function costMicroUsd (prices: PlansFileValue['prices'], s: Pick<Settlement, 'provider' | 'model' | 'unitsIn' | 'unitsOut'>): number {
  const price = priceOf(prices, s)
  if (price === undefined) return 0
  return Math.round((s.unitsIn ?? 0) * (price.perInputUnit ?? 0) + (s.unitsOut ?? 0) * (price.perOutputUnit ?? 0) + (price.perCall ?? 0))
}

/** The price-table entry a cost came from, as the ledger keeps it (per million units, and per call). */
function appliedPrice (prices: PlansFileValue['prices'], s: Pick<Settlement, 'provider' | 'model'>): AppliedPrice | undefined {
  const price = priceOf(prices, s)
  if (price === undefined) return undefined
  return {
    inputMicroUsdPer1M: Math.round((price.perInputUnit ?? 0) * 1e6),
    outputMicroUsdPer1M: Math.round((price.perOutputUnit ?? 0) * 1e6),
    perCallMicroUsd: Math.round(price.perCall ?? 0)
  }
}

/** From this share of the quota on, responses carry `X-Quota-Warning`. */
export const QUOTA_WARNING_RATIO = 0.8

/** A metered call of a feature route: settle it with what the provider charged, or release it. */
export interface MeteredCall {
  reservation: Reservation
  limit: number
  /**
   * Records what the provider charged (cost as given, or from the price table) and returns what the user is charged
   * for it: the cost with the plan's markup when billed, the cost itself otherwise. Never throws: when the database
   * cannot take it, the settlement is kept and retried until it can, so a charged call is never lost.
   */
  settle: (settlement: Omit<Settlement, 'requestId'>, within?: Queryable) => Promise<number>
  release: () => Promise<void>
  /** The quota as it reads once this call is settled with `units`. */
  quotaAfter: (units: number) => { limit: number, used: number, remaining: number, resetsAt: string }
}

/**
 * What a call may cost at most, before the provider is called: its provider cost in micro-USD (list prices, no markup),
 * or the settlement-like figures the plans' price table prices.
 */
export type CallEstimate = { costMicroUsd: number } | Pick<Settlement, 'provider' | 'model' | 'unitsIn' | 'unitsOut'>

/** How often expired reservations are swept (each instance; the statement is cheap and idempotent). */
export const SWEEP_INTERVAL_MS = 60_000
/** How often settlements the database refused are tried again. */
export const SETTLE_RETRY_MS = 5_000

declare module 'fastify' {
  interface FastifyInstance {
    metering: Metering
    /**
     * Reserves `units` of the route's feature for the request's principal before a provider is called, and sets
     * the X-Quota-* headers. QUOTA_EXCEEDED when the quota cannot cover it; PROVIDER_UNAVAILABLE (fail closed)
     * when the database cannot be reached — the provider is then not called.
     */
    meter: (request: FastifyRequest, reply: FastifyReply, units: number, estimate: CallEstimate, options?: { holdMs?: number }) => Promise<MeteredCall>
    /** Settlements waiting for the database (normally none). */
    pendingSettlements: () => number
  }
}

/** Quotas and the usage ledger; sweeps reservations that a crashed process left behind. */
export default fp(async function metering (app) {
  const metering = createMetering(app.store)
  const prices = app.entitlements.plans.prices
  app.decorate('metering', metering)
  const sweep = () => metering.releaseExpired().then(
    (released) => { if (released > 0) app.log.warn({ released }, 'released expired quota reservations') },
    (err: unknown) => app.log.warn({ err }, 'could not sweep quota reservations'))
  const timer = setInterval(sweep, SWEEP_INTERVAL_MS).unref()
  app.addHook('onReady', sweep)

  // Settlements the database refused after the provider charged: kept and retried, in order, until recorded.
  const pending: Array<{ reservation: Reservation, settlement: Settlement }> = []
  let retryTimer: NodeJS.Timeout | undefined
  async function flush () {
    retryTimer = undefined
    while (pending.length > 0) {
      const next = pending[0] as (typeof pending)[number]
      try {
        await metering.settle(next.reservation, next.settlement)
      } catch (err) {
        app.log.warn({ err, pending: pending.length }, 'settlements still wait for the database')
        retryTimer = setTimeout(flush, SETTLE_RETRY_MS).unref()
        return
      }
      pending.shift()
      app.log.info({ reservationId: next.reservation.id, requestId: next.settlement.requestId }, 'delayed settlement recorded')
    }
  }
  app.decorate('pendingSettlements', () => pending.length)
  app.metrics.sources.pendingSettlements = () => pending.length
  /** A settled call in the metrics: tokens only for features counted in tokens, its cost at list price. */
  const observe = (feature: FeatureId, settlement: Settlement) => {
    const inTokens = FEATURES[feature].unit === 'tokens'
    app.metrics.settlement({
      feature,
      vendor: settlement.provider,
      model: settlement.model,
      ...(inTokens ? { tokensIn: settlement.unitsIn, tokensOut: settlement.unitsOut } : {}),
      costMicroUsd: settlement.costMicroUsd
    })
  }

  app.decorate('meter', async (request: FastifyRequest, reply: FastifyReply, units: number, estimate: CallEstimate, options: { holdMs?: number } = {}): Promise<MeteredCall> => {
    const principal = request.principal as Principal
    const feature = request.routeOptions.config.feature as FeatureId
    const quota = (app.entitlements.featurePlan(principal.plan, feature) as FeaturePlanValue).quota
    const terms = planCreditTerms(app.entitlements.plans, principal.plan)
    const billing = terms === null
      ? undefined
      : { terms, ask: { amountMicroUsd: withMarkup('costMicroUsd' in estimate ? estimate.costMicroUsd : costMicroUsd(prices, estimate), terms.markupPercent), tokens: FEATURES[feature].unit === 'tokens' ? units : 0 } }
    let reservation: Reservation
    try {
      reservation = await metering.reserve({ userId: principal.userId, mode: principal.mode, feature }, quota, units, request.id, billing, options.holdMs)
    } catch (err) {
      if (err instanceof AppError) throw err
      request.log.error({ err }, 'quota reservation failed: refusing the call (fail closed)')
      throw new AppError('PROVIDER_UNAVAILABLE', 'Usage metering is unavailable, so the call was not made: retry shortly.')
    }
    reply.header('x-quota-limit', String(quota.limit))
    reply.header('x-quota-remaining', String(Math.max(0, quota.limit - reservation.spent)))
    reply.header('x-quota-reset', reservation.resetsAt.toISOString())
    if (reservation.spent >= quota.limit * QUOTA_WARNING_RATIO) reply.header('x-quota-warning', '80%')
    const warnings = reservation.billing?.hold.warnings ?? []
    if (warnings.length > 0) reply.header('x-credits-warning', warnings.join(', '))
    return {
      reservation,
      limit: quota.limit,
      settle: async (input, within) => {
        // A feature that prices its own calls (the model catalog) says the cost; otherwise the plans' price table does.
        const settlement: Settlement = input.costMicroUsd === undefined
          ? { ...input, requestId: request.id, costMicroUsd: costMicroUsd(prices, input), price: input.price ?? appliedPrice(prices, input) }
          : { ...input, requestId: request.id }
        const charged = terms === null ? settlement.costMicroUsd as number : withMarkup(settlement.costMicroUsd as number, terms.markupPercent)
        // Inside the caller's transaction the caller answers for a failure (its work rolls back with the charge).
        if (within !== undefined) {
          await metering.settle(reservation, settlement, within)
          observe(reservation.feature, settlement)
          return charged
        }
        try {
          await metering.settle(reservation, settlement)
        } catch (err) {
          request.log.error({ err, reservationId: reservation.id }, 'could not record a settled call: kept and retried until the database takes it')
          pending.push({ reservation, settlement })
          retryTimer ??= setTimeout(flush, SETTLE_RETRY_MS).unref()
        }
        observe(reservation.feature, settlement)
        return charged
      },
      release: async () => {
        try {
          await metering.release(reservation)
        } catch (err) {
          // The sweep gives the units back once the reservation expires.
          request.log.warn({ err, reservationId: reservation.id }, 'could not release a reservation now: the sweep will')
        }
      },
      quotaAfter: (settled) => {
        const used = Math.max(0, reservation.spent - reservation.units + settled)
        return { limit: quota.limit, used, remaining: Math.max(0, quota.limit - used), resetsAt: reservation.resetsAt.toISOString() }
      }
    }
  })
  app.addHook('onClose', async () => {
    clearInterval(timer)
    clearTimeout(retryTimer)
    await flush()
    clearTimeout(retryTimer)
    for (const { reservation, settlement } of pending) {
      // The last trace of a charged call the database never took: enough for an operator to re-enter it.
      app.log.error({ reservationId: reservation.id, userId: reservation.userId, mode: reservation.mode, feature: reservation.feature, ...settlement },
        'settlement lost at shutdown: record it by hand')
    }
  })
}, { name: 'metering', fastify: '5.x', dependencies: ['store', 'entitlements', 'metrics'] })
