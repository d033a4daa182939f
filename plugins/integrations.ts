import { createHash, randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import { createGoogleCalendar, type EventPage, type GoogleCalendar } from '../providers/google-calendar.js'
import { sandboxEvents } from '../providers/sandbox-calendar.js'
import {
  CALENDAR_SCOPE, DEFAULT_EVENT_RANGE_DAYS, MAX_EVENT_RANGE_DAYS, STATE_TTL_SECONDS, type IntegrationValue
} from '../schemas/integrations.js'
import type { Mode, Principal } from '../schemas/principal.js'
import { newId } from './chats.js'
import type { ContentCrypto } from './content-crypto.js'
import { AppError } from './errors.js'
import type { Queryable } from './store/index.js'
import { errorOutcome } from '../providers/provider-error.js'

const INTEGRATIONS = 'integrations'
const STATES = 'oauth_states'
const KIND = 'google-calendar'
/** The code the sandbox "consent page" hands back in test mode (it never reaches Google). */
export const SANDBOX_CODE = 'sandbox-consent'
const DAY_MS = 86_400_000

interface IntegrationRow {
  id: string
  user_id: string
  mode: Mode
  status: 'ok' | 'needs-reconnect'
  scopes: string[]
  key_id: string
  refresh_sealed: Uint8Array | null
  access_sealed: Uint8Array | null
  access_expires_at: Date | null
  connected_at: Date
}
interface StateRow { state_hash: string, user_id: string, mode: Mode, key_id: string, verifier_sealed: Uint8Array | null, expires_at: Date }

/** Why a callback did not connect: `details.reason` of its error, and `error=` of the redirect to INTEGRATIONS_RETURN_URL. */
export type CallbackReason = 'invalid_state' | 'access_denied' | 'missing_code' | 'code_refused' | 'scope_not_granted' | 'google_unavailable' | 'google_error'
const refused = (code: 'VALIDATION_ERROR' | 'INTEGRATION_NOT_CONNECTED', reason: CallbackReason, message: string, path?: string) =>
  new AppError(code, message, { reason, ...(path === undefined ? {} : { fields: [{ location: 'querystring', path, message: 'is not valid' }] }) })

const hashState = (state: string) => createHash('sha256').update(state).digest('base64url')
const notConnected = () => new AppError('INTEGRATION_NOT_CONNECTED', 'Google Calendar is not connected: connect it with POST /v1/integrations/google-calendar/connect.')

export interface IntegrationsOptions {
  db: Queryable
  crypto: ContentCrypto
  /** null when GOOGLE_CLIENT_ID and the rest are not set: live connections are then PROVIDER_NOT_CONFIGURED. */
  google: GoogleCalendar | null
  log: { warn: (obj: object, msg: string) => void }
  /** Told of each read of Google's calendar: `ok` or its error code, and its seconds. */
  observe: (outcome: string, seconds: number) => void
}

/**
 * Google Calendar connections (SPEC §17): the OAuth states of connects under way and the grants, refresh and access
 * tokens sealed at rest. Nothing is fetched from Google but on a user's request.
 */
export function createIntegrations (opts: IntegrationsOptions) {
  const { db, crypto, google } = opts
  const bind = (column: string, row: { id: string, user_id: string }) => ({ table: INTEGRATIONS, column, rowId: row.id, userId: row.user_id })
  const stateBinding = (row: { state_hash: string, user_id: string }) => ({ table: STATES, column: 'verifier_sealed', rowId: row.state_hash, userId: row.user_id })
  const openText = (row: IntegrationRow, column: 'refresh_sealed' | 'access_sealed') => {
    const data = row[column]
    return data === null ? null : crypto.openText({ keyId: row.key_id, data: Buffer.from(data) }, bind(column, row))
  }

  const toIntegration = (row: IntegrationRow | undefined, mode: Mode): IntegrationValue => row === undefined
    ? { id: KIND, connected: false, connectedAt: null, scopes: [], status: 'not-connected', sandbox: mode === 'test' }
    : { id: KIND, connected: true, connectedAt: row.connected_at.toISOString(), scopes: row.scopes, status: row.status, sandbox: row.mode === 'test' }

  async function find (userId: string, mode: Mode) {
    const { rows } = await db.query<IntegrationRow>(`SELECT * FROM ${INTEGRATIONS} WHERE user_id = $1 AND kind = $2 AND mode = $3`, [userId, KIND, mode])
    return rows[0]
  }
  const liveGoogle = () => {
    if (google === null) throw new AppError('PROVIDER_NOT_CONFIGURED', 'Google Calendar is not set up on this deployment (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, GOOGLE_REDIRECT_URI); test mode uses the sandbox calendar.')
    return google
  }

  /** Revokes a grant being dropped without failing what drops it (a reconnect, a deletion); the failure is logged. */
  async function revokeQuietly (row: IntegrationRow) {
    const refresh = openText(row, 'refresh_sealed')
    if (refresh === null) return
    try {
      await liveGoogle().revoke(refresh)
    } catch (err) {
      opts.log.warn({ integrationId: row.id, code: (err as AppError).code }, 'could not revoke a Google grant being dropped')
    }
  }

  return {
    async list (principal: Principal) {
      return { data: [toIntegration(await find(principal.userId, principal.mode), principal.mode)] }
    },

    /**
     * Starts a connect: a single-use state bound to the user (kept only as its hash, with the PKCE verifier sealed),
     * and the consent page to open. `sandboxCallback` is the callback URL the test-mode link goes to.
     */
    async connect (principal: Principal, sandboxCallback: string) {
      const live = principal.mode === 'live'
      const g = live ? liveGoogle() : null
      await db.query(`DELETE FROM ${STATES} WHERE expires_at < now()`)
      const state = randomBytes(32).toString('base64url')
      const expiresAt = new Date(Date.now() + STATE_TTL_SECONDS * 1000)
      const row = { state_hash: hashState(state), user_id: principal.userId }
      const pkce = g === null ? null : await g.pkce()
      const sealed = pkce === null ? null : crypto.seal(pkce.verifier, stateBinding(row))
      await db.query(`INSERT INTO ${STATES} (state_hash, user_id, mode, kind, key_id, verifier_sealed, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [row.state_hash, row.user_id, principal.mode, KIND, sealed?.keyId ?? crypto.primaryKeyId, sealed?.data ?? null, expiresAt])
      const authorizationUrl = g === null || pkce === null
        ? `${sandboxCallback}?${new URLSearchParams({ state, code: SANDBOX_CODE, scope: CALENDAR_SCOPE }).toString()}`
        : g.authorizationUrl(state, pkce.challenge)
      return { authorizationUrl, expiresAt: expiresAt.toISOString() }
    },

    /**
     * The browser's return from Google: the state is consumed (once, whatever happens next), the code exchanged
     * with its verifier, the grant sealed and kept. `browserUser`: who the browser is signed in as (AUTH_COOKIE), when
     * it says. Returns the user it connected, for the audit.
     */
    async callback (query: { state?: string, code?: string, error?: string }, browserUser: string | null = null) {
      if (query.state === undefined || query.state === '') throw refused('VALIDATION_ERROR', 'invalid_state', 'The callback has no state: start again with POST /v1/integrations/google-calendar/connect.', '/state')
      const { rows } = await db.query<StateRow>(`DELETE FROM ${STATES} WHERE state_hash = $1 RETURNING *`, [hashState(query.state)])
      const state = rows[0]
      if (state === undefined || state.expires_at.getTime() < Date.now()) {
        throw refused('VALIDATION_ERROR', 'invalid_state', 'The state is unknown, already used or expired: start again with POST /v1/integrations/google-calendar/connect.', '/state')
      }
      // The browser is signed in (AUTH_COOKIE) as someone else than who started the connect: a link sent to a victim to
      // tie their calendar to the sender's account. Refused.
      if (browserUser !== null && browserUser !== state.user_id) {
        throw refused('VALIDATION_ERROR', 'invalid_state', 'This connect was started by another user than the one signed in here: start again from your own account.', '/state')
      }
      if (query.error !== undefined) {
        // Google's `error` is passed on only as one of our reasons, never as the text it sent.
        const denied = query.error === 'access_denied'
        throw refused('INTEGRATION_NOT_CONNECTED', denied ? 'access_denied' : 'google_error', denied ? 'Access to the calendar was not granted.' : 'Google could not authorize the connection: try again.')
      }
      if (query.code === undefined || query.code === '') throw refused('VALIDATION_ERROR', 'missing_code', 'The callback has no authorization code.', '/code')

      let grant: { refreshToken: string | null, scopes: string[] }
      if (state.mode === 'test') {
        if (query.code !== SANDBOX_CODE) throw refused('VALIDATION_ERROR', 'code_refused', 'The sandbox refused the authorization code: connect again.', '/code')
        grant = { refreshToken: null, scopes: [CALENDAR_SCOPE] }
      } else {
        // Google was set up when the connect started and is not now (a configuration change in between).
        if (google === null) throw new AppError('PROVIDER_NOT_CONFIGURED', 'Google Calendar is no longer set up on this deployment.', { reason: 'google_error' })
        const g = google
        const verifier = crypto.openText({ keyId: state.key_id, data: Buffer.from(state.verifier_sealed as Uint8Array) }, stateBinding(state))
        try {
          grant = await g.exchange(query.code, verifier)
        } catch (err) {
          const e = err as AppError
          if (e.code === 'VALIDATION_ERROR') throw refused('VALIDATION_ERROR', 'code_refused', e.message, '/code')
          throw new AppError(e.code, e.message, { reason: e.code === 'PROVIDER_ERROR' ? 'google_error' : 'google_unavailable' })
        }
        if (!grant.scopes.includes(CALENDAR_SCOPE)) {
          // The user unticked the calendar on Google's page: nothing to keep, and the grant goes back.
          await g.revoke(grant.refreshToken as string).catch(() => undefined)
          throw refused('INTEGRATION_NOT_CONNECTED', 'scope_not_granted', 'Google granted no access to calendar events (the box was left unticked): connect again and allow it.')
        }
      }

      const previous = await find(state.user_id, state.mode)
      const id = previous?.id ?? newId('int')
      const row = { id, user_id: state.user_id }
      const refresh = grant.refreshToken === null ? null : crypto.seal(grant.refreshToken, bind('refresh_sealed', row)).data
      const { rows: saved } = await db.query<IntegrationRow>(
        `INSERT INTO ${INTEGRATIONS} (id, user_id, mode, kind, status, scopes, key_id, refresh_sealed)
         VALUES ($1, $2, $3, $4, 'ok', $5, $6, $7)
         ON CONFLICT (user_id, kind, mode) DO UPDATE SET status = 'ok', scopes = $5, key_id = $6, refresh_sealed = $7, access_sealed = NULL,
           access_expires_at = NULL, connected_at = now(), updated_at = now()
         RETURNING *`,
        [id, state.user_id, state.mode, KIND, grant.scopes, crypto.primaryKeyId, refresh])
      // A grant replaced by a new consent is revoked: Google keeps a limited number per user and client.
      if (previous !== undefined) await revokeQuietly(previous)
      return { userId: state.user_id, mode: state.mode, integration: toIntegration(saved[0], state.mode) }
    },

    /** Revokes at Google and forgets. Google unreachable: the connection is kept (retry), nothing is lost. */
    async disconnect (principal: Principal) {
      const row = await find(principal.userId, principal.mode)
      if (row === undefined) throw new AppError('NOT_FOUND', 'No Google Calendar is connected.')
      const refresh = openText(row, 'refresh_sealed')
      if (refresh !== null) await liveGoogle().revoke(refresh)
      await db.query(`DELETE FROM ${INTEGRATIONS} WHERE id = $1 AND user_id = $2`, [row.id, principal.userId])
      return row.id
    },

    /** Events of the user's primary calendar in [from, to), soonest first; never stored, never logged. */
    async events (principal: Principal, query: { from?: string, to?: string, limit: number }): Promise<EventPage & { from: Date, to: Date }> {
      const from = query.from === undefined ? new Date() : new Date(query.from)
      const to = query.to === undefined ? new Date(from.getTime() + DEFAULT_EVENT_RANGE_DAYS * DAY_MS) : new Date(query.to)
      if (to <= from) throw new AppError('VALIDATION_ERROR', '`to` must be after `from`.', { fields: [{ location: 'querystring', path: '/to', message: 'must be after from' }] })
      if (to.getTime() - from.getTime() > MAX_EVENT_RANGE_DAYS * DAY_MS) {
        throw new AppError('VALIDATION_ERROR', `At most ${MAX_EVENT_RANGE_DAYS} days of events at once.`, { fields: [{ location: 'querystring', path: '/to', message: `must be at most ${MAX_EVENT_RANGE_DAYS} days after from` }] })
      }
      const row = await find(principal.userId, principal.mode)
      if (row === undefined) throw notConnected()
      if (row.status === 'needs-reconnect') throw new AppError('INTEGRATION_NOT_CONNECTED', 'Google no longer honours this calendar connection: connect Google Calendar again.')
      const range = { from, to, limit: query.limit }
      const refresh = openText(row, 'refresh_sealed')
      // A sandbox (test-mode) connection has no token: its events are the sandbox calendar's.
      if (refresh === null) return { ...sandboxEvents(range), from, to }
      try {
        const accessToken = openText(row, 'access_sealed')
        const access = accessToken === null ? null : { accessToken, expiresAt: row.access_expires_at as Date }
        const started = performance.now()
        const page = await liveGoogle().events(refresh, access, range).catch((err: unknown) => {
          opts.observe(errorOutcome(err), (performance.now() - started) / 1000)
          throw err
        })
        opts.observe('ok', (performance.now() - started) / 1000)
        if (page.refreshed !== null) {
          // Under the row's key, like its refresh token: one key id covers the row.
          const sealed = crypto.seal(page.refreshed.accessToken, bind('access_sealed', row), row.key_id)
          await db.query(`UPDATE ${INTEGRATIONS} SET access_sealed = $2, access_expires_at = $3, updated_at = now() WHERE id = $1`, [row.id, sealed.data, page.refreshed.expiresAt])
        }
        return { events: page.events, truncated: page.truncated, from, to }
      } catch (err) {
        if ((err as AppError).code === 'INTEGRATION_NOT_CONNECTED') {
          await db.query(`UPDATE ${INTEGRATIONS} SET status = 'needs-reconnect', access_sealed = NULL, access_expires_at = NULL, updated_at = now() WHERE id = $1`, [row.id])
        }
        throw err
      }
    },

    async exportForUser (userId: string) {
      const { rows } = await db.query<IntegrationRow>(`SELECT * FROM ${INTEGRATIONS} WHERE user_id = $1 ORDER BY connected_at`, [userId])
      // What is connected, never the tokens themselves.
      return rows.map((row) => ({ ...toIntegration(row, row.mode), mode: row.mode }))
    },

    async deleteForUser (userId: string) {
      const { rows } = await db.query<IntegrationRow>(`SELECT * FROM ${INTEGRATIONS} WHERE user_id = $1`, [userId])
      for (const row of rows) await revokeQuietly(row)
      await db.query(`DELETE FROM ${STATES} WHERE user_id = $1`, [userId])
      const { rowCount } = await db.query(`DELETE FROM ${INTEGRATIONS} WHERE user_id = $1`, [userId])
      return rowCount
    }
  }
}

export type Integrations = ReturnType<typeof createIntegrations>

declare module 'fastify' {
  interface FastifyInstance {
    integrations: Integrations
  }
}

/** Google Calendar for the productivity assistant (SPEC §17). */
export default fp(async function integrations (app) {
  const c = app.config
  const google = c.GOOGLE_CLIENT_ID === undefined || c.GOOGLE_CLIENT_SECRET === undefined || c.GOOGLE_REDIRECT_URI === undefined
    ? null
    : createGoogleCalendar({
      clientId: c.GOOGLE_CLIENT_ID,
      clientSecret: c.GOOGLE_CLIENT_SECRET,
      redirectUri: c.GOOGLE_REDIRECT_URI,
      oauthBaseUrl: c.GOOGLE_OAUTH_BASE_URL.replace(/\/+$/, ''),
      calendarBaseUrl: c.GOOGLE_CALENDAR_BASE_URL.replace(/\/+$/, ''),
      timeoutMs: c.GOOGLE_TIMEOUT_MS
    })
  // Calendar reads serve the productivity assistant's tools and the events route; in the metrics as vendor google.
  const observe = (outcome: string, seconds: number) => app.metrics.providerCall({ feature: 'none', mode: 'live', vendor: 'google', outcome, seconds })
  const integrations = createIntegrations({ db: app.store, crypto: app.contentCrypto, google, log: app.log, observe })
  app.decorate('integrations', integrations)
  app.contentCrypto.registerTable({ table: INTEGRATIONS, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['refresh_sealed', 'access_sealed'] })
  app.contentCrypto.registerTable({ table: STATES, idColumn: 'state_hash', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['verifier_sealed'] })
  app.userData.register({ name: 'integrations', export: integrations.exportForUser, delete: integrations.deleteForUser })
}, { name: 'integrations', fastify: '5.x', dependencies: ['config', 'store', 'content-crypto', 'user-data', 'metrics'] })
