import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Queryable } from './store/index.js'

/** AES-256-GCM: a 32-byte key, a 12-byte nonce drawn per value, a 16-byte tag. */
const KEY_BYTES = 32
const NONCE_BYTES = 12
const TAG_BYTES = 16
const ALGORITHM = 'aes-256-gcm'
/** Rows re-encrypted per statement batch by `rekey`. */
const REKEY_BATCH = 200
export const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/

export interface KeyRing {
  /** The key that encrypts; the others only decrypt (rotation in progress). */
  primary: string
  keys: Map<string, Buffer>
}

/**
 * `CONTENT_KEYS` = `id:base64key,id:base64key,…`. Returns a list of problems instead of throwing, so the
 * configuration can report them with every other bad variable. Keys are never echoed.
 */
export function parseKeyRing (value: string): KeyRing | string[] {
  const keys = new Map<string, Buffer>()
  const problems: string[] = []
  for (const [index, entry] of value.split(',').entries()) {
    const colon = entry.indexOf(':')
    const id = entry.slice(0, colon)
    if (colon < 0 || !KEY_ID_PATTERN.test(id)) {
      problems.push(`CONTENT_KEYS entry ${index + 1} must be id:base64key with an id of letters, digits, - or _ (at most 32).`)
      continue
    }
    const key = Buffer.from(entry.slice(colon + 1), 'base64')
    if (key.length !== KEY_BYTES) problems.push(`CONTENT_KEYS key "${id}" must be ${KEY_BYTES} bytes in base64 (openssl rand -base64 32).`)
    else if (keys.has(id)) problems.push(`CONTENT_KEYS names key "${id}" twice.`)
    else keys.set(id, key)
  }
  if (problems.length > 0) return problems
  return { primary: value.slice(0, value.indexOf(':')), keys }
}

/** A new key ring of one key, as the embedded default writes into DATA_DIR. */
export const generateKeyRing = (id = 'k1') => `${id}:${randomBytes(KEY_BYTES).toString('base64')}`

/**
 * Where a value lives. It is the associated data of the encryption, so a value copied into another row,
 * another column or another user's record no longer decrypts.
 */
export interface ContentBinding { table: string, column: string, rowId: string, userId: string }

/** What is stored: the key id beside the row, the sealed bytes (nonce ‖ ciphertext ‖ tag) in a bytea column. */
export interface Sealed { keyId: string, data: Buffer }

export class ContentDecryptError extends Error {
  constructor (binding: ContentBinding, reason: string) {
    // Names where, never what: the message may be logged.
    super(`stored content of ${binding.table}.${binding.column} row ${binding.rowId} cannot be decrypted: ${reason}`)
    this.name = 'ContentDecryptError'
  }
}

const associatedData = (b: ContentBinding) => Buffer.from(JSON.stringify([b.table, b.column, b.rowId, b.userId]))

/** One table's encrypted columns, so `rekey` can find and re-encrypt them (each feature registers its own). */
export interface EncryptedTable {
  table: string
  /** Primary key and owner columns (text), part of each value's binding. */
  idColumn: string
  userColumn: string
  /** The column with the key id of the row's values. */
  keyIdColumn: string
  /** bytea columns sealed under that key; a NULL one is skipped. */
  columns: string[]
}

/** The one encryption helper of the service: every feature stores what users wrote or uploaded through it. */
export function createContentCrypto (ring: KeyRing, random: (size: number) => Buffer = randomBytes) {
  const tables: EncryptedTable[] = []

  function seal (plaintext: Buffer | string, binding: ContentBinding, keyId = ring.primary): Sealed {
    const key = ring.keys.get(keyId) as Buffer
    const nonce = random(NONCE_BYTES)
    const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(associatedData(binding))
    const body = Buffer.concat([cipher.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), cipher.final()])
    return { keyId, data: Buffer.concat([nonce, body, cipher.getAuthTag()]) }
  }

  function open (sealed: Sealed, binding: ContentBinding): Buffer {
    const key = ring.keys.get(sealed.keyId)
    if (key === undefined) throw new ContentDecryptError(binding, `key "${sealed.keyId}" is not in CONTENT_KEYS`)
    if (sealed.data.length < NONCE_BYTES + TAG_BYTES) throw new ContentDecryptError(binding, 'too short')
    const decipher = createDecipheriv(ALGORITHM, key, sealed.data.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES })
    decipher.setAAD(associatedData(binding))
    decipher.setAuthTag(sealed.data.subarray(sealed.data.length - TAG_BYTES))
    try {
      return Buffer.concat([decipher.update(sealed.data.subarray(NONCE_BYTES, sealed.data.length - TAG_BYTES)), decipher.final()])
    } catch {
      throw new ContentDecryptError(binding, 'authentication failed (altered, or moved from another row)')
    }
  }

  return {
    primaryKeyId: ring.primary,
    seal,
    open,
    sealJson: (value: unknown, binding: ContentBinding) => seal(JSON.stringify(value), binding),
    openJson: <T>(sealed: Sealed, binding: ContentBinding): T => JSON.parse(open(sealed, binding).toString('utf8')) as T,
    openText: (sealed: Sealed, binding: ContentBinding) => open(sealed, binding).toString('utf8'),

    registerTable (table: EncryptedTable) { tables.push(table) },
    get tables (): readonly EncryptedTable[] { return tables },

    /**
     * Re-encrypts every registered row whose key is not the primary one, in batches; safe to run while the
     * service serves (a row changed meanwhile is left for the next run). Returns the rows rewritten per table.
     */
    async rekey (db: Queryable): Promise<Record<string, number>> {
      const counts: Record<string, number> = {}
      for (const t of tables) {
        let rewritten = 0
        const cols = t.columns
        for (;;) {
          const { rows } = await db.query<Record<string, unknown>>(
            `SELECT ${[t.idColumn, t.userColumn, t.keyIdColumn, ...cols].join(', ')} FROM ${t.table} WHERE ${t.keyIdColumn} <> $1 LIMIT ${REKEY_BATCH}`,
            [ring.primary])
          if (rows.length === 0) break
          for (const row of rows) {
            const rowId = String(row[t.idColumn])
            const userId = String(row[t.userColumn])
            const oldKey = String(row[t.keyIdColumn])
            const values = cols.map((column) => {
              const data = row[column]
              if (data === null) return null
              const binding = { table: t.table, column, rowId, userId }
              return seal(open({ keyId: oldKey, data: Buffer.from(data as Uint8Array) }, binding), binding).data
            })
            const sets = cols.map((column, i) => `${column} = $${i + 4}`)
            const { rowCount } = await db.query(
              `UPDATE ${t.table} SET ${t.keyIdColumn} = $1, ${sets.join(', ')} WHERE ${t.idColumn} = $2 AND ${t.keyIdColumn} = $3`,
              [ring.primary, rowId, oldKey, ...values])
            rewritten += rowCount
          }
        }
        counts[t.table] = rewritten
      }
      return counts
    }
  }
}

export type ContentCrypto = ReturnType<typeof createContentCrypto>

declare module 'fastify' {
  interface FastifyInstance {
    contentCrypto: ContentCrypto
  }
}

/** Content at rest (SPEC §11): AES-256-GCM under the CONTENT_KEYS ring, bound to its row. */
export default fp(async function contentCrypto (app) {
  app.decorate('contentCrypto', createContentCrypto(app.config.contentKeyRing))
}, { name: 'content-crypto', fastify: '5.x', dependencies: ['config'] })
