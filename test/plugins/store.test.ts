import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createEmbeddedStore, createStore, migrate } from '../../plugins/store/index.js'
import { MIGRATIONS } from '../../plugins/store/migrations.js'
import { adminHeaders, build, createTestStore, POSTGRES_URL, userWithKey } from '../helper.js'

// Both backends, whatever TEST_DATABASE_URL says: they share one schema and one set of migrations.
for (const backend of ['embedded', 'postgres'] as const) {
  t.test(`${backend}: migrations apply once, in order, and are recorded`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    t.same(await migrate(store), [], 'the test store is already migrated')
    const extra = [{ id: 1000, name: 'extra', sql: 'CREATE TABLE extra_table (id int); INSERT INTO extra_table VALUES (1), (2);' }]
    t.same(await migrate(store, extra), [1000])
    t.same(await migrate(store, extra), [])
    const { rows } = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM extra_table')
    t.equal(rows[0]?.n, 2)
    const recorded = await store.query<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id')
    t.same(recorded.rows.map((r) => r.id), [...MIGRATIONS.map((m) => m.id), 1000])
  })

  t.test(`${backend}: several instances migrating at once apply each migration once`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const extra = [{ id: 2000, name: 'concurrent', sql: 'CREATE TABLE concurrent_table (id int)' }]
    const results = await Promise.all([migrate(store, extra), migrate(store, extra), migrate(store, extra)])
    t.same(results.flat(), [2000])
  })

  t.test(`${backend}: a failing migration rolls back whole and is not recorded`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    const broken = [{ id: 3000, name: 'broken', sql: 'CREATE TABLE half_done (id int); SELECT * FROM no_such_table;' }]
    await t.rejects(migrate(store, broken))
    const { rows } = await store.query('SELECT 1 FROM schema_migrations WHERE id = 3000')
    t.equal(rows.length, 0)
    await t.rejects(store.query('SELECT * FROM half_done'), 'the table of the failed migration is gone')
  })

  t.test(`${backend}: transactions commit or roll back as a whole`, async (t) => {
    const { store, drop } = await createTestStore(backend)
    t.teardown(drop)
    await store.exec('CREATE TABLE tx_test (v int)')
    await store.transaction(async (tx) => { await tx.query('INSERT INTO tx_test VALUES ($1)', [1]) })
    await t.rejects(store.transaction(async (tx) => {
      await tx.query('INSERT INTO tx_test VALUES ($1)', [2])
      throw new Error('abort')
    }), /abort/)
    const { rows, rowCount } = await store.query<{ v: number }>('SELECT v FROM tx_test')
    t.same(rows, [{ v: 1 }])
    t.equal(rowCount, 1)
    const updated = await store.query('UPDATE tx_test SET v = 3')
    t.equal(updated.rowCount, 1, 'rowCount counts written rows')
    t.equal((await store.query("SET application_name = 'portal-ai-api-test'")).rowCount, 0, 'a statement without rows counts 0')
  })
}

t.test('the embedded store keeps its data in DATA_DIR across restarts', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'store-'))
  const first = await createStore({ DATA_DIR: dataDir })
  t.equal(first.kind, 'embedded')
  await migrate(first)
  await first.query("INSERT INTO licenses (user_id, plan, status) VALUES ('u1', 'pro', 'active')")
  await first.close()
  const second = await createEmbeddedStore(dataDir)
  t.same((await second.query('SELECT user_id FROM licenses')).rows, [{ user_id: 'u1' }])
  await second.close()
})

t.test('with DATABASE_URL the store is PostgreSQL, and a lost connection does not crash the process', async (t) => {
  const store = await createStore({ DATABASE_URL: POSTGRES_URL, DATA_DIR: 'unused' })
  t.teardown(() => store.close())
  t.equal(store.kind, 'postgres')
  t.same((await store.query('SELECT 1 AS one')).rows, [{ one: 1 }])
  // A connection that dies inside a transaction: the error comes through and the pool stays usable.
  await t.rejects(store.transaction(async (tx) => { await tx.query('SELECT pg_terminate_backend(pg_backend_pid())') }))
  t.same((await store.query('SELECT 2 AS two')).rows, [{ two: 2 }])
  // An idle pooled connection killed by the server (a restart) is replaced; the next query works.
  const { rows } = await store.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
  const killer = await createStore({ DATABASE_URL: POSTGRES_URL, DATA_DIR: 'unused' })
  t.teardown(() => killer.close())
  await killer.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid])
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same((await store.query('SELECT 1 AS one')).rows, [{ one: 1 }])
})

t.test('a database dump after the security flows holds no API key in clear', async (t) => {
  const { app, store } = await build(t)
  const keys = []
  for (let i = 0; i < 3; i++) keys.push((await userWithKey(app, { mode: i === 0 ? 'live' : 'test' })).key)
  for (const key of keys) await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${key}` } })
  await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${keys[0] as string}x` } })
  await app.inject({ method: 'DELETE', url: '/v1/admin/keys/key_0000000000000000', headers: adminHeaders })
  await app.apiKeys.flushLastUsed()
  const tables = await store.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
  t.ok(tables.rows.length >= 4)
  let dump = ''
  for (const { table_name: table } of tables.rows) {
    const { rows } = await store.query(`SELECT * FROM "${table}"`)
    dump += JSON.stringify(rows)
  }
  t.ok(dump.includes('key_'), 'the dump holds the keys\' rows')
  for (const key of keys) {
    t.notOk(dump.includes(key), 'no key in clear')
    t.notOk(dump.includes(key.slice(15)), 'not even the secret part of it')
  }
})
