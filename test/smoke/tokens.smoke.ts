import t, { type Test } from 'tap'
import { aiTokenSource } from '../../clients/typescript/src/index.js'
import { call, contractFetch, expectError, mint, mintToken, refused, settings, smokeClient } from './client.js'

const checked = (t: Test) => contractFetch((problems, what) => t.same(problems, [], what))

t.test('an API key mints a test-mode AI token for every feature of its plan', async (t) => {
  const sent = await mint(t, settings().apiKey)
  t.equal(sent.json.mode, 'test', 'a pak_test_ key mints test-mode tokens (no provider is charged)')
  t.equal(sent.json.tokenType, 'Bearer')
  t.ok(sent.json.expiresIn > 0)
  t.ok(sent.json.features.includes('settings-assistant') && sent.json.features.includes('background-removal'))
  t.equal(sent.headers.get('cache-control'), 'no-store', 'the token is not cached')
})

t.test('a token narrowed to one feature (through the client\'s token source)', async (t) => {
  const source = aiTokenSource({ baseUrl: settings().baseUrl, credential: settings().apiKey, features: ['settings-assistant'], fetch: checked(t), retry: { maxDelayMs: 70_000 } })
  await source()
  t.same(source.current?.features, ['settings-assistant'])
})

t.test('minting refuses a missing or wrong credential and an unknown feature', async (t) => {
  await refused(t, smokeClient(t).POST('/v1/ai/tokens', { body: {} }), 401, 'UNAUTHENTICATED')
  await refused(t, aiTokenSource({ baseUrl: settings().baseUrl, credential: 'pak_test_thisKeyDoesNotExist000000000000000', fetch: checked(t), retry: { maxDelayMs: 70_000 } })(), 401, 'UNAUTHENTICATED')
  // A feature the contract does not know cannot be typed: sent raw.
  const unknown = await mint(t, settings().apiKey, 400, { features: ['image-designer'] })
  expectError(t, unknown, 'VALIDATION_ERROR')
  t.ok(Array.isArray(unknown.json.error.details.fields), 'details.fields names the bad field')
})

t.test('entitlements: plan, features and quota for an AI token only', async (t) => {
  const { data: entitlements } = await smokeClient(t, await mintToken(t)).GET('/v1/ai/entitlements')
  t.equal(entitlements.mode, 'test')
  for (const feature of entitlements.features) {
    t.ok(feature.quota.limit > 0, `${feature.id} has a quota`)
    t.ok(Date.parse(feature.quota.resetsAt) > Date.now(), `${feature.id} resets in the future`)
  }
  await refused(t, smokeClient(t).GET('/v1/ai/entitlements'), 401, 'UNAUTHENTICATED')
  await refused(t, smokeClient(t, settings().apiKey).GET('/v1/ai/entitlements'), 401, 'UNAUTHENTICATED')
})

t.test('a token tampered with in any segment is refused', async (t) => {
  const token = await mintToken(t)
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const flip = (s: string) => (s.at(-2) === 'A' ? `${s.slice(0, -2)}B` : `${s.slice(0, -2)}A`) + s.slice(-1)
  for (const tampered of [`${flip(header)}.${payload}.${signature}`, `${header}.${flip(payload)}.${signature}`, `${header}.${payload}.${flip(signature)}`, `${header}.${payload}.`]) {
    await refused(t, smokeClient(t, tampered).GET('/v1/ai/entitlements'), 401, 'UNAUTHENTICATED')
  }
})

t.test('usage of the current period, paginated', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: usage } = await portal.GET('/v1/ai/usage', { params: { query: { limit: 5 } } })
  t.equal(usage.mode, 'test')
  t.ok(usage.events.length <= 5)
  await refused(t, portal.GET('/v1/ai/usage', { params: { query: { limit: 0 } } }), 400, 'VALIDATION_ERROR')
  await refused(t, smokeClient(t).GET('/v1/ai/usage'), 401, 'UNAUTHENTICATED')
  // Raw HTTP still answers as the contract says (the same route without the client).
  expectError(t, await call(t, 'getUsage', 401, { path: '/v1/ai/usage' }), 'UNAUTHENTICATED')
})
