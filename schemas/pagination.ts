import Type, { type TSchema } from 'typebox'
import { AppError } from '../plugins/errors.js'

/** The cursor pagination of Part 2 (SPEC §11): `?cursor=&limit=` → `{data, nextCursor}`, newest first. */
export const DEFAULT_PAGE_SIZE = 20
export const MAX_PAGE_SIZE = 100

export const PageQuery = {
  cursor: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,200}$', description: 'From `nextCursor` of the previous page.' })),
  limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE, description: 'Items per page.' })
}

export const Page = <S extends TSchema>(item: S, options: { $id: string, description: string }) => Type.Object({
  data: Type.Array(item),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next (older) page; null on the last page.' })
}, { ...options, title: options.$id, additionalProperties: false })

/** A position in a newest-first list: the creation time and id of the last item shown. Opaque to clients. */
export interface Position { createdAt: Date, id: string }

export const encodeCursor = (p: Position) => Buffer.from(`${p.createdAt.toISOString()}|${p.id}`).toString('base64url')

/** null for a cursor that is not one of ours (the caller answers VALIDATION_ERROR). */
export function decodeCursor (cursor: string): Position | null {
  const match = /^([^|]+)\|(.+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'))
  if (match === null) return null
  const createdAt = new Date(match[1] as string)
  return Number.isNaN(createdAt.getTime()) ? null : { createdAt, id: match[2] as string }
}

/** The position of a client's cursor; VALIDATION_ERROR naming the query field for one that is not ours. */
export function cursorPosition (cursor: string): Position {
  const at = decodeCursor(cursor)
  if (at === null) throw new AppError('VALIDATION_ERROR', 'The cursor is not one of this list\'s.', { fields: [{ location: 'querystring', path: '/cursor', message: 'is not a cursor of this list' }] })
  return at
}

/** The page of `rows` (fetched with limit + 1) and the cursor of the next one. */
export function pageOf<R extends { created_at: Date, id: string }, T> (rows: R[], limit: number, map: (row: R) => T) {
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { data: page.map(map), nextCursor: rows.length > limit && last !== undefined ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null }
}
