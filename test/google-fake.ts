import { createHash, randomBytes } from 'node:crypto'
import { delay, http, HttpResponse } from 'msw'
import { CALENDAR_SCOPE } from '../schemas/integrations.js'

export const GOOGLE_ENV = {
  GOOGLE_CLIENT_ID: '1234567890-abcdefghij.apps.googleusercontent.com',
  GOOGLE_CLIENT_SECRET: 'GOCSPX-test-client-secret-0123456789',
  GOOGLE_REDIRECT_URI: 'https://ai.example.com/v1/integrations/google-calendar/callback'
}
const TOKEN_URL = 'https://oauth2.googleapis.com/token'
const REVOKE_URL = 'https://oauth2.googleapis.com/revoke'
const EVENTS_URL = 'https://www.googleapis.com/calendar/v3/calendars/primary/events'

/** A Calendar API event resource (the fields Google documents for events.list). */
export interface FakeEvent { id: string, summary?: string, start: { dateTime?: string, date?: string, timeZone?: string }, end: { dateTime?: string, date?: string }, location?: string, status?: string, description?: string, attendees?: unknown[] }

/**
 * Google's OAuth server and Calendar API as documented: the consent page issues a code bound to the PKCE challenge;
 * the token endpoint checks the verifier (S256), issues and refreshes tokens, and answers `invalid_grant` for a
 * revoked grant; the revoke endpoint forgets a token; events.list answers for a valid access token only.
 */
export function fakeGoogle () {
  const codes = new Map<string, { challenge: string, scope: string }>()
  const refreshTokens = new Set<string>()
  const accessTokens = new Map<string, string>()
  const state = {
    events: [] as FakeEvent[],
    nextPageToken: undefined as string | undefined,
    /** What each endpoint answers instead, for failure tests. */
    tokenFailure: null as null | 'down' | 'network' | 'invalid_client' | 'slow',
    revokeFailure: null as null | 'down',
    eventsFailure: null as null | 401 | 403 | 404 | 'rate-limited' | 500 | 'slow',
    grantedScope: CALENDAR_SCOPE,
    /** Google answering the code exchange without a refresh token (an app that did not ask for offline access). */
    omitRefreshToken: false,
    refreshes: 0,
    revoked: [] as string[],
    tokenRequests: [] as URLSearchParams[],
    eventRequests: [] as URL[]
  }

  /** What the consent page does when the user allows access: the browser goes to the redirect URI with a code. */
  function consent (authorizationUrl: string) {
    const url = new URL(authorizationUrl)
    const code = `4/0A${randomBytes(24).toString('base64url')}`
    codes.set(code, { challenge: url.searchParams.get('code_challenge') as string, scope: state.grantedScope })
    const callback = new URL(url.searchParams.get('redirect_uri') as string)
    callback.searchParams.set('state', url.searchParams.get('state') as string)
    callback.searchParams.set('code', code)
    callback.searchParams.set('scope', state.grantedScope)
    return { code, callback: `${callback.pathname}${callback.search}` }
  }

  function issueAccess (refreshToken: string) {
    const access = `ya29.a0${randomBytes(24).toString('base64url')}`
    accessTokens.set(access, refreshToken)
    return access
  }
  /** Makes every access token of the grant expire (as an hour passing would). */
  const expireAccessTokens = () => accessTokens.clear()
  /** The user revokes the app in their Google account: the refresh token stops working. */
  const revokeGrant = (refreshToken: string) => {
    refreshTokens.delete(refreshToken)
    for (const [access, refresh] of accessTokens) if (refresh === refreshToken) accessTokens.delete(access)
  }

  const handlers = [
    http.post(TOKEN_URL, async ({ request }) => {
      const form = new URLSearchParams(await request.text())
      state.tokenRequests.push(form)
      if (state.tokenFailure === 'network') return HttpResponse.error()
      if (state.tokenFailure === 'down') return HttpResponse.json({ error: 'internal_failure' }, { status: 503 })
      if (state.tokenFailure === 'slow') await delay(5_000)
      if (state.tokenFailure === 'invalid_client' || form.get('client_id') !== GOOGLE_ENV.GOOGLE_CLIENT_ID || form.get('client_secret') !== GOOGLE_ENV.GOOGLE_CLIENT_SECRET) {
        return HttpResponse.json({ error: 'invalid_client', error_description: 'The OAuth client was not found.' }, { status: 401 })
      }
      if (form.get('grant_type') === 'authorization_code') {
        const issued = codes.get(form.get('code') ?? '')
        codes.delete(form.get('code') ?? '')
        if (issued === undefined || form.get('redirect_uri') !== GOOGLE_ENV.GOOGLE_REDIRECT_URI) {
          return HttpResponse.json({ error: 'invalid_grant', error_description: 'Malformed auth code.' }, { status: 400 })
        }
        const challenge = createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url')
        if (challenge !== issued.challenge) return HttpResponse.json({ error: 'invalid_grant', error_description: 'Invalid code verifier.' }, { status: 400 })
        const refresh = `1//0g${randomBytes(32).toString('base64url')}`
        refreshTokens.add(refresh)
        return HttpResponse.json({ access_token: issueAccess(refresh), expires_in: 3599, ...(state.omitRefreshToken ? {} : { refresh_token: refresh }), scope: issued.scope, token_type: 'Bearer', refresh_token_expires_in: 604799 })
      }
      if (form.get('grant_type') === 'refresh_token') {
        const refresh = form.get('refresh_token') ?? ''
        if (!refreshTokens.has(refresh)) return HttpResponse.json({ error: 'invalid_grant', error_description: 'Token has been expired or revoked.' }, { status: 400 })
        state.refreshes++
        return HttpResponse.json({ access_token: issueAccess(refresh), expires_in: 3599, scope: CALENDAR_SCOPE, token_type: 'Bearer' })
      }
      return HttpResponse.json({ error: 'unsupported_grant_type' }, { status: 400 })
    }),
    http.post(REVOKE_URL, ({ request }) => {
      if (state.revokeFailure === 'down') return HttpResponse.json({ error: 'internal_failure' }, { status: 503 })
      const token = new URL(request.url).searchParams.get('token') ?? ''
      if (!refreshTokens.has(token) && !accessTokens.has(token)) return HttpResponse.json({ error: 'invalid_token', error_description: 'Token expired or revoked' }, { status: 400 })
      state.revoked.push(token)
      revokeGrant(token)
      return HttpResponse.json({})
    }),
    http.get(EVENTS_URL, async ({ request }) => {
      const url = new URL(request.url)
      state.eventRequests.push(url)
      const access = /^Bearer (.+)$/.exec(request.headers.get('authorization') ?? '')?.[1] ?? ''
      if (state.eventsFailure === 'slow') await delay(5_000)
      if (state.eventsFailure === 401 || !accessTokens.has(access)) {
        return HttpResponse.json({ error: { code: 401, message: 'Request had invalid authentication credentials.', errors: [{ reason: 'authError', domain: 'global' }], status: 'UNAUTHENTICATED' } }, { status: 401 })
      }
      if (state.eventsFailure === 403) return HttpResponse.json({ error: { code: 403, message: 'Request had insufficient authentication scopes.', errors: [{ reason: 'insufficientPermissions', domain: 'global' }], status: 'PERMISSION_DENIED' } }, { status: 403 })
      if (state.eventsFailure === 'rate-limited') return HttpResponse.json({ error: { code: 403, message: 'Rate Limit Exceeded', errors: [{ reason: 'rateLimitExceeded', domain: 'usageLimits' }] } }, { status: 403 })
      if (state.eventsFailure === 404) return HttpResponse.json({ error: { code: 404, message: 'Not Found', errors: [{ reason: 'notFound', domain: 'global' }] } }, { status: 404 })
      if (state.eventsFailure === 500) return HttpResponse.json({ error: { code: 500, message: 'Backend Error' } }, { status: 500 })
      const from = url.searchParams.get('timeMin') ?? ''
      const to = url.searchParams.get('timeMax') ?? ''
      const max = Number(url.searchParams.get('maxResults') ?? 250)
      const inRange = state.events.filter((e) => (e.end.dateTime ?? e.end.date ?? '') > from && (e.start.dateTime ?? e.start.date ?? '') < to)
      return HttpResponse.json({
        kind: 'calendar#events',
        summary: 'someone@example.com',
        timeZone: 'Europe/Berlin',
        accessRole: 'owner',
        // A partial response (`fields=`) leaves out an empty list.
        ...(inRange.length === 0 ? {} : { items: inRange.slice(0, max).map((e) => ({ kind: 'calendar#event', etag: '"3181161784712000"', status: 'confirmed', ...e })) }),
        ...(inRange.length > max || state.nextPageToken !== undefined ? { nextPageToken: state.nextPageToken ?? 'CigKGjZwMmsxYzltMG84cRgBIICAgICA' } : {})
      })
    })
  ]
  return { handlers, state, consent, expireAccessTokens, revokeGrant, refreshTokens }
}
