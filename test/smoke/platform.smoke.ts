import t from 'tap'
import { call, expectError, mintToken, settings } from './client.js'

const UNKNOWN_FILE = '3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65'

t.test('webhooks: create (secret once), list, read, change and delete; the SSRF guard and bad input refused', async (t) => {
  const token = await mintToken(t)
  const created = await call(t, 'createWebhook', 201, { method: 'POST', path: '/v1/webhooks', token, body: { url: 'https://8.8.8.8/portal-ai-smoke', events: ['ping'], description: 'smoke' } })
  const id = created.json.id as string
  t.match(created.json.secret, /^whsec_/, 'the signing secret is shown at creation')
  const listed = await call(t, 'listWebhooks', 200, { path: '/v1/webhooks?limit=100', token })
  t.ok((listed.json.data as Array<{ id: string }>).some((w) => w.id === id))
  t.notMatch(listed.text, /whsec_/, 'never listed again')
  await call(t, 'getWebhook', 200, { path: `/v1/webhooks/${id}`, token })
  const off = await call(t, 'updateWebhook', 200, { method: 'PATCH', path: `/v1/webhooks/${id}`, token, body: { enabled: false } })
  t.equal(off.json.disabledReason, 'by-user')
  expectError(t, await call(t, 'testWebhook', 409, { method: 'POST', path: `/v1/webhooks/${id}/test`, token }), 'CONFLICT')
  expectError(t, await call(t, 'getWebhook', 404, { path: '/v1/webhooks/wh_0000000000000000', token }), 'NOT_FOUND')
  expectError(t, await call(t, 'createWebhook', 400, { method: 'POST', path: '/v1/webhooks', token, body: { url: 'https://127.0.0.1/hook', events: ['ping'] } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'createWebhook', 400, { method: 'POST', path: '/v1/webhooks', token, body: { url: 'https://8.8.8.8/hook', events: ['nothing'] } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'listWebhooks', 401, { path: '/v1/webhooks' }), 'UNAUTHENTICATED')
  await call(t, 'deleteWebhook', 204, { method: 'DELETE', path: `/v1/webhooks/${id}`, token })
  expectError(t, await call(t, 'deleteWebhook', 404, { method: 'DELETE', path: `/v1/webhooks/${id}`, token }), 'NOT_FOUND')
})

t.test('files: an unknown id is NOT_FOUND, a made-up link UNAUTHENTICATED', async (t) => {
  const token = await mintToken(t)
  expectError(t, await call(t, 'getFile', 404, { path: `/v1/ai/files/${UNKNOWN_FILE}`, token }), 'NOT_FOUND')
  expectError(t, await call(t, 'getFile', 401, { path: `/v1/ai/files/${UNKNOWN_FILE}?expires=99999999999&signature=${'A'.repeat(43)}` }), 'UNAUTHENTICATED')
  expectError(t, await call(t, 'getFile', 401, { path: `/v1/ai/files/${UNKNOWN_FILE}` }), 'UNAUTHENTICATED')
})

t.test('the user\'s data export', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'exportMyData', 200, { path: '/v1/ai/me/data', token })
  t.ok(Array.isArray(sent.json.sections.files) && Array.isArray(sent.json.sections.webhooks))
  expectError(t, await call(t, 'exportMyData', 401, { path: '/v1/ai/me/data' }), 'UNAUTHENTICATED')
})

t.test('admin: the job queue', { skip: settings().adminToken === undefined ? 'no SMOKE_ADMIN_TOKEN' : false }, async (t) => {
  const token = settings().adminToken as string
  await call(t, 'listJobs', 200, { path: '/v1/admin/jobs?limit=5', token })
  expectError(t, await call(t, 'retryJob', 404, { method: 'POST', path: '/v1/admin/jobs/00000000-0000-4000-8000-000000000000/retry', token }), 'NOT_FOUND')
})

t.test('staging styles: the catalog and a preview image', async (t) => {
  const token = await mintToken(t)
  const styles = await call(t, 'listStagingStyles', 200, { path: '/v1/ai/staging/styles', token })
  const first = (styles.json.data as Array<{ previewImageUrl: string }>)[0]
  t.ok(first !== undefined, 'at least one style')
  const preview = await call(t, 'getStagingStylePreview', 200, { path: (first as { previewImageUrl: string }).previewImageUrl })
  t.match(preview.contentType, /^image\/png/)
  expectError(t, await call(t, 'getStagingStylePreview', 404, { path: '/v1/ai/staging/styles/no_such_style/preview.png' }), 'NOT_FOUND')
  expectError(t, await call(t, 'listStagingStyles', 401, { path: '/v1/ai/staging/styles' }), 'UNAUTHENTICATED')
})
