import fp from 'fastify-plugin'
import { cursorPosition, pageOf } from '../schemas/pagination.js'
import { MAX_TASKS_PER_USER, type TaskStatus, type TaskValue } from '../schemas/tasks.js'
import { newId } from './chats.js'
import type { ContentCrypto } from './content-crypto.js'
import { AppError } from './errors.js'
import type { Queryable } from './store/index.js'

const TABLE = 'tasks'

interface TaskRow {
  id: string
  user_id: string
  key_id: string
  title_sealed: Uint8Array
  status: TaskStatus
  due_date: string | null
  created_at: Date
  updated_at: Date
}

export interface TaskFilter { cursor?: string, limit: number, status?: TaskStatus, dueFrom?: string, dueTo?: string }
export interface TaskPatch { title?: string, status?: TaskStatus, dueDate?: string | null }

const notFound = () => new AppError('NOT_FOUND', 'There is no such task.')

/** A user's tasks (SPEC §17): the title sealed at rest, status and due day in the clear for filtering. */
export function createTasks (db: Queryable, crypto: ContentCrypto) {
  const binding = (row: { id: string, user_id: string }) => ({ table: TABLE, column: 'title_sealed', rowId: row.id, userId: row.user_id })
  const toTask = (row: TaskRow): TaskValue => ({
    id: row.id,
    title: crypto.openText({ keyId: row.key_id, data: Buffer.from(row.title_sealed) }, binding(row)),
    status: row.status,
    ...(row.due_date === null ? {} : { dueDate: row.due_date }),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  })
  // due_date::text: the day as written, whatever the session's DateStyle.
  const COLUMNS = 'id, user_id, key_id, title_sealed, status, due_date::text AS due_date, created_at, updated_at'

  return {
    async create (userId: string, input: { title: string, status?: TaskStatus, dueDate?: string }) {
      const { rows: count } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${TABLE} WHERE user_id = $1`, [userId])
      if (Number(count[0]?.n) >= MAX_TASKS_PER_USER) {
        throw new AppError('CONFLICT', `You have ${MAX_TASKS_PER_USER} tasks, the most there may be: delete finished ones first.`)
      }
      const id = newId('task')
      const sealed = crypto.seal(input.title, binding({ id, user_id: userId }))
      const { rows } = await db.query<TaskRow>(
        `INSERT INTO ${TABLE} (id, user_id, key_id, title_sealed, status, due_date) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
        [id, userId, sealed.keyId, sealed.data, input.status ?? 'todo', input.dueDate ?? null])
      return toTask(rows[0] as TaskRow)
    },

    async list (userId: string, filter: TaskFilter) {
      if (filter.dueFrom !== undefined && filter.dueTo !== undefined && filter.dueFrom > filter.dueTo) {
        throw new AppError('VALIDATION_ERROR', 'dueFrom is after dueTo.', { fields: [{ location: 'querystring', path: '/dueFrom', message: 'must not be after dueTo' }] })
      }
      const after = filter.cursor === undefined ? null : cursorPosition(filter.cursor)
      const { rows } = await db.query<TaskRow>(
        `SELECT ${COLUMNS} FROM ${TABLE}
         WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
           AND ($4::text IS NULL OR status = $4) AND ($5::date IS NULL OR due_date >= $5) AND ($6::date IS NULL OR due_date <= $6)
         ORDER BY created_at DESC, id DESC LIMIT $7`,
        [userId, after?.createdAt ?? null, after?.id ?? '', filter.status ?? null, filter.dueFrom ?? null, filter.dueTo ?? null, filter.limit + 1])
      return pageOf(rows, filter.limit, toTask)
    },

    async get (userId: string, id: string) {
      const { rows } = await db.query<TaskRow>(`SELECT ${COLUMNS} FROM ${TABLE} WHERE id = $1 AND user_id = $2`, [id, userId])
      if (rows[0] === undefined) throw notFound()
      return toTask(rows[0])
    },

    /** One statement: a task deleted meanwhile is NOT_FOUND, never half-changed. A new title is sealed under the primary key. */
    async update (userId: string, id: string, patch: TaskPatch) {
      const sealed = patch.title === undefined ? null : crypto.seal(patch.title, binding({ id, user_id: userId }))
      const { rows } = await db.query<TaskRow>(
        `UPDATE ${TABLE} SET key_id = COALESCE($3, key_id), title_sealed = COALESCE($4, title_sealed), status = COALESCE($5, status),
           due_date = CASE WHEN $6 THEN $7::date ELSE due_date END, updated_at = now()
         WHERE id = $1 AND user_id = $2 RETURNING ${COLUMNS}`,
        [id, userId, sealed?.keyId ?? null, sealed?.data ?? null, patch.status ?? null, patch.dueDate !== undefined, patch.dueDate ?? null])
      if (rows[0] === undefined) throw notFound()
      return toTask(rows[0])
    },

    async remove (userId: string, id: string) {
      const { rowCount } = await db.query(`DELETE FROM ${TABLE} WHERE id = $1 AND user_id = $2`, [id, userId])
      if (rowCount === 0) throw notFound()
    },

    async exportForUser (userId: string) {
      const { rows } = await db.query<TaskRow>(`SELECT ${COLUMNS} FROM ${TABLE} WHERE user_id = $1 ORDER BY created_at, id`, [userId])
      return rows.map(toTask)
    },

    async deleteForUser (userId: string) {
      const { rowCount } = await db.query(`DELETE FROM ${TABLE} WHERE user_id = $1`, [userId])
      return rowCount
    }
  }
}

export type Tasks = ReturnType<typeof createTasks>

declare module 'fastify' {
  interface FastifyInstance {
    tasks: Tasks
  }
}

/** Tasks of the productivity assistant (SPEC §17). */
export default fp(async function tasks (app) {
  const tasks = createTasks(app.store, app.contentCrypto)
  app.decorate('tasks', tasks)
  app.contentCrypto.registerTable({ table: TABLE, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['title_sealed'] })
  app.userData.register({ name: 'tasks', export: tasks.exportForUser, delete: tasks.deleteForUser })
}, { name: 'tasks', fastify: '5.x', dependencies: ['store', 'content-crypto', 'user-data'] })
