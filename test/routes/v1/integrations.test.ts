import { SignJWT } from 'jose'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { CALENDAR_SCOPE } from '../../../schemas/integrations.js'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'
import { fakeGoogle, GOOGLE_ENV } from '../../google-fake.js'
import { interceptNetwork } from '../../network.js'

const CANARY = 'CANARY-event-title-91c2'
const WEEK = { from: '2026-12-07T00:00:00Z', to: '2026-12-14T00:00:00Z' }

async function tokenHeaders (app: FastifyInstance, mode: 'live' | 'test' = 'live') {
  const user = await userWithKey(app, { mode })
  return { userId: user.userId, headers: { authorization: `Bearer ${(await mint(app, user.key)).token}` } }
}
const code = (res: { json: () => unknown }) => (res.json() as { error: { code: string } }).error.code
const reason = (res: { json: () => unknown }) => (res.json() as { error: { details?: { reason?: string } } }).error.details?.reason

async function setup (t: Test, env: Record<string, string> = {}) {
  const google = fakeGoogle()
  const network = interceptNetwork(t, ...google.handlers)
  const built = await build(t, { env: { ...GOOGLE_ENV, ...env } })
  const me = await tokenHeaders(built.app)
  const connect = async (who = me) => (await built.app.inject({ method: 'POST', url: '/v1/integrations/google-calendar/connect', headers: who.headers })).json().authorizationUrl as string
  const returnTo = async (path: string) => built.app.inject({ url: path })
  /** The whole dance: connect, Google's consent page, the browser back at the callback. */
  const connectFully = async (who = me) => returnTo(google.consent(await connect(who)).callback)
  const events = async (query = `from=${WEEK.from}&to=${WEEK.to}`, who = me) => built.app.inject({ url: `/v1/integrations/google-calendar/events?${query}`, headers: who.headers })
  return { ...built, google, network, me, connect, returnTo, connectFully, events }
}

t.test('connect → consent → callback → events, with PKCE, one scope and offline access', async (t) => {
  const { app, logs, store, google, me, connect, returnTo, events } = await setup(t)
  google.state.events = [
    { id: 'ev1', summary: `${CANARY} design review`, start: { dateTime: '2026-12-08T14:00:00+01:00', timeZone: 'Europe/Berlin' }, end: { dateTime: '2026-12-08T15:00:00+01:00' }, location: 'Room 4.12', description: 'CANARY-description', attendees: [{ email: 'x@example.com' }] },
    { id: 'ev2', start: { date: '2026-12-10' }, end: { date: '2026-12-11' } },
    { id: 'ev3', summary: 'Cancelled thing', status: 'cancelled', start: { dateTime: '2026-12-09T10:00:00Z' }, end: { dateTime: '2026-12-09T11:00:00Z' } }
  ]
  const before = await app.inject({ url: '/v1/integrations', headers: me.headers })
  t.same(before.json(), { data: [{ id: 'google-calendar', connected: false, connectedAt: null, scopes: [], status: 'not-connected', sandbox: false }] })

  const link = new URL(await connect())
  t.equal(`${link.origin}${link.pathname}`, 'https://accounts.google.com/o/oauth2/v2/auth')
  const q = link.searchParams
  t.equal(q.get('client_id'), GOOGLE_ENV.GOOGLE_CLIENT_ID)
  t.equal(q.get('redirect_uri'), GOOGLE_ENV.GOOGLE_REDIRECT_URI)
  t.equal(q.get('response_type'), 'code')
  t.equal(q.get('access_type'), 'offline')
  t.equal(q.get('prompt'), 'consent')
  t.equal(q.get('scope'), CALENDAR_SCOPE, 'one scope, read-only events')
  t.equal(q.get('code_challenge_method'), 'S256')
  t.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/)
  t.match(q.get('state'), /^[A-Za-z0-9_-]{43}$/)
  t.notMatch(await dumpAllTables(store), q.get('state') as string, 'the state is kept only as its hash')

  const consented = google.consent(link.toString())
  const done = await returnTo(consented.callback)
  t.equal(done.statusCode, 200)
  t.match(done.json(), { integration: { id: 'google-calendar', connected: true, scopes: [CALENDAR_SCOPE], status: 'ok', sandbox: false } })
  t.equal(done.headers['cache-control'], 'no-store')
  t.equal(done.headers['referrer-policy'], 'no-referrer')
  const exchange = google.state.tokenRequests[0] as URLSearchParams
  t.equal(exchange.get('grant_type'), 'authorization_code')
  t.match(exchange.get('code_verifier'), /^[A-Za-z0-9._~-]{43,128}$/, 'the verifier goes only to the token endpoint')

  const res = await events()
  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    data: [
      { id: 'ev1', title: `${CANARY} design review`, start: '2026-12-08T14:00:00+01:00', end: '2026-12-08T15:00:00+01:00', allDay: false, location: 'Room 4.12' },
      { id: 'ev2', title: '(no title)', start: '2026-12-10', end: '2026-12-11', allDay: true }
    ],
    from: '2026-12-07T00:00:00.000Z',
    to: '2026-12-14T00:00:00.000Z',
    truncated: false
  })
  const asked = google.state.eventRequests[0] as URL
  t.equal(asked.searchParams.get('singleEvents'), 'true')
  t.equal(asked.searchParams.get('orderBy'), 'startTime')
  t.equal(asked.searchParams.get('maxResults'), '25')
  t.match(asked.searchParams.get('fields'), /^items\(id,summary,start,end,location,status\)/, 'only what is shown is read from Google')
  t.equal(google.state.refreshes, 1, 'the first events call gets an access token')
  t.equal((await events()).statusCode, 200)
  t.equal(google.state.refreshes, 1, 'which is kept (sealed) for the next ones while it lasts')
  t.same((await events('from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z')).json().data, [], 'an empty day')

  const listed = (await app.inject({ url: '/v1/integrations', headers: me.headers })).json()
  t.match(listed, { data: [{ connected: true, status: 'ok', connectedAt: /Z$/ }] })
  const audit = await app.audit.list({ action: 'integration.connected', target: 'integration:google-calendar', actor: `user:${me.userId}`, limit: 5 })
  t.equal(audit.events.length, 1)

  const tables = await dumpAllTables(store)
  t.notMatch(tables, CANARY, 'event titles are never stored')
  t.notMatch(tables, 'CANARY-description')
  for (const token of google.refreshTokens) t.notMatch(tables, token, 'the refresh token is stored only sealed')
  t.notMatch(logs.text, CANARY, 'nor logged')
  t.notMatch(logs.text, q.get('state') as string, 'the state never reaches a log line')
  t.notMatch(logs.text, consented.code, 'nor the authorization code')
  t.notMatch(logs.text, exchange.get('code_verifier') as string, 'nor the verifier')
  for (const token of google.refreshTokens) t.notMatch(logs.text, token)
})

t.test('access tokens are refreshed on demand; invalid_grant → needs-reconnect and 409', async (t) => {
  const { app, store, google, me, connectFully, events } = await setup(t)
  await connectFully()
  t.equal((await events()).statusCode, 200)
  t.equal(google.state.refreshes, 1)
  // An hour later: the stored access token has expired, and is refreshed before the events are asked for.
  await store.query("UPDATE integrations SET access_expires_at = now() - interval '1 minute' WHERE user_id = $1", [me.userId])
  const callsBefore = google.state.eventRequests.length
  t.equal((await events()).statusCode, 200, 'an expired access token is refreshed')
  t.equal(google.state.refreshes, 2)
  t.equal(google.state.eventRequests.length, callsBefore + 1, 'without a refused call first')
  const refresh = google.state.tokenRequests.at(-1) as URLSearchParams
  t.equal(refresh.get('grant_type'), 'refresh_token')
  t.equal((await events()).statusCode, 200)
  t.equal(google.state.refreshes, 2, 'the refreshed token is kept and used again')
  t.notMatch(await dumpAllTables(store), (refresh.get('refresh_token') as string), 'kept sealed')
  // Google refuses an access token the service believes valid (revoked on its side): refreshed once, then retried.
  google.expireAccessTokens()
  t.equal((await events()).statusCode, 200, 'a refused access token is refreshed')
  t.equal(google.state.refreshes, 3)

  // The user removes the app in their Google account.
  for (const token of [...google.refreshTokens]) google.revokeGrant(token)
  google.expireAccessTokens()
  const lost = await events()
  t.equal(lost.statusCode, 409)
  t.equal(code(lost), 'INTEGRATION_NOT_CONNECTED')
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ connected: true, status: 'needs-reconnect' }] })
  const calls = google.state.tokenRequests.length
  t.equal(code(await events()), 'INTEGRATION_NOT_CONNECTED')
  t.equal(google.state.tokenRequests.length, calls, 'Google is not asked again until the user reconnects')

  t.equal((await connectFully()).statusCode, 200, 'connecting again heals it')
  t.equal((await events()).statusCode, 200)
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ status: 'ok' }] })
})

t.test('the state: missing, forged, replayed, expired, or denied by the user', async (t) => {
  const { app, store, google, connect, returnTo, me } = await setup(t)
  const missing = await returnTo('/v1/integrations/google-calendar/callback?code=abc')
  t.equal(missing.statusCode, 400)
  t.equal(reason(missing), 'invalid_state')
  const forged = await returnTo('/v1/integrations/google-calendar/callback?code=abc&state=forged-state-of-nobody')
  t.equal(forged.statusCode, 400)
  t.equal(reason(forged), 'invalid_state')

  const first = google.consent(await connect())
  t.equal((await returnTo(first.callback)).statusCode, 200)
  const replayed = await returnTo(first.callback)
  t.equal(replayed.statusCode, 400, 'a state works once')
  t.equal(reason(replayed), 'invalid_state')

  const late = google.consent(await connect())
  await store.query("UPDATE oauth_states SET expires_at = now() - interval '1 second'")
  const expired = await returnTo(late.callback)
  t.equal(expired.statusCode, 400)
  t.equal(reason(expired), 'invalid_state')

  const declined = new URL(await connect())
  const denied = await returnTo(`/v1/integrations/google-calendar/callback?error=access_denied&state=${declined.searchParams.get('state') as string}`)
  t.equal(denied.statusCode, 409)
  t.equal(code(denied), 'INTEGRATION_NOT_CONNECTED')
  t.equal(reason(denied), 'access_denied')
  const odd = new URL(await connect())
  const other = await returnTo(`/v1/integrations/google-calendar/callback?error=${encodeURIComponent('<script>CANARY</script>')}&state=${odd.searchParams.get('state') as string}`)
  t.equal(reason(other), 'google_error')
  t.notMatch(other.body, 'CANARY', 'Google\'s error text is never echoed')
  const noCode = new URL(await connect())
  t.equal(reason(await returnTo(`/v1/integrations/google-calendar/callback?state=${noCode.searchParams.get('state') as string}`)), 'missing_code')
  t.equal(google.state.tokenRequests.length, 1, 'only the one good callback reached Google')
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ connected: true }] })
  t.equal((await store.query('SELECT count(*)::int AS n FROM oauth_states')).rows[0]?.n, 0, 'every state was consumed')
})

t.test('a code issued for another connect (wrong PKCE verifier) is refused, as is a code Google does not know', async (t) => {
  const { google, connect, returnTo } = await setup(t)
  const a = new URL(await connect())
  const b = google.consent(await connect())
  // The code of connect B comes back with the state of connect A: A's verifier does not match B's challenge.
  const swapped = await returnTo(`/v1/integrations/google-calendar/callback?state=${a.searchParams.get('state') as string}&code=${encodeURIComponent(b.code)}`)
  t.equal(swapped.statusCode, 400)
  t.equal(reason(swapped), 'code_refused')
  const unknown = new URL(await connect())
  const bogus = await returnTo(`/v1/integrations/google-calendar/callback?state=${unknown.searchParams.get('state') as string}&code=4/0Anotacode`)
  t.equal(reason(bogus), 'code_refused')
})

t.test('the token endpoint down, refusing the client, or slow: a clear 5xx and nothing stored', async (t) => {
  const { app, google, connect, returnTo, me } = await setup(t, { GOOGLE_TIMEOUT_MS: '300' })
  for (const [failure, status, expected] of [['down', 503, 'google_unavailable'], ['network', 503, 'google_unavailable'], ['invalid_client', 502, 'google_error'], ['slow', 504, 'google_unavailable']] as const) {
    google.state.tokenFailure = failure
    const res = await returnTo(google.consent(await connect()).callback)
    t.equal(res.statusCode, status, failure)
    t.equal(reason(res), expected, failure)
    t.notMatch(res.body, 'was not found', `${failure}: Google's wording is not passed on`)
  }
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ connected: false }] })
})

t.test('Google granting no refresh token: a clear 502, nothing kept', async (t) => {
  const { app, google, connect, returnTo, me } = await setup(t)
  google.state.omitRefreshToken = true
  const res = await returnTo(google.consent(await connect()).callback)
  t.equal(res.statusCode, 502)
  t.equal(reason(res), 'google_error')
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ connected: false }] })
})

t.test('Google set up when the connect started and not at the callback (a configuration change in between)', async (t) => {
  const { connect } = await setup(t)
  const google = fakeGoogle()
  const link = await connect()
  const { app } = await build(t)
  const res = await app.inject({ url: google.consent(link).callback })
  t.equal(res.statusCode, 503)
  t.equal(code(res), 'PROVIDER_NOT_CONFIGURED')
  t.equal(reason(res), 'google_error')
})

t.test('a scope left unticked on the consent page: nothing kept, the grant revoked', async (t) => {
  const { app, google, connect, returnTo, me } = await setup(t)
  google.state.grantedScope = 'openid'
  const res = await returnTo(google.consent(await connect()).callback)
  t.equal(res.statusCode, 409)
  t.equal(reason(res), 'scope_not_granted')
  t.equal(google.state.revoked.length, 1)
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ connected: false }] })
})

t.test('INTEGRATIONS_RETURN_URL: the browser goes back to the app with the outcome', async (t) => {
  const { google, connect, returnTo } = await setup(t, { INTEGRATIONS_RETURN_URL: 'https://app.example.com/settings?tab=integrations' })
  const ok = await returnTo(google.consent(await connect()).callback)
  t.equal(ok.statusCode, 302)
  t.equal(ok.headers.location, 'https://app.example.com/settings?tab=integrations&integration=google-calendar&status=connected')
  const bad = await returnTo('/v1/integrations/google-calendar/callback?state=nope&code=x')
  t.equal(bad.statusCode, 302)
  t.equal(bad.headers.location, 'https://app.example.com/settings?tab=integrations&integration=google-calendar&error=invalid_state')
  google.state.tokenFailure = 'down'
  t.match((await returnTo(google.consent(await connect()).callback)).headers.location, /error=google_unavailable$/)
})

t.test('disconnect revokes at Google and forgets; Google unreachable keeps the connection', async (t) => {
  const { app, store, google, me, connectFully, events } = await setup(t)
  await connectFully()
  const [refresh] = [...google.refreshTokens]
  google.state.revokeFailure = 'down'
  const kept = await app.inject({ method: 'DELETE', url: '/v1/integrations/google-calendar', headers: me.headers })
  t.equal(kept.statusCode, 503)
  t.equal((await events()).statusCode, 200, 'still connected')
  google.state.revokeFailure = null
  const gone = await app.inject({ method: 'DELETE', url: '/v1/integrations/google-calendar', headers: me.headers })
  t.equal(gone.statusCode, 204)
  t.same(google.state.revoked, [refresh], 'the refresh token was revoked at Google')
  t.equal((await store.query('SELECT count(*)::int AS n FROM integrations WHERE user_id = $1', [me.userId])).rows[0]?.n, 0, 'the stored token is deleted')
  t.equal(code(await events()), 'INTEGRATION_NOT_CONNECTED')
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/integrations/google-calendar', headers: me.headers })).statusCode, 404)
  t.equal((await app.audit.list({ action: 'integration.disconnected', actor: `user:${me.userId}`, limit: 5 })).events.length, 1)
})

t.test('another user sees none of it: their list, events and disconnect', async (t) => {
  const { app, connectFully, events } = await setup(t)
  await connectFully()
  const other = await tokenHeaders(app)
  t.match((await app.inject({ url: '/v1/integrations', headers: other.headers })).json(), { data: [{ connected: false }] })
  t.equal(code(await events(undefined, other)), 'INTEGRATION_NOT_CONNECTED')
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/integrations/google-calendar', headers: other.headers })).statusCode, 404)
  t.equal((await events()).statusCode, 200, 'the owner\'s connection is untouched')
})

t.test('the Calendar API failing: a lost grant is needs-reconnect, an outage or a quota a 503, slowness a 504', async (t) => {
  const { google, connectFully, events } = await setup(t, { GOOGLE_TIMEOUT_MS: '300' })
  await connectFully()
  google.state.eventsFailure = 500
  t.equal((await events()).statusCode, 503)
  google.state.eventsFailure = 404
  t.equal(code(await events()), 'PROVIDER_ERROR')
  google.state.eventsFailure = 'rate-limited'
  t.equal((await events()).statusCode, 503)
  google.state.eventsFailure = 'slow'
  t.equal((await events()).statusCode, 504)
  google.state.eventsFailure = 403
  const scope = await events()
  t.equal(code(scope), 'INTEGRATION_NOT_CONNECTED', 'the scope was taken away')
})

t.test('a 401 from the Calendar API with a fresh token means the grant is gone', async (t) => {
  const { google, connectFully, events } = await setup(t)
  await connectFully()
  google.state.eventsFailure = 401
  t.equal(code(await events()), 'INTEGRATION_NOT_CONNECTED')
})

t.test('bad ranges and limits: clear 400s', async (t) => {
  const { connectFully, events, google } = await setup(t)
  await connectFully()
  const bad = ['from=2026-12-01', 'from=yesterday', 'to=2026-13-01T00:00:00Z', `from=${WEEK.to}&to=${WEEK.from}`, 'from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z', 'from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z', 'limit=0', 'limit=1000', 'calendar=other']
  for (const query of bad) {
    const res = await events(query)
    t.equal(res.statusCode, 400, query)
    t.equal(code(res), 'VALIDATION_ERROR', query)
  }
  t.equal(google.state.eventRequests.length, 0, 'none reached Google')
  const defaults = await events('')
  const body = defaults.json()
  t.equal(Date.parse(body.to) - Date.parse(body.from), 7 * 86_400_000, 'from now, for 7 days')
  google.state.events = Array.from({ length: 5 }, (_, i) => ({ id: `e${i}`, summary: `e${i}`, start: { dateTime: `2026-12-${String(i + 7).padStart(2, '0')}T10:00:00Z` }, end: { dateTime: `2026-12-${String(i + 7).padStart(2, '0')}T11:00:00Z` } }))
  const limited = (await events(`from=${WEEK.from}&to=${WEEK.to}&limit=3`)).json()
  t.equal(limited.data.length, 3)
  t.equal(limited.truncated, true)
})

t.test('live connects without Google set up: PROVIDER_NOT_CONFIGURED; GOOGLE_* go together', async (t) => {
  const { app } = await build(t)
  const me = await tokenHeaders(app)
  const res = await app.inject({ method: 'POST', url: '/v1/integrations/google-calendar/connect', headers: me.headers })
  t.equal(res.statusCode, 503)
  t.equal(code(res), 'PROVIDER_NOT_CONFIGURED')
  await t.rejects(build(t, { env: { GOOGLE_CLIENT_ID: 'x' } }), { message: /GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI go together/ })
})

t.test('test mode: the sandbox calendar, the whole flow without Google', async (t) => {
  const { app, network } = await setup(t)
  const me = await tokenHeaders(app, 'test')
  const link = new URL((await app.inject({ method: 'POST', url: '/v1/integrations/google-calendar/connect', headers: me.headers })).json().authorizationUrl)
  t.equal(`${link.origin}${link.pathname}`, GOOGLE_ENV.GOOGLE_REDIRECT_URI, 'straight to the callback')
  const done = await app.inject({ url: `${link.pathname}${link.search}` })
  t.match(done.json(), { integration: { connected: true, sandbox: true, status: 'ok', scopes: [CALENDAR_SCOPE] } })
  const res = await app.inject({ url: `/v1/integrations/google-calendar/events?from=${WEEK.from}&to=2026-12-09T00:00:00Z`, headers: me.headers })
  t.same(res.json().data.map((e: { title: string, start: string }) => `${e.start} ${e.title}`), [
    '2026-12-07T09:30:00.000Z Team stand-up',
    '2026-12-08T09:30:00.000Z Team stand-up',
    '2026-12-08T14:00:00.000Z Design review'
  ])
  t.equal(network.seen.length, 0, 'nothing went to Google')
  const forged = await app.inject({ url: `/v1/integrations/google-calendar/callback?state=${link.searchParams.get('state') as string}&code=another` })
  t.equal(forged.statusCode, 400, 'the state was used')
  const fresh = new URL((await app.inject({ method: 'POST', url: '/v1/integrations/google-calendar/connect', headers: me.headers })).json().authorizationUrl)
  const wrongCode = await app.inject({ url: `/v1/integrations/google-calendar/callback?state=${fresh.searchParams.get('state') as string}&code=another` })
  t.equal(reason(wrongCode), 'code_refused', 'the sandbox takes only its own code')
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/integrations/google-calendar', headers: me.headers })).statusCode, 204)
})

t.test('the user\'s data: listed without tokens in the export; deleting it revokes the grant', async (t) => {
  const { app, google, me, connectFully } = await setup(t)
  await connectFully()
  const exported = await app.inject({ url: '/v1/ai/me/data', headers: me.headers })
  t.match(exported.json().sections.integrations, [{ id: 'google-calendar', connected: true, mode: 'live' }])
  for (const token of google.refreshTokens) t.notMatch(exported.body, token, 'no token in the export')
  const [refresh] = [...google.refreshTokens]
  const deleted = await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers: me.headers })
  t.equal(deleted.json().deleted.integrations, 1)
  t.same(google.state.revoked, [refresh])
})

t.test('deleting a user\'s data: a sandbox connection goes, a grant Google cannot revoke now goes too (logged)', async (t) => {
  const { app, logs, google, me, connectFully } = await setup(t)
  await connectFully()
  const tester = await tokenHeaders(app, 'test')
  const link = new URL((await app.inject({ method: 'POST', url: '/v1/integrations/google-calendar/connect', headers: tester.headers })).json().authorizationUrl)
  await app.inject({ url: `${link.pathname}${link.search}` })
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers: tester.headers })).json().deleted.integrations, 1)
  google.state.revokeFailure = 'down'
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers: me.headers })).json().deleted.integrations, 1, 'deleted here whatever Google says')
  t.match(logs.text, 'could not revoke a Google grant being dropped')
})

t.test('with AUTH_COOKIE, a callback in a browser signed in as another user is refused (a link sent to a victim)', async (t) => {
  const secret = 'idp-secret-for-the-cookie-test-0123456789'
  const issuer = 'https://idp.example'
  const { app, google, me, connect, returnTo } = await setup(t, {
    IDENTITY_PROVIDERS: JSON.stringify([{ issuer, audience: 'web', secret }]),
    AUTH_COOKIE: 'session'
  })
  const session = async (sub: string, exp: string | number = '5m') => `session=${await new SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' }).setIssuer(issuer).setAudience('web').setExpirationTime(exp).sign(new TextEncoder().encode(secret))}`
  const inBrowser = async (path: string, cookie: string) => app.inject({ url: path, headers: { cookie } })

  const victim = await inBrowser(google.consent(await connect()).callback, await session('the-victim'))
  t.equal(victim.statusCode, 400)
  t.equal(reason(victim), 'invalid_state')
  t.match((await app.inject({ url: '/v1/integrations', headers: me.headers })).json(), { data: [{ connected: false }] }, 'nothing tied to the sender')

  t.equal((await inBrowser(google.consent(await connect()).callback, await session(me.userId))).statusCode, 200, 'the same user connects')
  t.equal((await inBrowser(google.consent(await connect()).callback, await session(me.userId, Math.floor(Date.now() / 1000) - 60))).statusCode, 200, 'an expired session says nothing: the state decides')
  t.equal((await inBrowser(google.consent(await connect()).callback, 'other=1')).statusCode, 200, 'no session cookie: the state decides')
  t.equal((await returnTo(google.consent(await connect()).callback)).statusCode, 200)
})
