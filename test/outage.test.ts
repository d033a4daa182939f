import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { build, mint, proxiedPostgres, userWithKey } from './helper.js'
import { tcpProxy } from './network.js'

/**
 * PostgreSQL and Redis going away under load and coming back, without restarting the service, each reached through
 * a TCP proxy of this test's own (test/network.ts), so the shared servers other test files use are never touched.
 */

/** A plan whose per-minute limit the load stays under: the load measures outages, not the limit. */
const PLANS_FILE = join(mkdtempSync(join(tmpdir(), 'outage-plans-')), 'plans.json')
const unlimited = { quota: { limit: 1e12, period: 'month' }, rateLimitPerMinute: 100_000 }
writeFileSync(PLANS_FILE, JSON.stringify({ plans: { load: { name: 'Load', features: { 'settings-assistant': unlimited, 'background-removal': unlimited } } } }))

/** Calls of the Settings Assistant (test mode: the sandbox) from a few clients at once, until stopped. */
function load (app: FastifyInstance, token: string, clients = 4) {
  const statuses: number[] = []
  let running = true
  const worker = async () => {
    for (;;) {
      if (!running) return
      const res = await app.inject({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: { authorization: `Bearer ${token}` }, payload: { message: 'How do I export sharper?' } })
      statuses.push(res.statusCode)
      // A refusal made without any I/O must not starve the timers of the test.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const workers = Array.from({ length: clients }, worker)
  return {
    statuses,
    /** The statuses of calls made from now on. */
    since () { const from = statuses.length; return () => statuses.slice(from) },
    async stop () { running = false; await Promise.all(workers) }
  }
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Lets the load run a moment, then cuts the server behind `proxy` away for a second: readiness must name `check`
 * as failing. Returns the statuses of the calls made while it was away (the proxy stays stopped).
 */
async function cut (t: Test, app: FastifyInstance, proxy: ReturnType<typeof tcpProxy>, traffic: ReturnType<typeof load>, check: string) {
  await settle(300)
  await proxy.stop()
  const during = traffic.since()
  await settle(1000)
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503, `readiness turns 503 while ${check} is away`)
  t.match(ready.json().checks[check], { status: 'failing' })
  return during()
}

t.test('PostgreSQL stopped during load: feature calls fail closed with 503, readiness 503; both recover without a restart, and nothing is lost', async (t) => {
  const { store, proxy } = await proxiedPostgres(t)
  const { app, logs } = await build(t, { store, env: { PLANS_FILE } })
  const { userId, key } = await userWithKey(app, { mode: 'test', plan: 'load' })
  const { token } = await mint(app, key)

  const traffic = load(app, token)
  const outage = await cut(t, app, proxy, traffic, 'database')
  await proxy.start()
  await settle(1500)
  const after = traffic.since()
  await settle(700)
  await traffic.stop()

  t.ok(outage.includes(503), 'calls during the outage are refused with 503 (fail closed)')
  t.same([...new Set(traffic.statuses)].filter((s) => s !== 200 && s !== 503), [], 'only 200 and 503: no 500, no hang')
  t.ok(after().includes(200), 'calls work again once the database is back, without a restart')
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'ready again')

  // Settlements refused during the outage are retried every 5 s: wait for them, then count.
  for (let i = 0; i < 80 && app.pendingSettlements() > 0; i++) await settle(100)
  t.equal(app.pendingSettlements(), 0)
  const answered = traffic.statuses.filter((s) => s === 200).length
  const ledger = await store.query<{ n: number, units: string }>('SELECT count(*)::int AS n, COALESCE(sum(units), 0) AS units FROM usage_ledger WHERE user_id = $1', [userId])
  const counter = await store.query<{ used: string, reserved: string }>('SELECT used, reserved FROM quota_usage WHERE user_id = $1', [userId])
  const held = await store.query<{ units: string }>('SELECT COALESCE(sum(units), 0) AS units FROM quota_reservations WHERE user_id = $1', [userId])
  t.equal(ledger.rows[0]?.n, answered, 'one ledger row for every answered call, none twice')
  t.equal(Number(counter.rows[0]?.used), Number(ledger.rows[0]?.units), 'the quota counter matches the ledger')
  // A reservation whose answer was lost with the connection stays held until the sweep (5 min) gives it back.
  t.equal(Number(counter.rows[0]?.reserved), Number(held.rows[0]?.units), 'every reserved unit belongs to a reservation the sweep will release')
  t.ok(logs.find('quota reservation failed: refusing the call (fail closed)').length > 0)
})

t.test('Redis stopped during load: rate limits fail open (calls pass), readiness reports it; both recover', async (t) => {
  const proxy = tcpProxy(6379)
  await proxy.start()
  t.teardown(() => proxy.stop())
  const { app, logs } = await build(t, { env: { PLANS_FILE, REDIS_URL: `redis://127.0.0.1:${proxy.port}/12` } })
  const { key } = await userWithKey(app, { mode: 'test', plan: 'load' })
  const { token } = await mint(app, key)

  const traffic = load(app, token, 2)
  // Readiness reports Redis as failing (SPEC §5) although calls go on.
  const outage = await cut(t, app, proxy, traffic, 'redis')
  await proxy.start()
  for (let i = 0; i < 50 && (await app.inject({ url: '/health/ready' })).statusCode !== 200; i++) await settle(100)
  await traffic.stop()

  t.ok(outage.length > 0 && outage.every((s) => s === 200), 'calls go on while Redis is away: limits fail open, quotas still hold in the database')
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'ready again once Redis is back, without a restart')
  t.ok(logs.find('redis connection error').length > 0, 'the failure is logged')
})
