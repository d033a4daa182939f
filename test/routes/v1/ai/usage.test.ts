import t from 'tap'
import { adminHeaders, build, mint, newUserId, userWithKey } from '../../../helper.js'

t.test('GET /v1/ai/usage: per-feature counters of the period and settled calls, paged', async (t) => {
  const { app } = await build(t)
  const { userId, key } = await userWithKey(app, { plan: 'free', mode: 'test' })
  const { token } = await mint(app, key)
  const feature = { userId, mode: 'test' as const, feature: 'background-removal' as const }
  const quota = { limit: 5, period: 'day' as const }
  for (let i = 0; i < 3; i++) {
    const reservation = await app.metering.reserve(feature, quota, 1, `req-${i}`)
    await app.metering.settle(reservation, { provider: 'sandbox', unitsIn: 1, unitsOut: 1, units: 1, requestId: `req-${i}` })
  }
  await app.metering.reserve(feature, quota, 1)

  const res = await app.inject({ url: '/v1/ai/usage?limit=2', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.match(body, { userId, plan: 'free', mode: 'test' })
  t.match(body.features, [
    { id: 'settings-assistant', unit: 'tokens', limit: 20000, used: 0, reserved: 0, remaining: 20000 },
    { id: 'background-removal', unit: 'images', period: 'day', limit: 5, used: 3, reserved: 1, remaining: 1 }
  ])
  t.same(body.events.map((e: { requestId: string }) => e.requestId), ['req-2', 'req-1'])
  t.match(body.events[0], { feature: 'background-removal', provider: 'sandbox', units: 1, estimated: false, costMicroUsd: 0 })
  const next = (await app.inject({ url: `/v1/ai/usage?limit=2&cursor=${body.nextCursor as string}`, headers: { authorization: `Bearer ${token}` } })).json()
  t.same(next.events.map((e: { requestId: string }) => e.requestId), ['req-0'])
  t.equal(next.nextCursor, null)

  const live = await mint(app, (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'live' } })).json().key)
  const liveUsage = (await app.inject({ url: '/v1/ai/usage', headers: { authorization: `Bearer ${live.token}` } })).json()
  t.match(liveUsage.features[1], { used: 0, reserved: 0 }, 'test usage never counts against live')
  t.same(liveUsage.events, [])

  const retired = app.jwt.sign({ sub: userId, plan: 'retired', features: ['background-removal'], mode: 'test', jti: 'r' })
  t.same((await app.inject({ url: '/v1/ai/usage', headers: { authorization: `Bearer ${retired}` } })).json().features, [])
})

t.test('GET /v1/admin/usage reads any user\'s usage by mode', async (t) => {
  const { app } = await build(t)
  const { userId } = await userWithKey(app, { plan: 'pro', mode: 'test' })
  const reservation = await app.metering.reserve({ userId, mode: 'live', feature: 'settings-assistant' }, { limit: 2_000_000, period: 'month' }, 500)
  await app.metering.settle(reservation, { provider: 'openai', model: 'gpt-4o-mini', unitsIn: 300, unitsOut: 120, units: 420, costMicroUsd: 117 })
  const res = await app.inject({ url: `/v1/admin/usage?userId=${userId}`, headers: adminHeaders })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { mode: 'live', features: [{ id: 'settings-assistant', used: 420 }, { id: 'background-removal', used: 0 }], events: [{ model: 'gpt-4o-mini', unitsIn: 300, unitsOut: 120, costMicroUsd: 117 }] })
  t.same((await app.inject({ url: `/v1/admin/usage?userId=${userId}&mode=test`, headers: adminHeaders })).json().events, [])
  const none = await app.inject({ url: `/v1/admin/usage?userId=${newUserId()}`, headers: adminHeaders })
  t.equal(none.statusCode, 404)
  // A license of a plan taken out of the plans file since: no features, no crash.
  const retired = newUserId()
  await app.store.query("INSERT INTO licenses (user_id, plan, status) VALUES ($1, 'retired', 'active')", [retired])
  t.match((await app.inject({ url: `/v1/admin/usage?userId=${retired}`, headers: adminHeaders })).json(), { plan: 'retired', features: [] })
})

t.test('the metering plugin releases reservations left by a crashed process at startup', async (t) => {
  const { createTestStore } = await import('../../../helper.js')
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const userId = newUserId()
  await store.query('INSERT INTO quota_usage (user_id, mode, feature, period_start, reserved) VALUES ($1, \'live\', \'background-removal\', $2, 2)', [userId, new Date('2026-01-01T00:00:00Z')])
  await store.query(`INSERT INTO quota_reservations (id, user_id, mode, feature, period_start, units, expires_at)
    VALUES ('crashed', $1, 'live', 'background-removal', $2, 2, $3)`, [userId, new Date('2026-01-01T00:00:00Z'), new Date(Date.now() - 1000)])
  const { logs } = await build(t, { store })
  t.match(logs.find('released expired quota reservations'), [{ released: 1 }])
  const { rows } = await store.query<{ reserved: string }>('SELECT reserved FROM quota_usage WHERE user_id = $1', [userId])
  t.equal(Number(rows[0]?.reserved), 0)
})

t.test('a failing sweep is logged, not thrown', async (t) => {
  const { createTestStore } = await import('../../../helper.js')
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const failing = {
    ...store,
    query: async (sql: string, params?: unknown[]) => sql.includes('expires_at <') ? Promise.reject(new Error('database is down')) : store.query(sql, params)
  }
  const { logs } = await build(t, { store: failing as typeof store })
  t.equal(logs.find('could not sweep quota reservations').length, 1)
})
