import t from 'tap'
import { creditTerms, type CreditTerms } from '../../plugins/credits.js'
import { createMetering, RESERVATION_TTL_MS, type QuotaKey } from '../../plugins/metering.js'
import { toCents, withMarkup } from '../../plugins/money.js'
import { createTestStore, newUserId } from '../helper.js'

const quota = { limit: 10_000_000, period: 'month' as const }
const chatKey = (): QuotaKey => ({ userId: newUserId('credits'), mode: 'live', feature: 'chat' })
const ask = (amountMicroUsd: number, tokens = 0) => ({ amountMicroUsd, tokens })

t.test('money is integers: cents round half up, the markup rounds up to a whole micro-USD', async (t) => {
  t.same([toCents(4999), toCents(5000), toCents(15_000), toCents(0)], [0, 1, 2, 0])
  t.same([withMarkup(100, 40), withMarkup(1, 40), withMarkup(0, 40), withMarkup(360, 0), withMarkup(7, 1000)], [140, 2, 0, 360, 77])
  t.same(creditTerms({ monthlyFreeCents: 5 }), { monthlyFreeMicroUsd: 50_000, markupPercent: 40, dailyTokenLimit: null, monthlyCostLimitMicroUsd: null, graceMs: 24 * 3_600_000 }, 'the defaults')
})

for (const backend of ['embedded', 'postgres'] as const) {
  t.test(`${backend}: free credits first, then purchased ones; a hold is released or charged; never below zero`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const metering = createMetering(store)
    const terms = creditTerms({ monthlyFreeCents: 1, markupPercent: 0 })
    const key = chatKey()
    const balance = () => metering.credits.balance(store, key, terms)

    t.match(await balance(), { billed: true, freeMicroUsd: 10_000, purchasedMicroUsd: 0, lifetimeMicroUsd: 0 })
    const tooDear = await metering.reserve(key, quota, 100, null, { terms, ask: ask(10_001) }).catch((e: unknown) => e)
    t.match(tooDear, { code: 'INSUFFICIENT_CREDITS', statusCode: 402, details: { reason: 'balance', balanceCents: 1, requiredCents: 1, balanceMicroUsd: 10_000, requiredMicroUsd: 10_001 } })
    t.match(await metering.usage(key, quota), { reserved: 0 }, 'the quota was not reserved either: both or neither')

    await metering.credits.grant(store, key, 20_000, 'Order 1')
    const first = await metering.reserve(key, quota, 100, 'req-1', { terms, ask: ask(25_000) })
    t.match(await balance(), { freeMicroUsd: 0, purchasedMicroUsd: 5000 }, 'the free credits are held first')
    t.equal(await metering.settle(first, { provider: 'openai', model: 'gpt-4o-mini', units: 100, costMicroUsd: 12_000 }), true)
    t.match(await balance(), { freeMicroUsd: 0, purchasedMicroUsd: 18_000, lifetimeMicroUsd: 12_000 }, 'charged 12,000: 10,000 free, 2,000 purchased')
    t.equal(await metering.settle(first, { provider: 'openai', model: 'gpt-4o-mini', units: 100, costMicroUsd: 12_000 }), false, 'a repeated settlement')
    t.match(await balance(), { purchasedMicroUsd: 18_000, lifetimeMicroUsd: 12_000 }, 'is charged once')

    const failed = await metering.reserve(key, quota, 10, null, { terms, ask: ask(18_000) })
    t.match(await balance(), { purchasedMicroUsd: 0 })
    await metering.release(failed)
    await metering.release(failed)
    t.match(await balance(), { purchasedMicroUsd: 18_000 }, 'released once, whatever the repeats')
    const free = await metering.reserve(key, quota, 10, null, { terms, ask: ask(500) })
    t.equal(await metering.settle(free, { provider: 'sandbox', units: 10 }), true)
    t.match(await balance(), { purchasedMicroUsd: 18_000, lifetimeMicroUsd: 12_000 }, 'a call without a cost is charged nothing')

    const over = await metering.reserve(key, quota, 10, null, { terms, ask: ask(1000) })
    t.equal(await metering.settle(over, { provider: 'openai', units: 10, costMicroUsd: 50_000 }), true)
    t.match(await balance(), { purchasedMicroUsd: 0, lifetimeMicroUsd: 30_000 }, 'a call dearer than its hold takes what is left, never more')
    const { rows } = await store.query<{ charged_micro_usd: string, cost_micro_usd: string, billed: boolean, markup_percent: number }>(
      'SELECT charged_micro_usd, cost_micro_usd, billed, markup_percent FROM usage_ledger WHERE user_id = $1 ORDER BY id', [key.userId])
    t.same(rows.map((r) => [Number(r.cost_micro_usd), Number(r.charged_micro_usd), r.billed, r.markup_percent]), [[12_000, 12_000, true, 0], [0, 0, true, 0], [50_000, 18_000, true, 0]])
    const { rows: accounts } = await store.query<{ purchased_micro_usd: string, reserved_micro_usd: string }>('SELECT purchased_micro_usd, reserved_micro_usd FROM credit_accounts WHERE user_id = $1', [key.userId])
    t.same(accounts.map((a) => [Number(a.purchased_micro_usd), Number(a.reserved_micro_usd)]), [[0, 0]])
  })
}

for (const backend of ['embedded', 'postgres'] as const) {
  t.test(`${backend}: a settlement inside the caller's transaction commits or rolls back with it; a repeat there undoes only its own charge`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const metering = createMetering(store)
    const terms = creditTerms({ monthlyFreeCents: 0, markupPercent: 0 })
    const key = chatKey()
    await metering.credits.grant(store, key, 100_000, 'Order 1')
    const balance = () => metering.credits.balance(store, key, terms)
    const call = { provider: 'openai', model: 'gpt-4o-mini', units: 100, costMicroUsd: 10_000 }
    // What the caller writes in its own transaction beside the settlement.
    await store.query('CREATE TABLE outcome (n int)')

    const rolledBack = await metering.reserve(key, quota, 100, null, { terms, ask: ask(20_000) })
    await t.rejects(store.transaction(async (tx) => {
      t.equal(await metering.settle(rolledBack, call, tx), true)
      throw new Error('the outcome could not be written')
    }), /could not be written/)
    t.match(await balance(), { purchasedMicroUsd: 80_000, lifetimeMicroUsd: 0 }, 'nothing charged: the hold stays until released')
    t.match(await metering.usage(key, quota), { used: 0, reserved: 100 })

    const settled = await store.transaction(async (tx) => {
      const first = await metering.settle(rolledBack, call, tx)
      const again = await metering.settle(rolledBack, call, tx)
      await tx.query('INSERT INTO outcome (n) VALUES (1)')
      return [first, again]
    })
    t.same(settled, [true, false], 'the repeat in the same transaction finds the ledger row')
    t.same((await store.query('SELECT n FROM outcome')).rows, [{ n: 1 }], 'the caller\'s own writes commit')
    t.match(await balance(), { purchasedMicroUsd: 90_000, lifetimeMicroUsd: 10_000 }, 'charged once')
    t.match(await metering.usage(key, quota), { used: 100, reserved: 0 })

    // A fault in the ledger statement fails the caller's transaction as it is (nothing to undo by hand).
    const faulty = await metering.reserve(key, quota, 100, null, { terms, ask: ask(20_000) })
    await t.rejects(store.transaction(async (tx) => metering.settle(faulty, call, {
      query: async (sql, params) => sql.includes('INSERT INTO usage_ledger') ? Promise.reject(new Error('connection terminated')) : tx.query(sql, params),
      exec: async (sql) => tx.exec(sql)
    })), /connection terminated/)
    t.match(await balance(), { lifetimeMicroUsd: 10_000 }, 'not charged')

    const free = await metering.reserve(key, { limit: 1000, period: 'month' }, 5)
    t.equal(await store.transaction(async (tx) => metering.settle(free, { provider: 'sandbox', units: 5 }, tx)), true, 'a call without billing too')
  })
}

t.test('the free credits renew each UTC month; purchased ones stay', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  let now = new Date('2026-12-31T23:00:00.000Z')
  const metering = createMetering(store, () => now)
  const terms = creditTerms({ monthlyFreeCents: 2, markupPercent: 40 })
  const key = chatKey()
  await metering.credits.grant(store, key, 10_000, 'Top-up')
  const call = await metering.reserve(key, quota, 10, null, { terms, ask: ask(25_000) })
  t.equal(await metering.settle(call, { provider: 'openai', units: 10, costMicroUsd: 10_000 }), true)
  t.match(await metering.credits.balance(store, key, terms), { freeMicroUsd: 6000, purchasedMicroUsd: 10_000, freeResetsAt: new Date('2027-01-01T00:00:00.000Z') }, '14,000 charged (40 % markup) of the 20,000 free')
  now = new Date('2027-01-01T00:00:01.000Z')
  t.match(await metering.credits.balance(store, key, terms), { freeMicroUsd: 20_000, purchasedMicroUsd: 10_000, lifetimeMicroUsd: 14_000, monthChargedMicroUsd: 0, freeResetsAt: new Date('2027-02-01T00:00:00.000Z') }, 'a new month: the free credits are whole again')
  const late = await metering.reserve(key, quota, 10, null, { terms, ask: ask(30_000) })
  t.match(await metering.credits.balance(store, key, terms), { freeMicroUsd: 0, purchasedMicroUsd: 0 })
  await metering.release(late)
  t.match(await metering.credits.balance(store, key, terms), { freeMicroUsd: 20_000, purchasedMicroUsd: 10_000 })
})

t.test('the daily token limit is hard; the monthly cost limit is soft for graceHours, then refuses until the month ends', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  let now = new Date('2026-12-10T10:00:00.000Z')
  const metering = createMetering(store, () => now)
  const terms: CreditTerms = creditTerms({ monthlyFreeCents: 1000, markupPercent: 0, dailyTokenLimit: 100, monthlyCostLimitCents: 1, graceHours: 2 })
  const key = chatKey()

  const first = await metering.reserve(key, quota, 80, null, { terms, ask: ask(9000, 80) })
  t.same(first.billing?.hold.warnings, ['monthly-cost-limit=90%', 'daily-token-limit=80%'], 'at 80 % of a limit: a warning')
  const refused = await metering.reserve(key, quota, 30, null, { terms, ask: ask(10, 30) }).catch((e: unknown) => e)
  t.match(refused, { code: 'INSUFFICIENT_CREDITS', details: { reason: 'daily-token-limit', limitTokens: 100, usedTokens: 80, resetsAt: '2026-12-11T00:00:00.000Z' } })
  t.equal(await metering.settle(first, { provider: 'openai', units: 70, costMicroUsd: 9000 }), true)

  const crossing = await metering.reserve(key, quota, 10, null, { terms, ask: ask(2000, 10) })
  t.match(crossing.billing?.hold.warnings, ['monthly-cost-limit=110%'], 'the call that crosses the limit passes: the grace period starts')
  await metering.settle(crossing, { provider: 'openai', units: 10, costMicroUsd: 2000 })
  now = new Date('2026-12-10T11:59:00.000Z')
  await metering.release(await metering.reserve(key, quota, 1, null, { terms, ask: ask(100, 1) }))
  now = new Date('2026-12-10T12:00:00.000Z')
  const after = await metering.reserve(key, quota, 1, null, { terms, ask: ask(100, 1) }).catch((e: unknown) => e)
  t.match(after, { code: 'INSUFFICIENT_CREDITS', details: { reason: 'monthly-cost-limit', limitCents: 1, chargedCents: 1, resetsAt: '2027-01-01T00:00:00.000Z' } }, 'two hours later: refused')
  now = new Date('2027-01-01T00:00:00.000Z')
  t.ok(await metering.reserve(key, quota, 1, null, { terms, ask: ask(100, 1) }), 'a new month, a new limit')

  const strict = creditTerms({ monthlyFreeCents: 1000, monthlyCostLimitCents: 1, graceHours: 0 })
  const other = chatKey()
  const none = await metering.reserve(other, quota, 1, null, { terms: strict, ask: ask(10_001) }).catch((e: unknown) => e)
  t.match(none, { details: { reason: 'monthly-cost-limit' } }, 'without a grace period: refused at once')
})

t.test('holds of a crashed process expire with their quota reservation; a late settlement still charges', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  let now = new Date()
  const metering = createMetering(store, () => now)
  const terms = creditTerms({ monthlyFreeCents: 1 })
  const key = chatKey()
  const lost = await metering.reserve(key, quota, 10, null, { terms, ask: ask(8000, 10) })
  now = new Date(now.getTime() + RESERVATION_TTL_MS + 1000)
  t.equal(await metering.releaseExpired(), 1)
  t.match(await metering.credits.balance(store, key, terms), { freeMicroUsd: 10_000, monthReservedMicroUsd: 0 })
  t.equal((await store.query('SELECT 1 FROM credit_reservations')).rows.length, 0)
  t.equal(await metering.settle(lost, { provider: 'openai', units: 12, costMicroUsd: 1000 }), false)
  t.match(await metering.credits.balance(store, key, terms), { freeMicroUsd: 8600, lifetimeMicroUsd: 1400 }, 'charged from what is left')
  t.match(await metering.credits.today(store, key), { tokens: 12 })
})
