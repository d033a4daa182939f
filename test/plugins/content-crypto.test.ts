import t from 'tap'
import { ContentDecryptError, createContentCrypto, generateKeyRing, parseKeyRing, type KeyRing } from '../../plugins/content-crypto.js'
import { createTestStore } from '../helper.js'

const ring = (value: string) => parseKeyRing(value) as KeyRing
const K1 = `k1:${Buffer.alloc(32, 1).toString('base64')}`
const K2 = `k2:${Buffer.alloc(32, 2).toString('base64')}`
const binding = { table: 'notes', column: 'body', rowId: 'row-1', userId: 'user-1' }
const CANARY = 'CANARY-crypto-7f3a plain text a user wrote'

t.test('sealed content opens only where it was sealed: same row, column and user', async (t) => {
  const crypto = createContentCrypto(ring(K1))
  const sealed = crypto.seal(CANARY, binding)
  t.equal(sealed.keyId, 'k1')
  t.notOk(sealed.data.includes(Buffer.from('CANARY')), 'no plain text in what is stored')
  t.equal(crypto.openText(sealed, binding), CANARY)
  t.not(crypto.seal(CANARY, binding).data.toString('hex'), sealed.data.toString('hex'), 'a fresh nonce every time')
  for (const moved of [{ rowId: 'row-2' }, { userId: 'user-2' }, { column: 'title' }, { table: 'other' }]) {
    t.throws(() => crypto.open(sealed, { ...binding, ...moved }), ContentDecryptError, `moved to ${JSON.stringify(moved)}`)
  }
  const altered = Buffer.from(sealed.data)
  altered[20] = (altered[20] as number) ^ 1
  t.throws(() => crypto.open({ keyId: 'k1', data: altered }, binding), { message: /authentication failed/ })
  t.throws(() => crypto.open({ keyId: 'k1', data: Buffer.alloc(10) }, binding), { message: /too short/ })
  t.throws(() => crypto.open({ keyId: 'gone', data: sealed.data }, binding), { message: /key "gone" is not in CONTENT_KEYS/ })
  t.notMatch(String((() => { try { crypto.open({ keyId: 'gone', data: sealed.data }, binding) } catch (err) { return (err as Error).message } })()), /CANARY/)
  t.same(crypto.openJson(crypto.sealJson({ a: [1, 'x'] }, binding), binding), { a: [1, 'x'] })
})

t.test('a generated key ring is one 32-byte key', async (t) => {
  const generated = ring(generateKeyRing())
  t.equal(generated.primary, 'k1')
  t.equal(generated.keys.get('k1')?.length, 32)
})

t.test('rotation: a new first key encrypts, the old one still opens, rekey moves every row to the new one', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  await store.exec('CREATE TABLE notes (id text PRIMARY KEY, user_id text NOT NULL, key_id text NOT NULL, body bytea, extra bytea)')
  const old = createContentCrypto(ring(K1))
  for (let i = 0; i < 250; i++) {
    const b = { ...binding, rowId: `row-${i}`, userId: `user-${i % 3}` }
    const body = old.seal(`${CANARY} ${i}`, b)
    const extra = i % 2 === 0 ? null : old.seal(`extra ${i}`, { ...b, column: 'extra' }).data
    await store.query('INSERT INTO notes VALUES ($1, $2, $3, $4, $5)', [b.rowId, b.userId, body.keyId, body.data, extra])
  }
  const rotated = createContentCrypto(ring(`${K2},${K1}`))
  rotated.registerTable({ table: 'notes', idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['body', 'extra'] })
  t.same(rotated.tables.map((x) => x.table), ['notes'])
  t.same(await rotated.rekey(store), { notes: 250 })
  const { rows } = await store.query<{ id: string, user_id: string, key_id: string, body: Uint8Array, extra: Uint8Array | null }>('SELECT * FROM notes ORDER BY id')
  t.ok(rows.every((r) => r.key_id === 'k2'), 'every row under the new key')
  const row7 = rows.find((r) => r.id === 'row-7') as typeof rows[number]
  const b7 = { ...binding, rowId: 'row-7', userId: row7.user_id }
  t.equal(rotated.openText({ keyId: 'k2', data: Buffer.from(row7.body) }, b7), `${CANARY} 7`)
  t.equal(rotated.openText({ keyId: 'k2', data: Buffer.from(row7.extra as Uint8Array) }, { ...b7, column: 'extra' }), 'extra 7')
  t.equal(createContentCrypto(ring(K2)).openText({ keyId: 'k2', data: Buffer.from(row7.body) }, b7), `${CANARY} 7`, 'the old key is no longer needed')
  t.same(await rotated.rekey(store), { notes: 0 }, 'a second run finds nothing to do')
})
