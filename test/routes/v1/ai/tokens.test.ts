import t from 'tap'
import { adminHeaders, build, mint, newUserId, userWithKey } from '../../../helper.js'

t.test('a test key mints a test-mode AI token carrying plan, features and mode', async (t) => {
  const { app, logs } = await build(t)
  const { userId, key } = await userWithKey(app, { plan: 'pro', mode: 'test' })
  const res = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${key}` } })
  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.match(body, { tokenType: 'Bearer', expiresIn: 900, plan: 'pro', features: ['settings-assistant', 'background-removal', 'chat', 'openai-compatible', 'virtual-staging', 'risk-scan'], mode: 'test' })
  const claims = app.jwt.decode<Record<string, unknown>>(body.token)
  t.match(claims, { sub: userId, plan: 'pro', features: ['settings-assistant', 'background-removal', 'chat', 'openai-compatible', 'virtual-staging', 'risk-scan'], mode: 'test', aud: 'portal-ai', iss: 'portal-ai-api', jti: String })
  t.equal(new Date(body.expiresAt).getTime(), (claims?.exp as number) * 1000)
  t.equal((claims?.exp as number) - (claims?.iat as number), 900)
  t.notOk(logs.text.includes(key), 'the key is not logged')
  t.notOk(logs.text.includes(body.token), 'the token is not logged')
  t.match(logs.find('request completed').at(-1), { route: '/v1/ai/tokens', statusCode: 201, principalId: userId })
})

t.test('GET /v1/ai/entitlements lists the plan\'s features and quotas', async (t) => {
  const { app } = await build(t)
  const { userId, key } = await userWithKey(app, { plan: 'free', mode: 'test' })
  const { token } = await mint(app, key)
  const res = await app.inject({ url: '/v1/ai/entitlements', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.match(body, { userId, plan: 'free', planName: 'Free', mode: 'test' })
  t.same(body.features.map((f: { id: string }) => f.id), ['settings-assistant', 'background-removal', 'chat', 'virtual-staging', 'risk-scan'])
  t.match(body.features[1], { id: 'background-removal', name: 'Background removal', unit: 'images', quota: { limit: 5, period: 'day' }, rateLimitPerMinute: 3 })
  const resetsAt = new Date(body.features[1].quota.resetsAt)
  t.equal(resetsAt.getUTCHours(), 0)
  t.ok(resetsAt.getTime() > Date.now() && resetsAt.getTime() <= Date.now() + 86_400_000)
})

t.test('the body narrows the token to some features of the plan', async (t) => {
  const { app } = await build(t)
  const { key } = await userWithKey(app)
  const narrowed = await mint(app, key, ['background-removal'])
  t.same(narrowed.features, ['background-removal'])
  const res = await app.inject({ url: '/v1/ai/entitlements', headers: { authorization: `Bearer ${narrowed.token}` } })
  t.same(res.json().features.map((f: { id: string }) => f.id), ['background-removal'])

  const unknown = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${key}` }, payload: { features: ['mind-reading'] } })
  t.equal(unknown.statusCode, 400)
  t.equal(unknown.json().error.code, 'VALIDATION_ERROR')
})

t.test('a feature outside the plan is NOT_ENTITLED', async (t) => {
  const plans = { plans: { basic: { name: 'Basic', features: { 'background-removal': { quota: { limit: 1, period: 'day' }, rateLimitPerMinute: 1 } } }, empty: { name: 'Empty', features: {} } } }
  const { writeFileSync, mkdtempSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const file = join(mkdtempSync(join(tmpdir(), 'plans-')), 'plans.json')
  writeFileSync(file, JSON.stringify(plans))
  const { app } = await build(t, { env: { PLANS_FILE: file } })
  const { key } = await userWithKey(app, { plan: 'basic' })
  const res = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${key}` }, payload: { features: ['settings-assistant'] } })
  t.equal(res.statusCode, 403)
  t.match(res.json().error, { code: 'NOT_ENTITLED', details: { plan: 'basic', features: ['settings-assistant'] } })
  const empty = await userWithKey(app, { plan: 'empty' })
  const none = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${empty.key}` } })
  t.equal(none.json().error.code, 'NOT_ENTITLED')
  t.match(none.json().error.message, /does not include any feature/)
})

t.test('license states at mint time', async (t) => {
  const { app } = await build(t)
  const put = (userId: string, payload: object) => app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload })
  const mintWith = (key: string) => app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${key}` } })

  const { userId, key } = await userWithKey(app)
  t.equal((await mintWith(key)).statusCode, 201)

  await put(userId, { plan: 'pro', status: 'suspended' })
  const suspended = await mintWith(key)
  t.equal(suspended.statusCode, 403)
  t.match(suspended.json().error, { code: 'LICENSE_INACTIVE', message: 'The AI license is suspended.' })

  await put(userId, { plan: 'pro', status: 'expired' })
  t.equal((await mintWith(key)).json().error.code, 'LICENSE_INACTIVE')

  await put(userId, { plan: 'pro', validUntil: new Date(Date.now() - 1000).toISOString() })
  const lapsed = await mintWith(key)
  t.match(lapsed.json().error, { code: 'LICENSE_INACTIVE', message: 'The AI license has expired.' })

  await put(userId, { plan: 'pro', validUntil: new Date(Date.now() + 60_000).toISOString() })
  t.equal((await mintWith(key)).statusCode, 201)

  const created = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId: newUserId(), mode: 'live' } })
  const unlicensed = await mintWith(created.json().key)
  t.match(unlicensed.json().error, { code: 'LICENSE_INACTIVE', message: /No AI license/ })
})

t.test('a token of a plan no longer offered lists no features', async (t) => {
  const { app } = await build(t)
  const token = app.jwt.sign({ sub: newUserId(), plan: 'retired', features: ['settings-assistant'], mode: 'live', jti: 'x' })
  const res = await app.inject({ url: '/v1/ai/entitlements', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { plan: 'retired', planName: 'retired', features: [] })
})
