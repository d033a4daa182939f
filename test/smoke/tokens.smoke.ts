import t from 'tap'
import { call, expectError, mint, mintToken, settings } from './client.js'

t.test('an API key mints a test-mode AI token for every feature of its plan', async (t) => {
  const sent = await mint(t, settings().apiKey)
  t.equal(sent.json.mode, 'test', 'a pak_test_ key mints test-mode tokens (no provider is charged)')
  t.equal(sent.json.tokenType, 'Bearer')
  t.ok(sent.json.expiresIn > 0)
  t.ok(sent.json.features.includes('settings-assistant') && sent.json.features.includes('background-removal'))
  t.equal(sent.headers.get('cache-control'), 'no-store', 'the token is not cached')
})

t.test('a token narrowed to one feature', async (t) => {
  const sent = await mint(t, settings().apiKey, 201, { features: ['settings-assistant'] })
  t.same(sent.json.features, ['settings-assistant'])
})

t.test('minting refuses a missing or wrong credential and an unknown feature', async (t) => {
  expectError(t, await mint(t, undefined, 401), 'UNAUTHENTICATED')
  expectError(t, await mint(t, 'pak_test_thisKeyDoesNotExist000000000000000', 401), 'UNAUTHENTICATED')
  const unknown = await mint(t, settings().apiKey, 400, { features: ['image-designer'] })
  expectError(t, unknown, 'VALIDATION_ERROR')
  t.ok(Array.isArray(unknown.json.error.details.fields), 'details.fields names the bad field')
})

t.test('entitlements: plan, features and quota for an AI token only', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'getEntitlements', 200, { path: '/v1/ai/entitlements', token })
  t.equal(sent.json.mode, 'test')
  for (const feature of sent.json.features as Array<{ id: string, quota: { limit: number, resetsAt: string } }>) {
    t.ok(feature.quota.limit > 0, `${feature.id} has a quota`)
    t.ok(Date.parse(feature.quota.resetsAt) > Date.now(), `${feature.id} resets in the future`)
  }
  expectError(t, await call(t, 'getEntitlements', 401, { path: '/v1/ai/entitlements' }), 'UNAUTHENTICATED')
  expectError(t, await call(t, 'getEntitlements', 401, { path: '/v1/ai/entitlements', token: settings().apiKey }), 'UNAUTHENTICATED')
})

t.test('a token tampered with in any segment is refused', async (t) => {
  const token = await mintToken(t)
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const flip = (s: string) => (s.at(-2) === 'A' ? `${s.slice(0, -2)}B` : `${s.slice(0, -2)}A`) + s.slice(-1)
  for (const tampered of [`${flip(header)}.${payload}.${signature}`, `${header}.${flip(payload)}.${signature}`, `${header}.${payload}.${flip(signature)}`, `${header}.${payload}.`]) {
    expectError(t, await call(t, 'getEntitlements', 401, { path: '/v1/ai/entitlements', token: tampered }), 'UNAUTHENTICATED')
  }
})

t.test('usage of the current period, paginated', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'getUsage', 200, { path: '/v1/ai/usage?limit=5', token })
  t.equal(sent.json.mode, 'test')
  t.ok(sent.json.events.length <= 5)
  expectError(t, await call(t, 'getUsage', 400, { path: '/v1/ai/usage?limit=0', token }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'getUsage', 401, { path: '/v1/ai/usage' }), 'UNAUTHENTICATED')
})
