import type { PlanCreditsValue, PlansFileValue } from '../schemas/plans.js'
import type { Mode } from '../schemas/principal.js'
import { AppError } from './errors.js'
import { quotaPeriod } from './metering.js'
import { centsToMicro, toCents } from './money.js'
import type { Queryable, Store } from './store/index.js'

/** A plan's credit terms with the defaults filled in, in micro-USD. */
export interface CreditTerms {
  monthlyFreeMicroUsd: number
  markupPercent: number
  dailyTokenLimit: number | null
  monthlyCostLimitMicroUsd: number | null
  graceMs: number
}

export const DEFAULT_MARKUP_PERCENT = 40
export const DEFAULT_GRACE_HOURS = 24
/** From this share of a limit on, answers carry `X-Credits-Warning`. */
export const CREDITS_WARNING_RATIO = 0.8

export function creditTerms (credits: PlanCreditsValue): CreditTerms {
  return {
    monthlyFreeMicroUsd: centsToMicro(credits.monthlyFreeCents),
    markupPercent: credits.markupPercent ?? DEFAULT_MARKUP_PERCENT,
    dailyTokenLimit: credits.dailyTokenLimit ?? null,
    monthlyCostLimitMicroUsd: credits.monthlyCostLimitCents === undefined ? null : centsToMicro(credits.monthlyCostLimitCents),
    graceMs: (credits.graceHours ?? DEFAULT_GRACE_HOURS) * 3_600_000
  }
}

/** The credit terms of a plan; null: the plan is not billed in money. */
export function planCreditTerms (plans: PlansFileValue, plan: string): CreditTerms | null {
  const credits = plans.plans[plan]?.credits
  return credits === undefined ? null : creditTerms(credits)
}

export interface CreditKey { userId: string, mode: Mode }

/** What a call asks to hold: the charge it may reach (markup included) and the tokens it may use. */
export interface CreditAsk { amountMicroUsd: number, tokens: number }

/** What a reservation holds, as the answer's headers need it. */
export interface CreditHold {
  /** Limits at or past CREDITS_WARNING_RATIO once this hold is taken, with the share reached (`monthly-cost-limit=85%`). */
  warnings: string[]
}

interface AccountRow { purchased_micro_usd: string, reserved_micro_usd: string, lifetime_micro_usd: string }
interface MonthRow { free_used_micro_usd: string, free_reserved_micro_usd: string, charged_micro_usd: string, reserved_micro_usd: string, limit_reached_at: Date | null }
interface DayRow { tokens_used: string, tokens_reserved: string }
interface HoldRow { id: string, user_id: string, mode: Mode, month_start: Date, day_start: Date, from_free_micro_usd: string, from_purchased_micro_usd: string, tokens: string }

const n = (value: string | number | null | undefined) => Number(value ?? 0)
const percent = (part: number, whole: number) => `${Math.floor((part * 100) / whole)}%`

/** Locks the user's account row (creating it), so that every credit change of one user is serialised. */
async function lockAccount (tx: Queryable, key: CreditKey) {
  await tx.query('INSERT INTO credit_accounts (user_id, mode) VALUES ($1, $2) ON CONFLICT DO NOTHING', [key.userId, key.mode])
  const { rows } = await tx.query<AccountRow>('SELECT purchased_micro_usd, reserved_micro_usd, lifetime_micro_usd FROM credit_accounts WHERE user_id = $1 AND mode = $2 FOR UPDATE', [key.userId, key.mode])
  const row = rows[0] as AccountRow
  return { purchased: n(row.purchased_micro_usd), reserved: n(row.reserved_micro_usd) }
}

async function monthOf (tx: Queryable, key: CreditKey, monthStart: Date) {
  await tx.query('INSERT INTO credit_months (user_id, mode, month_start) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [key.userId, key.mode, monthStart])
  const { rows } = await tx.query<MonthRow>('SELECT * FROM credit_months WHERE user_id = $1 AND mode = $2 AND month_start = $3', [key.userId, key.mode, monthStart])
  const row = rows[0] as MonthRow
  return { freeUsed: n(row.free_used_micro_usd), freeReserved: n(row.free_reserved_micro_usd), charged: n(row.charged_micro_usd), reserved: n(row.reserved_micro_usd), limitReachedAt: row.limit_reached_at }
}

async function dayOf (tx: Queryable, key: CreditKey, dayStart: Date) {
  await tx.query('INSERT INTO credit_days (user_id, mode, day_start) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [key.userId, key.mode, dayStart])
  const { rows } = await tx.query<DayRow>('SELECT tokens_used, tokens_reserved FROM credit_days WHERE user_id = $1 AND mode = $2 AND day_start = $3', [key.userId, key.mode, dayStart])
  const row = rows[0] as DayRow
  return { used: n(row.tokens_used), reserved: n(row.tokens_reserved) }
}

/** Gives a hold back to its rows (the caller holds the account lock and has deleted the hold). */
async function giveBack (tx: Queryable, hold: HoldRow) {
  const fromFree = n(hold.from_free_micro_usd)
  const fromPurchased = n(hold.from_purchased_micro_usd)
  await tx.query(`UPDATE credit_months SET free_reserved_micro_usd = free_reserved_micro_usd - $4, reserved_micro_usd = reserved_micro_usd - $5
    WHERE user_id = $1 AND mode = $2 AND month_start = $3`, [hold.user_id, hold.mode, hold.month_start, fromFree, fromFree + fromPurchased])
  await tx.query('UPDATE credit_accounts SET reserved_micro_usd = reserved_micro_usd - $3, updated_at = now() WHERE user_id = $1 AND mode = $2', [hold.user_id, hold.mode, fromPurchased])
  await tx.query('UPDATE credit_days SET tokens_reserved = tokens_reserved - $4 WHERE user_id = $1 AND mode = $2 AND day_start = $3', [hold.user_id, hold.mode, hold.day_start, n(hold.tokens)])
}

const insufficient = (message: string, details: Record<string, unknown>) => new AppError('INSUFFICIENT_CREDITS', message, details)

/**
 * Credits: the monthly free allowance of a plan, purchased credits that never expire, reservations of a call's
 * estimated charge before the provider is called and its settlement at the actual charge. Every operation runs in the
 * caller's transaction and starts by locking the user's account row, so the balance can never be spent twice — also
 * by several instances sharing PostgreSQL. Free credits are spent first.
 */
export function createCredits (clock: () => Date) {
  return {
    /**
     * Holds `ask` for call `id`, or throws INSUFFICIENT_CREDITS (402) with the reason: the balance, the daily token
     * limit or the monthly cost limit (once its grace period is over).
     */
    async reserve (tx: Queryable, key: CreditKey, terms: CreditTerms, id: string, ask: CreditAsk, expiresAt: Date): Promise<CreditHold> {
      const now = clock()
      const month = quotaPeriod('month', now)
      const day = quotaPeriod('day', now)
      const account = await lockAccount(tx, key)
      const m = await monthOf(tx, key, month.start)
      const d = await dayOf(tx, key, day.start)
      const freeLeft = Math.max(0, terms.monthlyFreeMicroUsd - m.freeUsed - m.freeReserved)
      const purchasedLeft = Math.max(0, account.purchased - account.reserved)
      const balance = freeLeft + purchasedLeft
      const figures = { balanceCents: toCents(balance), requiredCents: toCents(ask.amountMicroUsd), balanceMicroUsd: balance, requiredMicroUsd: ask.amountMicroUsd }

      if (terms.dailyTokenLimit !== null && ask.tokens > 0 && d.used + d.reserved + ask.tokens > terms.dailyTokenLimit) {
        throw insufficient(`The daily token limit of your plan (${terms.dailyTokenLimit}) is reached: it resets at ${day.end.toISOString()}.`,
          { reason: 'daily-token-limit', ...figures, limitTokens: terms.dailyTokenLimit, usedTokens: d.used + d.reserved, resetsAt: day.end.toISOString() })
      }
      let limitReachedNow = false
      if (terms.monthlyCostLimitMicroUsd !== null && m.charged + m.reserved + ask.amountMicroUsd > terms.monthlyCostLimitMicroUsd) {
        const graceEnds = m.limitReachedAt === null ? null : new Date(m.limitReachedAt.getTime() + terms.graceMs)
        if (terms.graceMs === 0 || (graceEnds !== null && now >= graceEnds)) {
          throw insufficient(`The monthly cost limit of your plan is reached: it resets at ${month.end.toISOString()}.`,
            { reason: 'monthly-cost-limit', ...figures, limitCents: toCents(terms.monthlyCostLimitMicroUsd), chargedCents: toCents(m.charged + m.reserved), resetsAt: month.end.toISOString() })
        }
        limitReachedNow = m.limitReachedAt === null
      }
      if (balance < ask.amountMicroUsd) {
        throw insufficient('Not enough credits for this call: add credits, or wait for the monthly free credits.',
          { reason: 'balance', ...figures, freeCreditsResetAt: month.end.toISOString() })
      }

      const fromFree = Math.min(ask.amountMicroUsd, freeLeft)
      const fromPurchased = ask.amountMicroUsd - fromFree
      await tx.query(`UPDATE credit_months SET free_reserved_micro_usd = free_reserved_micro_usd + $4, reserved_micro_usd = reserved_micro_usd + $5,
        limit_reached_at = CASE WHEN $6::boolean THEN $7::timestamptz ELSE limit_reached_at END
        WHERE user_id = $1 AND mode = $2 AND month_start = $3`, [key.userId, key.mode, month.start, fromFree, ask.amountMicroUsd, limitReachedNow, now])
      if (fromPurchased > 0) {
        await tx.query('UPDATE credit_accounts SET reserved_micro_usd = reserved_micro_usd + $3, updated_at = now() WHERE user_id = $1 AND mode = $2', [key.userId, key.mode, fromPurchased])
      }
      if (ask.tokens > 0) {
        await tx.query('UPDATE credit_days SET tokens_reserved = tokens_reserved + $4 WHERE user_id = $1 AND mode = $2 AND day_start = $3', [key.userId, key.mode, day.start, ask.tokens])
      }
      await tx.query(`INSERT INTO credit_reservations (id, user_id, mode, month_start, day_start, from_free_micro_usd, from_purchased_micro_usd, tokens, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, [id, key.userId, key.mode, month.start, day.start, fromFree, fromPurchased, ask.tokens, expiresAt])

      const warnings: string[] = []
      if (terms.monthlyCostLimitMicroUsd !== null && m.charged + m.reserved + ask.amountMicroUsd >= terms.monthlyCostLimitMicroUsd * CREDITS_WARNING_RATIO) {
        warnings.push(`monthly-cost-limit=${percent(m.charged + m.reserved + ask.amountMicroUsd, terms.monthlyCostLimitMicroUsd)}`)
      }
      if (terms.dailyTokenLimit !== null && d.used + d.reserved + ask.tokens >= terms.dailyTokenLimit * CREDITS_WARNING_RATIO) {
        warnings.push(`daily-token-limit=${percent(d.used + d.reserved + ask.tokens, terms.dailyTokenLimit)}`)
      }
      return { warnings }
    },

    /**
     * Charges call `id` what it cost (`chargeMicroUsd`, markup included) and gives its hold back, free credits first.
     * Returns what was collected: a charge above what is left (the call used more than was held, and the balance is
     * gone) is collected only in part, so the balance never goes below zero. The caller makes sure a call is charged once.
     */
    async settle (tx: Queryable, key: CreditKey, terms: CreditTerms, id: string, chargeMicroUsd: number, tokens: number): Promise<number> {
      const account = await lockAccount(tx, key)
      const { rows } = await tx.query<HoldRow>('DELETE FROM credit_reservations WHERE id = $1 RETURNING *', [id])
      const hold = rows[0]
      const now = clock()
      const monthStart = hold?.month_start ?? quotaPeriod('month', now).start
      const dayStart = hold?.day_start ?? quotaPeriod('day', now).start
      if (hold !== undefined) await giveBack(tx, hold)
      const m = await monthOf(tx, key, monthStart)
      await dayOf(tx, key, dayStart)
      const purchasedReserved = account.reserved - n(hold?.from_purchased_micro_usd)
      const takeFree = Math.min(chargeMicroUsd, Math.max(0, terms.monthlyFreeMicroUsd - m.freeUsed - m.freeReserved))
      const takePurchased = Math.min(chargeMicroUsd - takeFree, Math.max(0, account.purchased - purchasedReserved))
      const collected = takeFree + takePurchased
      await tx.query(`UPDATE credit_months SET free_used_micro_usd = free_used_micro_usd + $4, charged_micro_usd = charged_micro_usd + $5
        WHERE user_id = $1 AND mode = $2 AND month_start = $3`, [key.userId, key.mode, monthStart, takeFree, collected])
      await tx.query(`UPDATE credit_accounts SET purchased_micro_usd = purchased_micro_usd - $3, lifetime_micro_usd = lifetime_micro_usd + $4, updated_at = now()
        WHERE user_id = $1 AND mode = $2`, [key.userId, key.mode, takePurchased, collected])
      if (tokens > 0) await tx.query('UPDATE credit_days SET tokens_used = tokens_used + $4 WHERE user_id = $1 AND mode = $2 AND day_start = $3', [key.userId, key.mode, dayStart, tokens])
      return collected
    },

    /** Gives the hold of call `id` back (the call failed before anything was charged). */
    async release (tx: Queryable, id: string): Promise<void> {
      const { rows: found } = await tx.query<{ user_id: string, mode: Mode }>('SELECT user_id, mode FROM credit_reservations WHERE id = $1', [id])
      const owner = found[0]
      if (owner === undefined) return
      await lockAccount(tx, { userId: owner.user_id, mode: owner.mode })
      const { rows } = await tx.query<HoldRow>('DELETE FROM credit_reservations WHERE id = $1 RETURNING *', [id])
      if (rows[0] !== undefined) await giveBack(tx, rows[0])
    },

    /** Ids of holds past their expiry (a crashed process left them). */
    async expired (db: Queryable): Promise<string[]> {
      const { rows } = await db.query<{ id: string }>('SELECT id FROM credit_reservations WHERE expires_at < $1 ORDER BY expires_at LIMIT 1000', [clock()])
      return rows.map((r) => r.id)
    },

    /** Adds purchased credits (they never expire); returns the grant. */
    async grant (store: Store, key: CreditKey, amountMicroUsd: number, reason: string) {
      return store.transaction(async (tx) => {
        await lockAccount(tx, key)
        await tx.query('UPDATE credit_accounts SET purchased_micro_usd = purchased_micro_usd + $3, updated_at = now() WHERE user_id = $1 AND mode = $2', [key.userId, key.mode, amountMicroUsd])
        const { rows } = await tx.query<{ id: string, at: Date }>('INSERT INTO credit_grants (user_id, mode, amount_micro_usd, reason) VALUES ($1, $2, $3, $4) RETURNING id, at',
          [key.userId, key.mode, amountMicroUsd, reason])
        return { id: String((rows[0] as { id: string }).id), at: (rows[0] as { at: Date }).at }
      })
    },

    /** The balance as the user reads it: free credits left this month, purchased credits left, lifetime charges. */
    async balance (db: Queryable, key: CreditKey, terms: CreditTerms | null) {
      const month = quotaPeriod('month', clock())
      const { rows: accounts } = await db.query<AccountRow>('SELECT purchased_micro_usd, reserved_micro_usd, lifetime_micro_usd FROM credit_accounts WHERE user_id = $1 AND mode = $2', [key.userId, key.mode])
      const { rows: months } = await db.query<MonthRow>('SELECT * FROM credit_months WHERE user_id = $1 AND mode = $2 AND month_start = $3', [key.userId, key.mode, month.start])
      const a = accounts[0]
      const m = months[0]
      const free = terms === null ? 0 : Math.max(0, terms.monthlyFreeMicroUsd - n(m?.free_used_micro_usd) - n(m?.free_reserved_micro_usd))
      const purchased = Math.max(0, n(a?.purchased_micro_usd) - n(a?.reserved_micro_usd))
      return {
        billed: terms !== null,
        freeMicroUsd: free,
        purchasedMicroUsd: purchased,
        lifetimeMicroUsd: n(a?.lifetime_micro_usd),
        monthChargedMicroUsd: n(m?.charged_micro_usd),
        monthReservedMicroUsd: n(m?.reserved_micro_usd),
        limitReachedAt: m?.limit_reached_at ?? null,
        freeResetsAt: month.end
      }
    },

    /** Tokens of today (used and reserved), for the limits. */
    async today (db: Queryable, key: CreditKey) {
      const day = quotaPeriod('day', clock())
      const { rows } = await db.query<DayRow>('SELECT tokens_used, tokens_reserved FROM credit_days WHERE user_id = $1 AND mode = $2 AND day_start = $3', [key.userId, key.mode, day.start])
      return { tokens: n(rows[0]?.tokens_used) + n(rows[0]?.tokens_reserved), resetsAt: day.end }
    }
  }
}

export type Credits = ReturnType<typeof createCredits>
