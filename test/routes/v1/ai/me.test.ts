import t from 'tap'
import { adminHeaders, build, mint, userWithKey } from '../../../helper.js'

t.test('export and delete everything of a user; the other user keeps theirs; ledger rows stay', async (t) => {
  const { app } = await build(t)
  const me = await userWithKey(app)
  const other = await userWithKey(app)
  const headers = { authorization: `Bearer ${(await mint(app, me.key)).token}` }
  const file = await app.files.save({ userId: me.userId, feature: 'platform', kind: 'result', contentType: 'image/png', body: Buffer.from('png'), maxBytes: 10 })
  const otherFile = await app.files.save({ userId: other.userId, feature: 'platform', kind: 'result', contentType: 'image/png', body: Buffer.from('png'), maxBytes: 10 })
  const hook = await app.webhooks.create(me.userId, { url: 'https://8.8.8.8/h', events: ['ping'] })
  await app.store.query("INSERT INTO usage_ledger (user_id, mode, feature, provider, units) VALUES ($1, 'test', 'background-removal', 'sandbox', 1)", [me.userId])

  const exported = await app.inject({ url: '/v1/ai/me/data', headers })
  t.equal(exported.statusCode, 200)
  t.match(exported.headers, { 'cache-control': 'no-store', 'content-disposition': /attachment/ })
  const doc = exported.json()
  t.match(doc, { userId: me.userId, exportedAt: /Z$/, sections: { files: [{ id: file.id, size: 3 }], webhooks: [{ id: hook.id, url: 'https://8.8.8.8/h' }] } })
  t.notOk(exported.body.includes(otherFile.id), 'nothing of another user')
  t.notOk(exported.body.includes('whsec_'), 'no signing secret')

  const deleted = await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers })
  t.same(deleted.json(), { userId: me.userId, deleted: { files: 1, webhooks: 1, chats: 0, stagings: 0, scans: 0, tasks: 0, integrations: 0 } })
  t.same((await app.inject({ url: '/v1/ai/me/data', headers })).json().sections, { files: [], webhooks: [], chats: [], stagings: [], scans: [], tasks: [], integrations: [] })
  t.equal(await app.files.open(file.id, me.userId), null, 'the bytes are gone too')
  t.ok(await app.files.get(otherFile.id, other.userId), 'the other user\'s file stays')
  t.same((await app.store.query('SELECT count(*)::int AS n FROM usage_ledger WHERE user_id = $1', [me.userId])).rows, [{ n: 1 }], 'billing records stay')
  t.match((await app.audit.list({ action: 'user-data.deleted', target: `user:${me.userId}`, limit: 5 })).events, [{ actor: `user:${me.userId}`, details: { deleted: { files: 1, webhooks: 1 } } }])

  const byAdmin = await app.inject({ method: 'DELETE', url: `/v1/admin/users/${other.userId}/data`, headers: adminHeaders })
  t.same(byAdmin.json(), { userId: other.userId, deleted: { files: 1, webhooks: 0, chats: 0, stagings: 0, scans: 0, tasks: 0, integrations: 0 } })
  t.match((await app.audit.list({ action: 'user-data.deleted', target: `user:${other.userId}`, limit: 5 })).events, [{ actor: 'admin' }])
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/admin/users/x/data', headers })).json().error.code, 'UNAUTHENTICATED', 'an AI token is not the admin token')
  t.equal((await app.inject({ url: '/v1/ai/me/data' })).json().error.code, 'UNAUTHENTICATED')
})

t.test('a user-data section is registered once', async (t) => {
  const { app } = await build(t)
  t.throws(() => app.userData.register({ name: 'files', export: async () => [], delete: async () => 0 }), /registered twice/)
  t.same(app.userData.sections, ['files', 'webhooks', 'chats', 'stagings', 'scans', 'tasks', 'integrations'])
})
