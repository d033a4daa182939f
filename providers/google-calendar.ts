import { calendar, type calendar_v3 as CalendarApi } from '@googleapis/calendar'
import { CodeChallengeMethod, OAuth2Client } from 'google-auth-library'
import { AppError } from '../plugins/errors.js'
import { CALENDAR_SCOPE, type CalendarEventValue } from '../schemas/integrations.js'
import { ProviderError } from './provider-error.js'

/** Only these fields of an event are read from Google: nothing of descriptions, attendees or attachments. */
const EVENT_FIELDS = 'items(id,summary,start,end,location,status),nextPageToken'

export interface GoogleSettings {
  clientId: string
  clientSecret: string
  redirectUri: string
  /** GOOGLE_OAUTH_BASE_URL: `{base}/token` and `{base}/revoke`. */
  oauthBaseUrl: string
  /** GOOGLE_CALENDAR_BASE_URL: `{base}/calendar/v3/…`. */
  calendarBaseUrl: string
  timeoutMs: number
}

/** What a grant gives: the refresh token (kept, sealed) and the scopes granted. */
export interface Grant { refreshToken: string, scopes: string[] }
export interface AccessToken { accessToken: string, expiresAt: Date }
export interface EventRange { from: Date, to: Date, limit: number }
export interface EventPage { events: CalendarEventValue[], truncated: boolean }

/** A Google call's failure, from gaxios' error: status, OAuth `error`, a quota reason, or a timeout / network failure. */
interface GoogleFailure { status?: number, oauthError?: string, rateLimited: boolean, timeout: boolean }
function failureOf (err: unknown): GoogleFailure {
  const e = err as { code?: string, response?: { status?: number, data?: unknown } }
  const data = e.response?.data as { error?: unknown } | undefined
  return {
    status: e.response?.status,
    oauthError: typeof data?.error === 'string' ? data.error : undefined,
    // The Calendar API's 403 for quotas is a wait, not a lost grant.
    rateLimited: /"reason":"(rateLimitExceeded|userRateLimitExceeded|quotaExceeded)"/.test(JSON.stringify(data)),
    // gaxios reports its own timeout (the request's AbortSignal.timeout) as code TimeoutError.
    timeout: e.code === 'TimeoutError'
  }
}

/** The contract's error for a failure no caller handles itself. Google's own wording is never passed on. */
function unavailable (what: string, failure: GoogleFailure): AppError {
  if (failure.timeout) return new ProviderError('PROVIDER_TIMEOUT', `Google did not answer ${what} in time: retry shortly.`)
  if (failure.status === undefined || failure.status === 429 || failure.status >= 500 || failure.rateLimited) {
    return new ProviderError('PROVIDER_UNAVAILABLE', `Google cannot be reached for ${what} right now: retry shortly.`)
  }
  if (failure.oauthError === 'invalid_client') {
    return new ProviderError('PROVIDER_ERROR', `Google refused this service's OAuth client for ${what} (the operator's GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET).`)
  }
  return new ProviderError('PROVIDER_ERROR', `Google refused ${what} (HTTP ${failure.status}).`)
}
const needsReconnect = () => new AppError('INTEGRATION_NOT_CONNECTED', 'Google no longer honours this calendar connection (revoked or expired): connect Google Calendar again.')

/** A Google event in the contract's shape: title, times and place only. */
export function toEvent (item: CalendarApi.Schema$Event): CalendarEventValue | null {
  const start = item.start?.dateTime ?? item.start?.date
  const end = item.end?.dateTime ?? item.end?.date
  if (typeof item.id !== 'string' || typeof start !== 'string' || typeof end !== 'string' || item.status === 'cancelled') return null
  return {
    id: item.id,
    title: typeof item.summary === 'string' && item.summary !== '' ? item.summary : '(no title)',
    start,
    end,
    allDay: item.start?.dateTime == null,
    ...(typeof item.location === 'string' && item.location !== '' ? { location: item.location } : {})
  }
}

/**
 * Google Calendar through Google's own libraries: google-auth-library for the authorization code with PKCE, the
 * refresh and the revocation; the Calendar API client for events (read only, `calendar.events.readonly`).
 */
export function createGoogleCalendar (settings: GoogleSettings) {
  const client = (credentials?: { refresh_token: string, access_token?: string | null, expiry_date?: number | null }) => {
    const oauth = new OAuth2Client({
      clientId: settings.clientId,
      clientSecret: settings.clientSecret,
      redirectUri: settings.redirectUri,
      endpoints: { oauth2TokenUrl: `${settings.oauthBaseUrl}/token`, oauth2RevokeUrl: `${settings.oauthBaseUrl}/revoke` },
      transporterOptions: { timeout: settings.timeoutMs },
      // A 401 to a token believed valid (revoked, clock skew) refreshes it once and retries.
      forceRefreshOnFailure: true
    })
    if (credentials !== undefined) oauth.setCredentials(credentials)
    return oauth
  }

  return {
    /** A PKCE verifier and its S256 challenge. */
    async pkce () {
      const { codeVerifier, codeChallenge } = await client().generateCodeVerifierAsync()
      return { verifier: codeVerifier, challenge: codeChallenge as string }
    },

    /** Google's consent page for this state (the browser goes there; this service never calls it): offline access (a refresh token), consent asked every time, one scope. */
    authorizationUrl (state: string, challenge: string) {
      return client().generateAuthUrl({
        access_type: 'offline',
        prompt: 'consent',
        scope: [CALENDAR_SCOPE],
        state,
        code_challenge_method: CodeChallengeMethod.S256,
        code_challenge: challenge
      })
    },

    /** Exchanges the code of the callback (with its verifier) for a grant. */
    async exchange (code: string, verifier: string): Promise<Grant> {
      let tokens
      try {
        tokens = (await client().getToken({ code, codeVerifier: verifier })).tokens
      } catch (err) {
        const failure = failureOf(err)
        if (failure.oauthError === 'invalid_grant' || failure.oauthError === 'invalid_request') {
          throw new AppError('VALIDATION_ERROR', 'Google refused the authorization code (expired, already used, or issued for another request): connect again.',
            { fields: [{ location: 'querystring', path: '/code', message: 'was refused by Google' }] })
        }
        throw unavailable('the authorization code', failure)
      }
      if (typeof tokens.refresh_token !== 'string' || tokens.refresh_token === '') {
        throw new ProviderError('PROVIDER_ERROR', 'Google granted no refresh token: connect again (the service asks for offline access with consent).')
      }
      // The access token of the exchange is not kept: the first events call gets its own.
      return { refreshToken: tokens.refresh_token, scopes: String(tokens.scope).split(' ') }
    },

    /**
     * Upcoming events of the primary calendar, soonest first. Without an access token, or with an expired one, it is
     * refreshed first (and once more if Google refuses one believed valid); `refreshed` is the new one to keep. A refused
     * refresh (invalid_grant), a 401 or a 403 for a missing scope → INTEGRATION_NOT_CONNECTED.
     */
    async events (refreshToken: string, access: AccessToken | null, range: EventRange): Promise<EventPage & { refreshed: AccessToken | null }> {
      const oauth = client(access === null
        ? { refresh_token: refreshToken }
        : { refresh_token: refreshToken, access_token: access.accessToken, expiry_date: access.expiresAt.getTime() })
      let refreshed: AccessToken | null = null
      // Emitted on each refresh; Google always answers a refresh with expires_in, so expiry_date is set.
      oauth.on('tokens', (tokens) => { refreshed = { accessToken: tokens.access_token as string, expiresAt: new Date(tokens.expiry_date as number) } })
      let data: CalendarApi.Schema$Events
      try {
        const res = await calendar({ version: 'v3', auth: oauth }).events.list({
          calendarId: 'primary',
          timeMin: range.from.toISOString(),
          timeMax: range.to.toISOString(),
          singleEvents: true,
          orderBy: 'startTime',
          maxResults: range.limit,
          fields: EVENT_FIELDS
        }, { rootUrl: settings.calendarBaseUrl, timeout: settings.timeoutMs, retry: false })
        data = res.data
      } catch (err) {
        const failure = failureOf(err)
        if (failure.oauthError === 'invalid_grant' || failure.status === 401 || (failure.status === 403 && !failure.rateLimited)) throw needsReconnect()
        throw unavailable('the calendar', failure)
      }
      const events = (data.items ?? []).map(toEvent).filter((e): e is CalendarEventValue => e !== null)
      return { events, truncated: typeof data.nextPageToken === 'string', refreshed }
    },

    /** Revokes the grant at Google; a grant Google no longer knows (400 invalid_token) counts as revoked. */
    async revoke (refreshToken: string) {
      try {
        await client().revokeToken(refreshToken)
      } catch (err) {
        const failure = failureOf(err)
        if (failure.status === 400) return
        throw unavailable('the revocation', failure)
      }
    }
  }
}

export type GoogleCalendar = ReturnType<typeof createGoogleCalendar>
