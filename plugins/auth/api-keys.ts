import { createHash, randomBytes } from 'node:crypto'
import type { Mode } from '../../schemas/principal.js'
import type { Queryable } from '../store/index.js'

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** Random characters after the prefix: 40 base62 characters ≈ 238 bits. */
const KEY_RANDOM_LENGTH = 40
/** Characters of a key kept to recognise it in a list (the `pak_test_` prefix and 6 random characters). */
const DISPLAY_PREFIX_RANDOM = 6
export const API_KEY_PATTERN = /^pak_(live|test)_[0-9A-Za-z]{32,64}$/
/** lastUsedAt is written in batches: at most one write per key per interval, never one per request. */
export const LAST_USED_FLUSH_MS = 30_000

/** Uniform base62 by rejection sampling (no modulo bias). */
export function randomBase62 (length: number): string {
  let out = ''
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += BASE62[byte % 62]
    }
  }
  return out
}

export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex')

export interface ApiKeyRecord {
  id: string
  userId: string
  mode: Mode
  name: string | null
  prefix: string
  createdAt: string
  lastUsedAt: string | null
  revokedAt: string | null
}

interface KeyRow {
  id: string,
  user_id: string,
  mode: Mode,
  name: string | null,
  prefix: string,
  created_at: Date,
  last_used_at: Date | null,
  revoked_at: Date | null
}
const COLUMNS = 'id, user_id, mode, name, prefix, created_at, last_used_at, revoked_at'
const toRecord = (row: KeyRow): ApiKeyRecord => ({
  id: row.id,
  userId: row.user_id,
  mode: row.mode,
  name: row.name,
  prefix: row.prefix,
  createdAt: row.created_at.toISOString(),
  lastUsedAt: row.last_used_at?.toISOString() ?? null,
  revokedAt: row.revoked_at?.toISOString() ?? null
})

/** API keys: created once and shown once, stored as SHA-256 only, looked up by hash, revocable. */
export function createApiKeys (db: Queryable) {
  const pendingLastUsed = new Map<string, Date>()

  return {
    async create (userId: string, mode: Mode, name: string | null): Promise<ApiKeyRecord & { key: string }> {
      const key = `pak_${mode}_${randomBase62(KEY_RANDOM_LENGTH)}`
      const id = `key_${randomBase62(16)}`
      const prefix = key.slice(0, `pak_${mode}_`.length + DISPLAY_PREFIX_RANDOM)
      const { rows } = await db.query<KeyRow>(
        `INSERT INTO api_keys (id, user_id, mode, name, prefix, key_hash) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
        [id, userId, mode, name, prefix, hashKey(key)])
      return { ...toRecord(rows[0] as KeyRow), key }
    },

    async list (userId: string): Promise<ApiKeyRecord[]> {
      const { rows } = await db.query<KeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at, id`, [userId])
      return rows.map(toRecord)
    },

    async count (): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys')
      return (rows[0] as { n: number }).n
    },

    /** Revokes a key; returns it, or null when there is no such key. Revoking twice keeps the first time. */
    async revoke (id: string): Promise<ApiKeyRecord | null> {
      const { rows } = await db.query<KeyRow>(
        `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING ${COLUMNS}`, [id])
      return rows[0] === undefined ? null : toRecord(rows[0])
    },

    /** The active key with this value, or null; a use is recorded for the next batched lastUsedAt write. */
    async verify (key: string): Promise<ApiKeyRecord | null> {
      if (!API_KEY_PATTERN.test(key)) return null
      const { rows } = await db.query<KeyRow>(
        `SELECT ${COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, [hashKey(key)])
      if (rows[0] === undefined) return null
      pendingLastUsed.set(rows[0].id, new Date())
      return toRecord(rows[0])
    },

    /** Writes the recorded uses in one statement. */
    async flushLastUsed (): Promise<number> {
      if (pendingLastUsed.size === 0) return 0
      const ids = [...pendingLastUsed.keys()]
      const times = ids.map((id) => (pendingLastUsed.get(id) as Date).toISOString())
      pendingLastUsed.clear()
      const { rowCount } = await db.query(
        `UPDATE api_keys AS k SET last_used_at = greatest(k.last_used_at, u.at)
         FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id`, [ids, times])
      return rowCount
    }
  }
}

export type ApiKeys = ReturnType<typeof createApiKeys>
