import sharp from 'sharp'
import t from 'tap'
import { call, expectError, mint, runUserId, settings } from './client.js'

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
})

t.test('licenses, keys, usage and audit with the admin token', {
  skip: adminToken === undefined ? 'SMOKE_ADMIN_TOKEN is not set: only the refusals above were checked' : false
}, async (t) => {
  const admin = adminToken as string
  const user = runUserId('admin')

  const license = await call(t, 'putLicense', 200, { method: 'PUT', path: `/v1/admin/licenses/${user}`, token: admin, body: { plan: 'free' } })
  t.match(license.json, { userId: user, plan: 'free', status: 'active' })
  await call(t, 'getLicense', 200, { path: `/v1/admin/licenses/${user}`, token: admin })
  expectError(t, await call(t, 'getLicense', 404, { path: `/v1/admin/licenses/${runUserId('nobody')}`, token: admin }), 'NOT_FOUND')
  expectError(t, await call(t, 'putLicense', 400, { method: 'PUT', path: `/v1/admin/licenses/${user}`, token: admin, body: { plan: 'platinum' } }), 'VALIDATION_ERROR')

  const created = await call(t, 'createApiKey', 201, { method: 'POST', path: '/v1/admin/keys', token: admin, body: { userId: user, mode: 'test', name: 'smoke' } })
  const key = created.json.key as string
  t.match(key, /^pak_test_/)
  const listed = await call(t, 'listApiKeys', 200, { path: `/v1/admin/keys?userId=${user}`, token: admin })
  t.equal(listed.json.keys.length, 1)
  t.notMatch(listed.text, key, 'a listed key never shows the key itself')

  const minted = await mint(t, key)
  t.equal(minted.json.plan, 'free')
  const token = minted.json.token as string

  // The free plan allows 3 background removals a minute: the 4th is RATE_LIMITED with Retry-After.
  const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#ffffff' } }).png().toBuffer()
  const upload = () => {
    const form = new FormData()
    form.append('image', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'layer.png')
    return form
  }
  for (let i = 0; i < 3; i++) await call(t, 'removeBackground', 200, { method: 'POST', path: '/v1/ai/background-removal', token, form: upload() })
  const limited = await call(t, 'removeBackground', 429, { method: 'POST', path: '/v1/ai/background-removal', token, form: upload() })
  expectError(t, limited, 'RATE_LIMITED')
  t.match(limited.headers.get('retry-after'), /^[0-9]+$/, 'Retry-After says when to try again')

  const usage = await call(t, 'getUserUsage', 200, { path: `/v1/admin/usage?userId=${user}&mode=test`, token: admin })
  const images = (usage.json.features as Array<{ id: string, used: number }>).find((f) => f.id === 'background-removal')
  t.equal(images?.used, 3, 'three images metered, the refused call none')
  t.equal(usage.json.events.length, 3, 'one ledger row per call')
  expectError(t, await call(t, 'getUserUsage', 404, { path: `/v1/admin/usage?userId=${runUserId('nobody')}`, token: admin }), 'NOT_FOUND')

  await call(t, 'putLicense', 200, { method: 'PUT', path: `/v1/admin/licenses/${user}`, token: admin, body: { plan: 'free', status: 'suspended' } })
  expectError(t, await mint(t, key, 403), 'LICENSE_INACTIVE')

  await call(t, 'revokeApiKey', 200, { method: 'DELETE', path: `/v1/admin/keys/${created.json.id as string}`, token: admin })
  expectError(t, await mint(t, key, 401), 'UNAUTHENTICATED')
  expectError(t, await call(t, 'revokeApiKey', 404, { method: 'DELETE', path: '/v1/admin/keys/key_0000000000000000', token: admin }), 'NOT_FOUND')

  const audit = await call(t, 'listAuditEvents', 200, { path: `/v1/admin/audit?target=${encodeURIComponent(`user:${user}`)}&limit=50`, token: admin })
  const actions = new Set((audit.json.events as Array<{ action: string }>).map((e) => e.action))
  for (const action of ['license.changed', 'token.minted']) t.ok(actions.has(action), `audit has ${action}`)
  t.notMatch(audit.text, key, 'the audit never holds a key')
  expectError(t, await call(t, 'listAuditEvents', 400, { path: '/v1/admin/audit?limit=0', token: admin }), 'VALIDATION_ERROR')
})
