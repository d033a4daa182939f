import sharp from 'sharp'
import t from 'tap'
import { aiTokenSource, createPortalClient, fileFrom } from '../../clients/typescript/src/index.js'
import { call, contractFetch, expectError, refused, runUserId, settings, smokeClient } from './client.js'

const { adminToken, apiKey } = settings()

t.test('the admin API refuses callers without the admin token', async (t) => {
  const calls: Array<[string, string, string, unknown?]> = [
    ['putLicense', 'PUT', '/v1/admin/licenses/smoke-nobody', { plan: 'pro' }],
    ['getLicense', 'GET', '/v1/admin/licenses/smoke-nobody'],
    ['createApiKey', 'POST', '/v1/admin/keys', { userId: 'smoke-nobody', mode: 'test' }],
    ['listApiKeys', 'GET', '/v1/admin/keys?userId=smoke-nobody'],
    ['revokeApiKey', 'DELETE', '/v1/admin/keys/key_0000000000000000'],
    ['getUserUsage', 'GET', '/v1/admin/usage?userId=smoke-nobody'],
    ['listAuditEvents', 'GET', '/v1/admin/audit']
  ]
  for (const [operationId, method, path, body] of calls) {
    expectError(t, await call(t, operationId, 401, { method, path, body }), 'UNAUTHENTICATED')
    expectError(t, await call(t, operationId, 401, { method, path, body, token: apiKey }), 'UNAUTHENTICATED')
  }
  await refused(t, smokeClient(t, apiKey).GET('/v1/admin/audit'), 401, 'UNAUTHENTICATED')
})

t.test('licenses, keys, usage and audit with the admin token', {
  skip: adminToken === undefined ? 'SMOKE_ADMIN_TOKEN is not set: only the refusals above were checked' : false
}, async (t) => {
  const admin = smokeClient(t, adminToken)
  const user = runUserId('admin')
  const ofUser = { params: { path: { userId: user } } }

  const { data: license } = await admin.PUT('/v1/admin/licenses/{userId}', { ...ofUser, body: { plan: 'free' } })
  t.match(license, { userId: user, plan: 'free', status: 'active' })
  await admin.GET('/v1/admin/licenses/{userId}', ofUser)
  await refused(t, admin.GET('/v1/admin/licenses/{userId}', { params: { path: { userId: runUserId('nobody') } } }), 404, 'NOT_FOUND')
  await refused(t, admin.PUT('/v1/admin/licenses/{userId}', { ...ofUser, body: { plan: 'platinum' } }), 400, 'VALIDATION_ERROR')

  const { data: created } = await admin.POST('/v1/admin/keys', { body: { userId: user, mode: 'test', name: 'smoke' } })
  t.match(created.key, /^pak_test_/)
  const { data: listed } = await admin.GET('/v1/admin/keys', { params: { query: { userId: user } } })
  t.equal(listed.keys.length, 1)
  t.notMatch(JSON.stringify(listed), created.key, 'a listed key never shows the key itself')

  const fetch = contractFetch((problems, what) => t.same(problems, [], what))
  const source = (retries: number) => aiTokenSource({ baseUrl: settings().baseUrl, credential: created.key, fetch, retry: { retries, maxDelayMs: 70_000 } })
  const token = source(2)
  await token()
  t.equal(token.current?.plan, 'free')

  // The free plan allows 3 background removals a minute: the 4th is RATE_LIMITED with Retry-After (retries off
  // here, so the client hands the refusal over instead of waiting it out).
  const asUser = smokeClient(t, await token())
  const limited = createPortalClient({ baseUrl: settings().baseUrl, token: await token(), fetch, retry: false })
  const image = await fileFrom(await sharp({ create: { width: 16, height: 16, channels: 3, background: '#ffffff' } }).png().toBuffer(), { filename: 'layer.png' })
  for (let i = 0; i < 3; i++) await asUser.POST('/v1/ai/background-removal', { body: { image }, parseAs: 'blob' })
  const refusal = await refused(t, limited.POST('/v1/ai/background-removal', { body: { image } }), 429, 'RATE_LIMITED')
  t.ok((refusal?.retryAfter ?? -1) >= 0, 'Retry-After says when to try again')

  const { data: usage } = await admin.GET('/v1/admin/usage', { params: { query: { userId: user, mode: 'test' } } })
  t.equal(usage.features.find((f) => f.id === 'background-removal')?.used, 3, 'three images metered, the refused call none')
  t.equal(usage.events.length, 3, 'one ledger row per call')
  await refused(t, admin.GET('/v1/admin/usage', { params: { query: { userId: runUserId('nobody') } } }), 404, 'NOT_FOUND')

  await admin.PUT('/v1/admin/licenses/{userId}', { ...ofUser, body: { plan: 'free', status: 'suspended' } })
  await refused(t, source(0)(), 403, 'LICENSE_INACTIVE')

  await admin.DELETE('/v1/admin/keys/{keyId}', { params: { path: { keyId: created.id } } })
  await refused(t, source(0)(), 401, 'UNAUTHENTICATED')
  await refused(t, admin.DELETE('/v1/admin/keys/{keyId}', { params: { path: { keyId: 'key_0000000000000000' } } }), 404, 'NOT_FOUND')

  const actions = new Set<string>()
  for await (const event of admin.pages('/v1/admin/audit', { query: { target: `user:${user}`, limit: 50 } })) {
    actions.add(event.action)
    t.notMatch(JSON.stringify(event), created.key, 'the audit never holds a key')
  }
  for (const action of ['license.changed', 'token.minted']) t.ok(actions.has(action), `audit has ${action}`)
  await refused(t, admin.GET('/v1/admin/audit', { params: { query: { limit: 0 } } }), 400, 'VALIDATION_ERROR')
})
