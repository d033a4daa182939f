import t from 'tap'
import { call, expectError, mintToken, refused, settings, smokeClient } from './client.js'

const UNKNOWN_FILE = '3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65'

t.test('webhooks: create (secret once), list, read, change and delete; the SSRF guard and bad input refused', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: created, response } = await portal.POST('/v1/webhooks', { body: { url: 'https://8.8.8.8/portal-ai-smoke', events: ['ping'], description: 'smoke' } })
  t.equal(response.status, 201)
  t.match(created.secret, /^whsec_/, 'the signing secret is shown at creation')
  const byId = { params: { path: { id: created.id } } }
  const { data: listed } = await portal.GET('/v1/webhooks', { params: { query: { limit: 100 } } })
  t.ok(listed.data.some((w) => w.id === created.id))
  t.notMatch(JSON.stringify(listed), /whsec_/, 'never listed again')
  await portal.GET('/v1/webhooks/{id}', byId)
  const { data: off } = await portal.PATCH('/v1/webhooks/{id}', { ...byId, body: { enabled: false } })
  t.equal(off.disabledReason, 'by-user')
  await refused(t, portal.POST('/v1/webhooks/{id}/test', byId), 409, 'CONFLICT')
  await refused(t, portal.GET('/v1/webhooks/{id}', { params: { path: { id: 'wh_0000000000000000' } } }), 404, 'NOT_FOUND')
  await refused(t, portal.POST('/v1/webhooks', { body: { url: 'https://127.0.0.1/hook', events: ['ping'] } }), 400, 'VALIDATION_ERROR')
  // An event the contract does not know cannot be typed: sent raw, as an older app might.
  expectError(t, await call(t, 'createWebhook', 400, { method: 'POST', path: '/v1/webhooks', token: await mintToken(t), body: { url: 'https://8.8.8.8/hook', events: ['nothing'] } }), 'VALIDATION_ERROR')
  await refused(t, smokeClient(t).GET('/v1/webhooks'), 401, 'UNAUTHENTICATED')
  await portal.DELETE('/v1/webhooks/{id}', byId)
  await refused(t, portal.DELETE('/v1/webhooks/{id}', byId), 404, 'NOT_FOUND')
})

t.test('files: an unknown id is NOT_FOUND, a made-up link UNAUTHENTICATED', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const anonymous = smokeClient(t)
  const unknown = { path: { fileId: UNKNOWN_FILE } }
  await refused(t, portal.GET('/v1/ai/files/{fileId}', { params: unknown }), 404, 'NOT_FOUND')
  await refused(t, anonymous.GET('/v1/ai/files/{fileId}', { params: { ...unknown, query: { expires: 99999999999, signature: 'A'.repeat(43) } } }), 401, 'UNAUTHENTICATED')
  await refused(t, anonymous.GET('/v1/ai/files/{fileId}', { params: unknown }), 401, 'UNAUTHENTICATED')
})

t.test('the user\'s data export', async (t) => {
  const { data: exported } = await smokeClient(t, await mintToken(t)).GET('/v1/ai/me/data')
  t.ok(Array.isArray(exported.sections.files) && Array.isArray(exported.sections.webhooks))
  await refused(t, smokeClient(t).GET('/v1/ai/me/data'), 401, 'UNAUTHENTICATED')
})

t.test('admin: the job queue', { skip: settings().adminToken === undefined ? 'no SMOKE_ADMIN_TOKEN' : false }, async (t) => {
  const admin = smokeClient(t, settings().adminToken)
  await admin.GET('/v1/admin/jobs', { params: { query: { limit: 5 } } })
  await refused(t, admin.POST('/v1/admin/jobs/{jobId}/retry', { params: { path: { jobId: '00000000-0000-4000-8000-000000000000' } } }), 404, 'NOT_FOUND')
})

t.test('staging styles: the catalog and a preview image', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const anonymous = smokeClient(t)
  const { data: styles } = await portal.GET('/v1/ai/staging/styles')
  const first = styles.data[0]
  t.ok(first !== undefined, 'at least one style')
  const { data: preview } = await anonymous.GET('/v1/ai/staging/styles/{id}/preview.png', { params: { path: { id: first?.id as string } }, parseAs: 'blob' })
  t.equal(preview.type, 'image/png')
  t.equal(first?.previewImageUrl, `/v1/ai/staging/styles/${first?.id as string}/preview.png`, 'the preview link is the operation')
  await refused(t, anonymous.GET('/v1/ai/staging/styles/{id}/preview.png', { params: { path: { id: 'no_such_style' } } }), 404, 'NOT_FOUND')
  await refused(t, anonymous.GET('/v1/ai/staging/styles'), 401, 'UNAUTHENTICATED')
})
