import { createHmac, randomUUID } from 'node:crypto'
import argon2 from 'argon2'
import fp from 'fastify-plugin'
import { errors, jwtVerify, SignJWT } from 'jose'
import type { Mode } from '../schemas/principal.js'
import type { Credential } from './auth/index.js'
import { newId } from './chats.js'
import type { ContentCrypto } from './content-crypto.js'
import { ConfigError } from './config.js'
import { AppError, invalidBody } from './errors.js'
import type { Queryable, Store } from './store/index.js'

const TABLE = 'accounts'
const ATTEMPTS = 'auth_attempts'
export const ACCOUNT_ISSUER = 'portal-ai-api/accounts'

/** argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane). */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const
export const MIN_PASSWORD = 10
export const MAX_PASSWORD = 256
export const MAX_EMAIL = 254
/** Failed sign-ins allowed per account and per client address in a window; then 429 until the window ends. */
export const ATTEMPT_WINDOW_MS = 15 * 60_000
export const MAX_FAILURES_PER_ACCOUNT = 5
export const MAX_FAILURES_PER_ADDRESS = 20

interface AccountRow {
  id: string
  email_hash: string
  key_id: string
  email_sealed: Uint8Array
  password_hash: string
  token_version: number
  created_at: Date
}

export interface Account { id: string, email: string, createdAt: string }

/** An email as accounts compare it: Unicode NFC, trimmed, lower case. */
export const normalizeEmail = (email: string) => email.normalize('NFC').trim().toLowerCase()

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

const invalid = (path: string, message: string) => invalidBody({ path, message })

/** The one answer to a sign-in that fails, whatever failed (unknown email or wrong password). */
const badSignIn = () => new AppError('UNAUTHENTICATED', 'The email or the password is wrong.', undefined, { 'www-authenticate': 'Bearer' })

export function checkPassword (password: string, email: string, path = '/password'): void {
  const length = [...password].length
  if (length < MIN_PASSWORD || length > MAX_PASSWORD) throw invalid(path, `must be ${MIN_PASSWORD} to ${MAX_PASSWORD} characters`)
  if (normalizeEmail(password) === normalizeEmail(email)) throw invalid(path, 'must not be the email')
}

export interface AccountsOptions {
  db: Store
  crypto: ContentCrypto
  /** Keys the email lookup hash and the account tokens (derived from AI_TOKEN_SECRET). */
  secret: string
  tokenTtlSeconds: number
  now?: () => Date
}

/** Built-in accounts (SPEC §14): the service as its own identity provider, for deployments without a portal. */
export function createAccounts (opts: AccountsOptions) {
  const { db, crypto } = opts
  const now = opts.now ?? (() => new Date())
  const emailHash = (email: string) => createHmac('sha256', opts.secret).update(`email:${normalizeEmail(email)}`).digest('hex')
  const signingKey = createHmac('sha256', opts.secret).update('account-tokens').digest()
  const bind = (row: { id: string }) => ({ table: TABLE, column: 'email_sealed', rowId: row.id, userId: row.id })
  const toAccount = (row: AccountRow): Account => ({
    id: row.id,
    email: crypto.openText({ keyId: row.key_id, data: Buffer.from(row.email_sealed) }, bind(row)),
    createdAt: row.created_at.toISOString()
  })
  // Verified against when the email is unknown, so that both failures cost one argon2 verification. Hashed in the
  // background from the start (not awaited there), so that the first unknown email does not pay for a hash too.
  const decoy = argon2.hash(randomUUID(), ARGON2_OPTIONS)

  async function byId (id: string, db2: Queryable = db): Promise<AccountRow | undefined> {
    return (await db2.query<AccountRow>(`SELECT * FROM ${TABLE} WHERE id = $1`, [id])).rows[0]
  }

  /** Counts a failure of `key` in the current window; true when the key is over its limit. */
  async function over (key: string, max: number): Promise<{ blocked: boolean, retryAfterMs: number }> {
    const { rows } = await db.query<{ failures: number, window_start: Date }>(`SELECT failures, window_start FROM ${ATTEMPTS} WHERE key = $1`, [key])
    const row = rows[0]
    if (row === undefined || now().getTime() - row.window_start.getTime() >= ATTEMPT_WINDOW_MS) return { blocked: false, retryAfterMs: 0 }
    return { blocked: row.failures >= max, retryAfterMs: row.window_start.getTime() + ATTEMPT_WINDOW_MS - now().getTime() }
  }

  async function fail (key: string) {
    const at = now()
    await db.query(`INSERT INTO ${ATTEMPTS} (key, failures, window_start) VALUES ($1, 1, $2)
      ON CONFLICT (key) DO UPDATE SET
        failures = CASE WHEN ${ATTEMPTS}.window_start <= $3 THEN 1 ELSE ${ATTEMPTS}.failures + 1 END,
        window_start = CASE WHEN ${ATTEMPTS}.window_start <= $3 THEN $2 ELSE ${ATTEMPTS}.window_start END`,
    [key, at, new Date(at.getTime() - ATTEMPT_WINDOW_MS)])
  }

  async function sign (row: AccountRow) {
    const token = await new SignJWT({ ver: row.token_version })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ACCOUNT_ISSUER).setAudience(ACCOUNT_ISSUER).setSubject(row.id).setJti(randomUUID())
      .setIssuedAt(Math.floor(now().getTime() / 1000)).setExpirationTime(Math.floor(now().getTime() / 1000) + opts.tokenTtlSeconds)
      .sign(signingKey)
    return { access_token: token, token_type: 'bearer' as const, expires_in: opts.tokenTtlSeconds }
  }

  return {
    emailHash,

    /** Creates an account; CONFLICT when the email is taken. */
    async register (email: string, password: string, afterInsert: (tx: Queryable, id: string) => Promise<void>): Promise<Account> {
      const normalized = normalizeEmail(email)
      if (normalized.length > MAX_EMAIL || !EMAIL.test(normalized)) throw invalid('/email', 'must be an email address')
      checkPassword(password, normalized)
      const hash = await argon2.hash(password, ARGON2_OPTIONS)
      const id = newId('acc')
      const sealed = crypto.seal(normalized, bind({ id }))
      try {
        const row = await db.transaction(async (tx) => {
          const inserted = (await tx.query<AccountRow>(`INSERT INTO ${TABLE} (id, email_hash, key_id, email_sealed, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
            [id, emailHash(normalized), sealed.keyId, sealed.data, hash])).rows[0] as AccountRow
          await afterInsert(tx, id)
          return inserted
        })
        return toAccount(row)
      } catch (err) {
        if ((err as { code?: string }).code === '23505') throw new AppError('CONFLICT', 'An account with this email exists: sign in, or use another email.')
        throw err
      }
    },

    /**
     * Signs in: the same answer, after one argon2 verification, for an unknown email and a wrong password. Failures
     * count per account and per address; over either limit the answer is RATE_LIMITED until the window ends.
     */
    async login (email: string, password: string, address: string) {
      const accountKey = `account:${emailHash(email)}`
      const addressKey = `address:${createHmac('sha256', opts.secret).update(`address:${address}`).digest('hex')}`
      for (const [key, max] of [[accountKey, MAX_FAILURES_PER_ACCOUNT], [addressKey, MAX_FAILURES_PER_ADDRESS]] as const) {
        const state = await over(key, max)
        if (state.blocked) {
          const seconds = Math.max(1, Math.ceil(state.retryAfterMs / 1000))
          throw new AppError('RATE_LIMITED', 'Too many failed sign-ins: wait before trying again.', { retryAfterSeconds: seconds }, { 'retry-after': String(seconds) })
        }
      }
      const row = (await db.query<AccountRow>(`SELECT * FROM ${TABLE} WHERE email_hash = $1`, [emailHash(email)])).rows[0]
      const ok = await argon2.verify(row?.password_hash ?? await decoy, password.slice(0, 4 * MAX_PASSWORD))
      if (row === undefined || !ok) {
        await fail(accountKey)
        await fail(addressKey)
        throw badSignIn()
      }
      await db.query(`DELETE FROM ${ATTEMPTS} WHERE key = $1`, [accountKey])
      return sign(row)
    },

    /** The account behind a token of ours; UNAUTHENTICATED for one revoked by a password change or a deleted account. */
    async verify (token: string): Promise<AccountRow> {
      let payload
      try {
        ({ payload } = await jwtVerify(token, signingKey, { issuer: ACCOUNT_ISSUER, audience: ACCOUNT_ISSUER, algorithms: ['HS256'], currentDate: now() }))
      } catch (err) {
        if (err instanceof errors.JWTExpired) throw new AppError('TOKEN_EXPIRED', 'The sign-in has expired: sign in again at POST /v1/auth/login.')
        throw new AppError('UNAUTHENTICATED', 'The account token is not valid: sign in at POST /v1/auth/login.')
      }
      const row = typeof payload.sub === 'string' ? await byId(payload.sub) : undefined
      if (row === undefined || payload.ver !== row.token_version) {
        throw new AppError('UNAUTHENTICATED', 'This sign-in is no longer valid (the password was changed, or the account deleted): sign in again.')
      }
      return row
    },

    toAccount,

    /** Changes the password after checking the current one; every other token stops working. Returns a new token. */
    async changePassword (row: AccountRow, current: string, next: string) {
      if (!await argon2.verify(row.password_hash, current.slice(0, 4 * MAX_PASSWORD))) {
        throw new AppError('UNAUTHENTICATED', 'The current password is wrong.')
      }
      const email = toAccount(row).email
      checkPassword(next, email, '/newPassword')
      const hash = await argon2.hash(next, ARGON2_OPTIONS)
      const updated = (await db.query<AccountRow>(`UPDATE ${TABLE} SET password_hash = $2, token_version = token_version + 1 WHERE id = $1 AND token_version = $3 RETURNING *`,
        [row.id, hash, row.token_version])).rows[0]
      if (updated === undefined) throw new AppError('CONFLICT', 'The password was changed meanwhile by another session: sign in again.')
      return sign(updated)
    },

    /** The account as its owner reads it in the data export; null for a user who is not an account. */
    async exportFor (id: string): Promise<Account | null> {
      const row = await byId(id)
      return row === undefined ? null : toAccount(row)
    },

    async remove (id: string, tx: Queryable) {
      await tx.query(`DELETE FROM ${TABLE} WHERE id = $1`, [id])
    }
  }
}

export type Accounts = ReturnType<typeof createAccounts>

declare module 'fastify' {
  interface FastifyInstance {
    /** null unless LOCAL_ACCOUNTS=on. */
    accounts: Accounts | null
  }
}

/** The credential of an account token at POST /v1/ai/tokens: a live user whose license came with the account. */
export const accountCredential = (row: { id: string }): Credential => ({ kind: 'account', userId: row.id, mode: 'live' as Mode })

/** Built-in accounts when LOCAL_ACCOUNTS=on: their tokens are credentials for POST /v1/ai/tokens, like portal tokens. */
export default fp(async function accounts (app) {
  if (app.config.LOCAL_ACCOUNTS !== 'on') {
    app.decorate('accounts', null)
    return
  }
  const plan = app.config.LOCAL_ACCOUNTS_PLAN
  if (app.entitlements.plans.plans[plan] === undefined) {
    throw new ConfigError([`LOCAL_ACCOUNTS_PLAN: "${plan}" is not a plan of the plans file (${Object.keys(app.entitlements.plans.plans).join(', ')}).`])
  }
  const accounts = createAccounts({
    db: app.store,
    crypto: app.contentCrypto,
    secret: createHmac('sha256', app.config.AI_TOKEN_SECRET).update('local-accounts').digest('hex'),
    tokenTtlSeconds: app.config.LOCAL_ACCOUNTS_TOKEN_TTL_SECONDS
  })
  app.decorate('accounts', accounts)
  app.contentCrypto.registerTable({ table: TABLE, idColumn: 'id', userColumn: 'id', keyIdColumn: 'key_id', columns: ['email_sealed'] })
  app.credentialIssuers.register({ issuer: ACCOUNT_ISSUER, verify: async (token) => accountCredential(await accounts.verify(token)) })
  // In the export; the account itself is not data to delete with DELETE /v1/ai/me/data (that is DELETE /v1/auth/me).
  app.userData.register({ name: 'account', export: async (userId) => accounts.exportFor(userId), delete: async () => 0 })
}, { name: 'accounts', fastify: '5.x', dependencies: ['config', 'store', 'content-crypto', 'auth', 'user-data', 'entitlements'] })
