import t from 'tap'
import { createMetering, quotaPeriod, RESERVATION_TTL_MS, type QuotaKey } from '../../plugins/metering.js'
import { createPostgresStore } from '../../plugins/store/index.js'
import { createTestStore, newUserId } from '../helper.js'

const quota = { limit: 50, period: 'day' as const }
const keyFor = (mode: 'live' | 'test' = 'live'): QuotaKey => ({ userId: newUserId(), mode, feature: 'background-removal' })

t.test('quota periods are UTC days and months', async (t) => {
  const now = new Date('2026-03-31T22:30:00.000Z')
  t.same(quotaPeriod('day', now), { start: new Date('2026-03-31T00:00:00Z'), end: new Date('2026-04-01T00:00:00Z') })
  t.same(quotaPeriod('month', now), { start: new Date('2026-03-01T00:00:00Z'), end: new Date('2026-04-01T00:00:00Z') })
  const newYearsEve = new Date('2026-12-31T23:59:59.000Z')
  t.equal(quotaPeriod('day', newYearsEve).end.toISOString(), '2027-01-01T00:00:00.000Z')
  t.equal(quotaPeriod('month', newYearsEve).end.toISOString(), '2027-01-01T00:00:00.000Z')
})

for (const backend of ['embedded', 'postgres'] as const) {
  t.test(`${backend}: reserve, settle, release and QUOTA_EXCEEDED`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const metering = createMetering(store)
    const key = keyFor()
    const small = { limit: 3, period: 'month' as const }

    t.match(await metering.usage(key, small), { used: 0, reserved: 0 }, 'no calls yet')
    const first = await metering.reserve(key, small, 1, 'req-1')
    t.same(await metering.usage(key, small), { used: 0, reserved: 1, resetsAt: first.resetsAt })
    t.equal(await metering.settle(first, { provider: 'sandbox', units: 1, requestId: 'req-1' }), true)
    t.equal(await metering.settle(first, { provider: 'sandbox', units: 1, requestId: 'req-1' }), false,
      'a settlement retried after it had committed (its answer lost with the connection) changes nothing')
    const failed = await metering.reserve(key, small, 1)
    await metering.release(failed)
    await metering.release(failed)
    t.match(await metering.usage(key, small), { used: 1, reserved: 0 }, 'a failed call leaves used quota unchanged')

    await metering.reserve(key, small, 2)
    const err = await metering.reserve(key, small, 1).catch((e: unknown) => e)
    t.match(err, { code: 'QUOTA_EXCEEDED', statusCode: 402, message: `The monthly quota of ${key.feature} is used up.`, details: { limit: 3, used: 3, resetsAt: first.resetsAt.toISOString() } })
    t.match((err as { headers: Record<string, string> }).headers['retry-after'], /^\d+$/)

    const test = await metering.reserve({ ...key, mode: 'test' }, small, 3)
    t.equal(test.units, 3, 'test mode has its own bucket')
    const tooBig = await metering.reserve(keyFor(), small, 4).catch((e: unknown) => e)
    t.match(tooBig, { code: 'QUOTA_EXCEEDED', details: { limit: 3, used: 0 } }, 'a first call larger than the whole quota')

    const { rows } = await store.query<{ provider: string, units: string, request_id: string, estimated: boolean }>(
      'SELECT provider, units, request_id, estimated FROM usage_ledger WHERE user_id = $1', [key.userId])
    t.match(rows, [{ provider: 'sandbox', request_id: 'req-1', estimated: false }])
    t.equal(rows.length, 1, 'one ledger row, however often it was settled')
    t.equal(Number(rows[0]?.units), 1)
  })

  t.test(`${backend}: reservations of a crashed process expire and are released; a late settle still lands`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    let now = new Date()
    const metering = createMetering(store, () => now)
    const key = keyFor()
    const lost = await metering.reserve(key, quota, 5)
    await metering.reserve(key, quota, 2)
    await metering.reserve({ ...key, mode: 'test' }, quota, 3)
    t.equal(await metering.releaseExpired(), 0)
    now = new Date(now.getTime() + RESERVATION_TTL_MS + 1000)
    t.equal(await metering.releaseExpired(), 3, 'every expired reservation, two of them on one counter row')
    t.match(await metering.usage(key, quota), { used: 0, reserved: 0 })
    t.match(await metering.usage({ ...key, mode: 'test' }, quota), { used: 0, reserved: 0 })
    t.equal(await metering.settle(lost, { provider: 'openai', model: 'gpt-4o-mini', unitsIn: 10, unitsOut: 4, units: 14, estimated: true }), false)
    t.match(await metering.usage(key, quota), { used: 14, reserved: 0 }, 'what was generated is charged, never zero')
    const { rows } = await store.query('SELECT model, estimated FROM usage_ledger WHERE user_id = $1', [key.userId])
    t.same(rows, [{ model: 'gpt-4o-mini', estimated: true }])
  })
}

for (const backend of ['embedded', 'postgres'] as const) {
  t.test(`${backend}: reservations made together read the counter as if made one after the other`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const metering = createMetering(store)
    const key = keyFor()
    // The first goes at once; the four that come while it is in flight go together, in one statement.
    const spent = (await Promise.all([1, 2, 3, 4, 5].map(async (units) => metering.reserve(key, quota, units)))).map((r) => r.spent)
    t.same(spent, [1, 3, 6, 10, 15])
    t.match(await metering.usage(key, quota), { used: 0, reserved: 15 })
    const { rows } = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM quota_reservations WHERE user_id = $1', [key.userId])
    t.equal(rows[0]?.n, 5, 'one reservation row each')
  })

  t.test(`${backend}: a group whose sum does not fit: the calls that fit still reserve, the others are refused`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const metering = createMetering(store)
    const small = { limit: 10, period: 'day' as const }
    const [a, b, c] = [keyFor(), keyFor(), keyFor()] as [QuotaKey, QuotaKey, QuotaKey]
    const first = metering.reserve(a, small, 1)
    const together = await Promise.allSettled([
      metering.reserve(a, small, 4), metering.reserve(a, small, 4), metering.reserve(a, small, 4),
      metering.reserve(b, small, 10),
      metering.reserve(c, small, 11)
    ])
    await first
    const ofA = together.slice(0, 3)
    t.equal(ofA.filter((r) => r.status === 'fulfilled').length, 2, 'two of the three fit beside the first (tried one by one, in any order)')
    t.match(ofA.find((r) => r.status === 'rejected'), { reason: { code: 'QUOTA_EXCEEDED', details: { limit: 10, used: 9 } } })
    t.equal(together[3]?.status, 'fulfilled', 'another user\'s row in the same group is not held back')
    t.match(together[4], { reason: { code: 'QUOTA_EXCEEDED', details: { limit: 10, used: 0 } } }, 'a call larger than the quota, alone on its row')
    t.match(await metering.usage(a, small), { used: 0, reserved: 9 })
    t.match(await metering.usage(b, small), { used: 0, reserved: 10 })
    t.match(await metering.usage(c, small), { used: 0, reserved: 0 })
  })

  t.test(`${backend}: settlements made together: each its ledger row and prices; a reservation twice in one group counts once`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const metering = createMetering(store)
    const key = keyFor()
    const [x, a, b] = [await metering.reserve(key, quota, 5, 'req-x'), await metering.reserve(key, quota, 5, 'req-a'), await metering.reserve(key, quota, 5, 'req-b')]
    const priced = { provider: 'openai', model: 'gpt-4o-mini', unitsIn: 3, unitsOut: 1, units: 4, costMicroUsd: 12, estimated: true, sessionId: 'chat-1', price: { inputMicroUsdPer1M: 150_000, outputMicroUsdPer1M: 600_000 } }
    const settled = await Promise.all([
      metering.settle(x, { provider: 'sandbox', units: 2, requestId: 'req-x' }),
      metering.settle(a, { ...priced, requestId: 'req-a' }),
      metering.settle(b, { provider: 'removebg', units: 1, requestId: 'req-b', price: { perCallMicroUsd: 200_000 } }),
      metering.settle(a, { ...priced, requestId: 'req-a' })
    ])
    t.same(settled, [true, true, true, false], 'the second settlement of a finds it settled')
    t.match(await metering.usage(key, quota), { used: 7, reserved: 0 }, 'settled units in, reserved units out')
    const { rows } = await store.query<Record<string, unknown>>(`SELECT request_id, provider, model, units_in::int, units_out::int, units::int, cost_micro_usd::int,
      estimated, charged_micro_usd::int, billed, markup_percent, price_in_micro_usd_per_1m::int AS price_in, price_out_micro_usd_per_1m::int AS price_out,
      price_per_call_micro_usd::int AS per_call, session_id, reservation_id FROM usage_ledger WHERE user_id = $1 ORDER BY id`, [key.userId])
    t.same(rows, [
      { request_id: 'req-x', provider: 'sandbox', model: null, units_in: 0, units_out: 0, units: 2, cost_micro_usd: 0, estimated: false, charged_micro_usd: 0, billed: false, markup_percent: null, price_in: null, price_out: null, per_call: null, session_id: null, reservation_id: x.id },
      { request_id: 'req-a', provider: 'openai', model: 'gpt-4o-mini', units_in: 3, units_out: 1, units: 4, cost_micro_usd: 12, estimated: true, charged_micro_usd: 0, billed: false, markup_percent: null, price_in: 150_000, price_out: 600_000, per_call: null, session_id: 'chat-1', reservation_id: a.id },
      { request_id: 'req-b', provider: 'removebg', model: null, units_in: 0, units_out: 0, units: 1, cost_micro_usd: 0, estimated: false, charged_micro_usd: 0, billed: false, markup_percent: null, price_in: null, price_out: null, per_call: 200_000, session_id: null, reservation_id: b.id }
    ], 'the rows in the order the calls were settled')
  })
}

t.test('two instances on PostgreSQL, 400 calls of 10 users at once: grouped statements never deadlock a caller and every count is exact', async (t) => {
  const { store, url, drop } = await createTestStore('postgres')
  t.teardown(drop)
  const second = createPostgresStore(url as string)
  t.teardown(() => second.close())
  const instances = [createMetering(store), createMetering(second)]
  const keys = Array.from({ length: 10 }, () => keyFor())
  const roomy = { limit: 1000, period: 'day' as const }
  const results = await Promise.allSettled(Array.from({ length: 400 }, async (_, i) => {
    const metering = instances[i % 2] as ReturnType<typeof createMetering>
    const reservation = await metering.reserve(keys[i % 10] as QuotaKey, roomy, 3, `req-${i}`)
    return metering.settle(reservation, { provider: 'sandbox', units: 2, requestId: `req-${i}` })
  }))
  t.same(results.filter((r) => r.status === 'rejected'), [], 'no call failed')
  for (const key of keys) t.match(await instances[0]?.usage(key, roomy), { used: 80, reserved: 0 })
  const ledger = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_ledger WHERE user_id = ANY($1)', [keys.map((k) => k.userId)])
  t.equal(ledger.rows[0]?.n, 400)
})

t.test('concurrency on PostgreSQL: two instances, 200 calls against a quota of 50', async (t) => {
  const { store, url, drop } = await createTestStore('postgres')
  t.teardown(drop)
  const second = createPostgresStore(url as string)
  t.teardown(() => second.close())
  const instances = [createMetering(store), createMetering(second)]
  const key = keyFor()
  const results = await Promise.allSettled(Array.from({ length: 200 }, async (_, i) => {
    const metering = instances[i % 2] as ReturnType<typeof createMetering>
    const reservation = await metering.reserve(key, quota, 1, `req-${i}`)
    await metering.settle(reservation, { provider: 'sandbox', units: 1, requestId: `req-${i}` })
  }))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 50)
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  t.equal(rejected.length, 150)
  t.ok(rejected.every((r) => (r.reason as { code: string }).code === 'QUOTA_EXCEEDED'))
  const ledger = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_ledger WHERE user_id = $1', [key.userId])
  t.equal(ledger.rows[0]?.n, 50)
  t.match(await instances[0]?.usage(key, quota), { used: 50, reserved: 0 })
})

t.test('concurrency on the embedded store: 200 calls against a quota of 50', async (t) => {
  const { store, drop } = await createTestStore('embedded')
  t.teardown(drop)
  const metering = createMetering(store)
  const key = keyFor()
  const results = await Promise.allSettled(Array.from({ length: 200 }, async (_, i) => {
    const reservation = await metering.reserve(key, quota, 1)
    await metering.settle(reservation, { provider: 'sandbox', units: 1, requestId: `req-${i}` })
  }))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 50)
  const ledger = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_ledger WHERE user_id = $1', [key.userId])
  t.equal(ledger.rows[0]?.n, 50)
  t.match(await metering.usage(key, quota), { used: 50, reserved: 0 })
})

t.test('costMicroUsd: model price, else provider price, else 0', async (t) => {
  const { costMicroUsd } = await import('../../plugins/metering.js')
  const prices = { 'openai/gpt-4o-mini': { perInputUnit: 0.15, perOutputUnit: 0.6 }, openai: { perInputUnit: 1 }, removebg: { perCall: 200000 } }
  t.equal(costMicroUsd(prices, { provider: 'openai', model: 'gpt-4o-mini', unitsIn: 1000, unitsOut: 100 }), 210)
  t.equal(costMicroUsd(prices, { provider: 'openai', model: 'other', unitsIn: 10, unitsOut: 100 }), 10, 'the provider price')
  t.equal(costMicroUsd(prices, { provider: 'removebg', model: null }), 200000, 'per call; units default to 0')
  t.equal(costMicroUsd(prices, { provider: 'sandbox' }), 0)
  t.equal(costMicroUsd(undefined, { provider: 'openai', model: 'gpt-4o-mini', unitsIn: 5 }), 0, 'no price table')
})
