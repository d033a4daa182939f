import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { MAX_TASKS_PER_USER } from '../../../schemas/tasks.js'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'

const CANARY = 'CANARY-task-title-7f3a'

async function tokenHeaders (app: FastifyInstance) {
  const user = await userWithKey(app)
  return { userId: user.userId, headers: { authorization: `Bearer ${(await mint(app, user.key)).token}` } }
}
const fields = (res: { json: () => unknown }) => (res.json() as { error: { details: { fields: Array<{ path: string }> } } }).error.details.fields.map((f) => f.path)

t.test('create, list, read, change and delete a task; another user\'s task is 404 on every route', async (t) => {
  const { app, logs, store } = await build(t)
  const me = await tokenHeaders(app)
  const other = await tokenHeaders(app)
  const created = await app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: { title: `${CANARY} book the venue`, dueDate: '2026-12-18' } })
  t.equal(created.statusCode, 201)
  const task = created.json()
  t.match(task, { id: /^task_[0-9A-Za-z]{16}$/, title: `${CANARY} book the venue`, status: 'todo', dueDate: '2026-12-18', createdAt: /Z$/, updatedAt: /Z$/ })
  t.equal(created.headers.location, `/v1/tasks/${task.id as string}`)

  t.same((await app.inject({ url: `/v1/tasks/${task.id as string}`, headers: me.headers })).json(), task)
  t.match((await app.inject({ url: '/v1/tasks', headers: me.headers })).json(), { data: [task], nextCursor: null })
  t.same((await app.inject({ url: '/v1/tasks', headers: other.headers })).json(), { data: [], nextCursor: null })

  const changed = await app.inject({ method: 'PATCH', url: `/v1/tasks/${task.id as string}`, headers: me.headers, payload: { status: 'doing' } })
  t.equal(changed.statusCode, 200)
  t.match(changed.json(), { title: task.title, status: 'doing', dueDate: '2026-12-18' }, 'unchanged fields stay')
  const renamed = await app.inject({ method: 'PATCH', url: `/v1/tasks/${task.id as string}`, headers: me.headers, payload: { title: `${CANARY} renamed`, dueDate: '2027-01-04' } })
  t.match(renamed.json(), { title: `${CANARY} renamed`, status: 'doing', dueDate: '2027-01-04' }, 'the status stays')
  t.ok(Date.parse(renamed.json().updatedAt) >= Date.parse(task.updatedAt), 'updatedAt moves on')
  const cleared = await app.inject({ method: 'PATCH', url: `/v1/tasks/${task.id as string}`, headers: me.headers, payload: { title: 'Renamed', dueDate: null, status: 'done' } })
  t.same(Object.keys(cleared.json()).sort(), ['createdAt', 'id', 'status', 'title', 'updatedAt'], 'no due date any more')
  t.match(cleared.json(), { title: 'Renamed', status: 'done' })

  for (const [method, payload] of [['GET', undefined], ['PATCH', { status: 'todo' }], ['DELETE', undefined]] as const) {
    const res = await app.inject({ method, url: `/v1/tasks/${task.id as string}`, headers: other.headers, ...(payload === undefined ? {} : { payload }) })
    t.equal(res.statusCode, 404, `${method} of another user's task`)
    t.equal(res.json().error.code, 'NOT_FOUND')
  }
  t.equal((await app.inject({ url: `/v1/tasks/${task.id as string}`, headers: me.headers })).json().title, 'Renamed', 'untouched by the other user')

  t.equal((await app.inject({ method: 'DELETE', url: `/v1/tasks/${task.id as string}`, headers: me.headers })).statusCode, 204)
  t.equal((await app.inject({ url: `/v1/tasks/${task.id as string}`, headers: me.headers })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/tasks/${task.id as string}`, headers: me.headers })).statusCode, 404, 'gone')

  t.notMatch(logs.text, CANARY, 'titles never reach a log line')
  t.notMatch(await dumpAllTables(store), CANARY, 'nor a table in plain text')
})

t.test('filters and cursor pagination', async (t) => {
  const { app } = await build(t)
  const me = await tokenHeaders(app)
  const make = async (title: string, extra: Record<string, string> = {}) =>
    (await app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: { title, ...extra } })).json().id as string
  const a = await make('a', { dueDate: '2026-12-01' })
  const b = await make('b', { dueDate: '2026-12-10', status: 'doing' })
  const c = await make('c', { dueDate: '2026-12-20', status: 'done' })
  const d = await make('d')
  const ids = async (query: string) => ((await app.inject({ url: `/v1/tasks?${query}`, headers: me.headers })).json() as { data: Array<{ id: string }> }).data.map((x) => x.id)
  t.same(await ids(''), [d, c, b, a], 'newest first')
  t.same(await ids('status=todo'), [d, a])
  t.same(await ids('status=done'), [c])
  t.same(await ids('dueFrom=2026-12-10'), [c, b], 'inclusive, undated tasks left out')
  t.same(await ids('dueTo=2026-12-10'), [b, a])
  t.same(await ids('dueFrom=2026-12-02&dueTo=2026-12-19'), [b])
  t.same(await ids('dueFrom=2026-12-02&dueTo=2026-12-19&status=todo'), [])

  const seen: string[] = []
  let cursor: string | null = null
  do {
    const page = (await app.inject({ url: `/v1/tasks?limit=3${cursor === null ? '' : `&cursor=${cursor}`}`, headers: me.headers })).json() as { data: Array<{ id: string }>, nextCursor: string | null }
    seen.push(...page.data.map((x) => x.id))
    cursor = page.nextCursor
  } while (cursor !== null)
  t.same(seen, [d, c, b, a], 'every task once across pages')
})

t.test('bad input gets a clear 400, never a 5xx', async (t) => {
  const { app } = await build(t)
  const me = await tokenHeaders(app)
  const post = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: payload as Record<string, unknown> })
  const bad: Array<[string, unknown, string]> = [
    ['a 10,000-character title', { title: 'x'.repeat(10_000) }, '/title'],
    ['an empty title', { title: '' }, '/title'],
    ['a title of spaces', { title: '   ' }, '/title'],
    ['no title', { status: 'todo' }, ''],
    ['an unknown status', { title: 'x', status: 'blocked' }, '/status'],
    ['a malformed date', { title: 'x', dueDate: '18/12/2026' }, '/dueDate'],
    ['a day that does not exist', { title: 'x', dueDate: '2026-02-30' }, '/dueDate'],
    ['a date-time for a day', { title: 'x', dueDate: '2026-12-18T10:00:00Z' }, '/dueDate'],
    ['an unknown field', { title: 'x', owner: 'someone-else' }, ''],
    ['a title of the wrong type', { title: 42 }, '/title']
  ]
  for (const [name, payload, path] of bad) {
    const res = await post(payload)
    t.equal(res.statusCode, 400, name)
    t.ok(fields(res).some((p) => p.startsWith(path)), `${name}: names ${path === '' ? 'the body' : path}`)
  }
  const id = (await post({ title: 'x' })).json().id as string
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/tasks/${id}`, headers: me.headers, payload: {} })).statusCode, 400, 'an empty change')
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/tasks/${id}`, headers: me.headers, payload: { dueDate: 'soon' } })).statusCode, 400)
  t.equal((await app.inject({ url: '/v1/tasks/not-a-task-id', headers: me.headers })).statusCode, 400, 'a malformed id')
  const list = async (query: string) => app.inject({ url: `/v1/tasks?${query}`, headers: me.headers })
  t.same(fields(await list('dueFrom=2026-12-20&dueTo=2026-12-01')), ['/dueFrom'], 'a range backwards')
  t.same(fields(await list('dueFrom=yesterday')), ['/dueFrom'])
  t.same(fields(await list('cursor=bm90LWEtY3Vyc29y')), ['/cursor'])
  t.equal((await list('limit=1000')).statusCode, 400)
  t.equal((await list('status=all')).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', payload: { title: 'x' } })).statusCode, 401, 'no token')
})

t.test('at most MAX_TASKS_PER_USER tasks per user', async (t) => {
  const { app, store } = await build(t)
  const me = await tokenHeaders(app)
  const first = (await app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: { title: 'first' } })).json() as { id: string }
  // The rest of the allowance is filled in one statement (copies of the first row), not 10,000 requests.
  await store.query(`INSERT INTO tasks (id, user_id, key_id, title_sealed, status)
    SELECT 'task_fill' || lpad(g::text, 11, '0'), user_id, key_id, title_sealed, status FROM tasks, generate_series(2, $2) g WHERE id = $1`, [first.id, MAX_TASKS_PER_USER])
  const res = await app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: { title: 'one too many' } })
  t.equal(res.statusCode, 409)
  t.equal(res.json().error.code, 'CONFLICT')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/tasks/${first.id}`, headers: me.headers })).statusCode, 204)
  t.equal((await app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: { title: 'room again' } })).statusCode, 201)
})

t.test('tasks are in the user\'s export and deletion, and registered for key rotation', async (t) => {
  const { app } = await build(t)
  const me = await tokenHeaders(app)
  await app.inject({ method: 'POST', url: '/v1/tasks', headers: me.headers, payload: { title: 'Exported task', dueDate: '2027-01-05' } })
  const exported = await app.inject({ url: '/v1/ai/me/data', headers: me.headers })
  t.match(exported.json().sections.tasks, [{ title: 'Exported task', dueDate: '2027-01-05', status: 'todo' }])
  t.ok(app.contentCrypto.tables.some((table) => table.table === 'tasks'), 'registered for CONTENT_KEYS rotation')
  const deleted = await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers: me.headers })
  t.equal(deleted.json().deleted.tasks, 1)
  t.same((await app.inject({ url: '/v1/tasks', headers: me.headers })).json().data, [])
})
