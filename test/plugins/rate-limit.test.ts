import { randomInt } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { TOKEN_MINT_PER_MINUTE_PER_IP } from '../../plugins/rate-limit.js'
import { build, mint, userWithKey } from '../helper.js'

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/** A client address of its own per test, so buckets never mix (also across runs sharing Redis). */
const newIp = () => `127.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`

async function featureRoute (app: FastifyInstance) {
  app.post('/v1/ai/test-feature', { config: { feature: 'background-removal' } }, async () => ({ ok: true }))
}

for (const [storeName, env] of [['in-memory', {}], ['redis', { REDIS_URL }]] as const) {
  t.test(`${storeName}: POST /v1/ai/tokens is limited per address before authentication`, async (t) => {
    const { app } = await build(t, { env })
    const ip = newIp()
    let last
    for (let i = 0; i < TOKEN_MINT_PER_MINUTE_PER_IP; i++) {
      last = await app.inject({ method: 'POST', url: '/v1/ai/tokens', remoteAddress: ip, headers: { authorization: 'Bearer pak_test_wrongwrongwrongwrongwrongwrongwrong' } })
      t.equal(last.statusCode, 401)
    }
    t.equal(last?.headers['x-ratelimit-remaining'], '0')
    const limited = await app.inject({ method: 'POST', url: '/v1/ai/tokens', remoteAddress: ip })
    t.equal(limited.statusCode, 429)
    t.match(limited.json().error, { code: 'RATE_LIMITED', details: { limit: TOKEN_MINT_PER_MINUTE_PER_IP, retryAfterSeconds: Number } })
    t.match(limited.headers['retry-after'], /^\d+$/)
    t.equal(limited.headers['x-ratelimit-limit'], String(TOKEN_MINT_PER_MINUTE_PER_IP))
    const other = await app.inject({ method: 'POST', url: '/v1/ai/tokens', remoteAddress: newIp() })
    t.equal(other.statusCode, 401, 'another address has its own budget')
  })

  t.test(`${storeName}: feature calls are limited per user from the plan`, async (t) => {
    const { app } = await build(t, { env, register: featureRoute })
    const { key } = await userWithKey(app, { plan: 'free', mode: 'test' })
    const { token } = await mint(app, key)
    const call = () => app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${token}` } })
    for (let i = 0; i < 3; i++) t.equal((await call()).statusCode, 200, 'free: 3 per minute')
    const limited = await call()
    t.equal(limited.statusCode, 429)
    t.equal(limited.json().error.code, 'RATE_LIMITED')
    t.equal(limited.headers['x-ratelimit-limit'], '3')

    const other = await userWithKey(app, { plan: 'free', mode: 'test' })
    const otherToken = (await mint(app, other.key)).token
    const res = await app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${otherToken}` } })
    t.equal(res.statusCode, 200, 'another user has their own budget')
  })

  t.test(`${storeName}: other AI-token routes are limited per user`, async (t) => {
    const { app } = await build(t, { env })
    const { key } = await userWithKey(app)
    const { token } = await mint(app, key)
    const res = await app.inject({ url: '/v1/ai/entitlements', headers: { authorization: `Bearer ${token}` } })
    t.equal(res.headers['x-ratelimit-limit'], '300', 'the plan\'s own limit (pro: 300 a minute)')
    const free = await userWithKey(app, { plan: 'free' })
    const freeToken = (await mint(app, free.key)).token
    t.equal((await app.inject({ url: '/v1/billing/balance', headers: { authorization: `Bearer ${freeToken}` } })).headers['x-ratelimit-limit'], '60', 'free: 60')
  })
}

t.test('two instances sharing Redis enforce one limit', async (t) => {
  const a = await build(t, { env: { REDIS_URL }, register: featureRoute })
  const b = await build(t, { env: { REDIS_URL }, register: featureRoute })
  const { key } = await userWithKey(a.app, { plan: 'free', mode: 'test' })
  const { token } = await mint(a.app, key)
  const codes = []
  for (const app of [a.app, b.app, a.app, b.app]) {
    codes.push((await app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${token}` } })).statusCode)
  }
  t.same(codes, [200, 200, 200, 429])
})

t.test('Redis down: limits fail open (quotas in the database still hold) and readiness says so', async (t) => {
  const { app, logs } = await build(t, { env: { REDIS_URL: 'redis://127.0.0.1:1' }, register: featureRoute })
  const { key } = await userWithKey(app, { plan: 'free', mode: 'test' })
  const { token } = await mint(app, key)
  for (let i = 0; i < 5; i++) {
    t.equal((await app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
  }
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json().checks.redis, { status: 'failing' })
  t.ok(logs.find('redis connection error').length > 0)
  t.notOk(logs.text.includes('redis://127.0.0.1:1'), 'the URL (which may hold a password) is not logged')
})

t.test('with Redis configured, readiness checks it', async (t) => {
  const { app } = await build(t, { env: { REDIS_URL } })
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 200)
  t.match(ready.json().checks, { database: { status: 'ok' }, redis: { status: 'ok' } })
})
