import t from 'tap'
import { hashKey } from '../../../../plugins/auth/api-keys.js'
import { adminHeaders, build, mint, newUserId } from '../../../helper.js'

t.test('a key is shown once, listed without its value, and stored only as SHA-256', async (t) => {
  const { app, store, logs } = await build(t)
  const userId = newUserId()
  const created = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'live', name: 'partner' } })
  t.equal(created.statusCode, 201)
  t.equal(created.headers['cache-control'], 'no-store')
  const body = created.json()
  t.match(body, { id: /^key_[0-9A-Za-z]{16}$/, userId, mode: 'live', name: 'partner', key: /^pak_live_[0-9A-Za-z]{40}$/, lastUsedAt: null, revokedAt: null })
  t.equal(body.prefix, body.key.slice(0, 15))

  const list = await app.inject({ url: `/v1/admin/keys?userId=${userId}`, headers: adminHeaders })
  t.equal(list.statusCode, 200)
  t.same(Object.keys(list.json().keys[0]).sort(), ['createdAt', 'id', 'lastUsedAt', 'mode', 'name', 'prefix', 'revokedAt', 'userId'])
  t.notOk(list.body.includes(body.key))

  const rows = await store.query<{ key_hash: string }>('SELECT key_hash FROM api_keys WHERE id = $1', [body.id])
  t.equal(rows.rows[0]?.key_hash, hashKey(body.key))
  t.notOk(logs.text.includes(body.key), 'the key never reaches a log line')
})

t.test('revoking: 200 with revokedAt, idempotent, 404 for an unknown key, 400 for a malformed id', async (t) => {
  const { app } = await build(t)
  const created = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId: newUserId(), mode: 'test' } })).json()
  const first = await app.inject({ method: 'DELETE', url: `/v1/admin/keys/${created.id}`, headers: adminHeaders })
  t.equal(first.statusCode, 200)
  t.type(first.json().revokedAt, 'string')
  const again = await app.inject({ method: 'DELETE', url: `/v1/admin/keys/${created.id}`, headers: adminHeaders })
  t.equal(again.json().revokedAt, first.json().revokedAt)
  const unknown = await app.inject({ method: 'DELETE', url: '/v1/admin/keys/key_0000000000000000', headers: adminHeaders })
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().error.code, 'NOT_FOUND')
  const malformed = await app.inject({ method: 'DELETE', url: '/v1/admin/keys/nope', headers: adminHeaders })
  t.equal(malformed.statusCode, 400)
})

t.test('lastUsedAt is written in one batch, not on every request', async (t) => {
  const { app, store } = await build(t)
  const userId = newUserId()
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro' } })
  const created = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'test' } })).json()
  await mint(app, created.key)
  await mint(app, created.key)
  const before = await store.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM api_keys WHERE id = $1', [created.id])
  t.equal(before.rows[0]?.last_used_at, null, 'nothing written per request')
  t.equal(await app.apiKeys.flushLastUsed(), 1, 'one row updated for two uses')
  t.equal(await app.apiKeys.flushLastUsed(), 0, 'nothing pending')
  const list = await app.inject({ url: `/v1/admin/keys?userId=${userId}`, headers: adminHeaders })
  t.type(list.json().keys[0].lastUsedAt, 'string')
})

t.test('pending uses are written when the app closes', async (t) => {
  const { createTestStore } = await import('../../../helper.js')
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const { app } = await build(t, { store })
  const userId = newUserId()
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro' } })
  const created = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'test' } })).json()
  await mint(app, created.key)
  await app.close()
  const rows = await store.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM api_keys WHERE id = $1', [created.id])
  t.type(rows.rows[0]?.last_used_at, Date)
})

t.test('bad input to the key routes', async (t) => {
  const { app } = await build(t)
  const bad = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId: 'has space', mode: 'staging' } })
  t.equal(bad.statusCode, 400)
  t.same(bad.json().error.details.fields.map((f: { path: string }) => f.path).sort(), ['/mode', '/userId'])
  t.match(bad.json().error.details.fields, [{ path: '/userId' }, { path: '/mode', message: 'must be one of live, test' }])
  const noUser = await app.inject({ url: '/v1/admin/keys', headers: adminHeaders })
  t.equal(noUser.statusCode, 400)
  t.match(noUser.json().error.details.fields, [{ location: 'querystring', path: '/userId' }])
})
