import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { ConfigError, loadConfig } from '../../../plugins/config.js'
import { adminHeaders, build, newUserId, TEST_SECRETS } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { JWKS_URL, jwksHandler, PORTAL_AUDIENCE, PORTAL_ISSUER, portalKey, signPortal } from '../../portal-tokens.js'

/** A Supabase project as its Auth server publishes it: issuer `https://<ref>.supabase.co/auth/v1`, ES256 keys, aud `authenticated`. */
const SUPABASE_ISSUER = 'https://abcdefghijklmnop.supabase.co/auth/v1'
const SUPABASE_JWKS = `${SUPABASE_ISSUER}/.well-known/jwks.json`
const SUPABASE = { issuer: SUPABASE_ISSUER, audience: 'authenticated', jwksUrl: SUPABASE_JWKS, requiredClaims: { role: 'authenticated' } }
const HS_SECRET = 'another-idp-hs256-secret-0123456789abcdef'
const HS_PROVIDER = { issuer: 'https://idp.example', audience: ['web', 'mobile'], secret: HS_SECRET, userIdClaim: 'user_id' }

async function supabaseKey (kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk: JWK = { ...await exportJWK(publicKey), kid, alg: 'ES256', use: 'sig', key_ops: ['verify'] }
  return { privateKey, jwk, kid }
}
type SupabaseKey = Awaited<ReturnType<typeof supabaseKey>>

/** An access token as Supabase Auth issues it (claims of its documented payload). */
async function supabaseToken (key: SupabaseKey, claims: JWTPayload = {}, exp: string | number = '1h') {
  return new SignJWT({ role: 'authenticated', aal: 'aal1', session_id: 'b2c1f1e4', email: 'canary-mail@example.com', is_anonymous: false, ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setIssuer(SUPABASE_ISSUER)
    .setAudience('authenticated')
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(key.privateKey)
}

const mintWith = (app: FastifyInstance, headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/ai/tokens', headers })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const code = (res: { json: () => unknown }) => (res.json() as { error: { code: string } }).error.code
const grant = (app: FastifyInstance, userId: string) => app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro' } })

t.test('a Supabase project (ES256 JWKS) and the portal are trusted side by side', async (t) => {
  const supa = await supabaseKey('sb-2026-11')
  const portal = await portalKey('RS256', 'portal-1')
  const supaKeys = { keys: [supa.jwk], hits: 0 }
  const portalKeys = { keys: [portal.jwk], hits: 0 }
  interceptNetwork(t, http.get(SUPABASE_JWKS, () => {
    supaKeys.hits++
    return HttpResponse.json({ keys: supaKeys.keys })
  }), jwksHandler(portalKeys))
  const { app, logs } = await build(t, {
    env: { PORTAL_JWKS_URL: JWKS_URL, PORTAL_JWT_ISSUER: PORTAL_ISSUER, PORTAL_JWT_AUDIENCE: PORTAL_AUDIENCE, IDENTITY_PROVIDERS: JSON.stringify([SUPABASE]) }
  })
  const supaUser = crypto.randomUUID()
  const portalUser = newUserId()
  await grant(app, supaUser)
  await grant(app, portalUser)

  const minted = await mintWith(app, bearer(await supabaseToken(supa, { sub: supaUser })))
  t.equal(minted.statusCode, 201)
  t.match(minted.json(), { plan: 'pro', mode: 'live' })
  const me = await app.inject({ url: '/v1/ai/entitlements', headers: bearer(minted.json().token) })
  t.equal(me.json().userId, supaUser, 'the user id is the sub claim')
  t.equal((await mintWith(app, bearer(await signPortal(portal, { sub: portalUser })))).statusCode, 201, 'the portal still signs in')
  t.equal(supaKeys.hits, 1)
  t.equal(portalKeys.hits, 1)

  const cases: Array<[string, string, string]> = [
    ['the anon role', await supabaseToken(supa, { sub: supaUser, role: 'anon' }), 'lacks the claim role=authenticated'],
    ['no role', await supabaseToken(supa, { sub: supaUser, role: undefined }), 'lacks the claim role=authenticated'],
    ['expired', await supabaseToken(supa, { sub: supaUser }, Math.floor(Date.now() / 1000) - 60), 'has expired'],
    ['another project', await new SignJWT({ sub: supaUser, role: 'authenticated' }).setProtectedHeader({ alg: 'ES256', kid: supa.kid }).setIssuer('https://other.supabase.co/auth/v1').setAudience('authenticated').setExpirationTime('1h').sign(supa.privateKey), 'portal token is not valid'],
    ['the Supabase issuer with the wrong audience', await new SignJWT({ sub: supaUser, role: 'authenticated' }).setProtectedHeader({ alg: 'ES256', kid: supa.kid }).setIssuer(SUPABASE_ISSUER).setAudience('anon').setExpirationTime('1h').sign(supa.privateKey), 'token is not valid'],
    ['HS256 with the legacy secret shape', await new SignJWT({ sub: supaUser, role: 'authenticated' }).setProtectedHeader({ alg: 'HS256' }).setIssuer(SUPABASE_ISSUER).setAudience('authenticated').setExpirationTime('1h').sign(new TextEncoder().encode(HS_SECRET)), 'token is not valid'],
    ['no subject', await supabaseToken(supa, { sub: '' }), 'names no user']
  ]
  for (const [name, token, message] of cases) {
    const res = await mintWith(app, bearer(token))
    t.equal(res.statusCode, 401, name)
    t.match(res.json().error.message, message, name)
    t.notMatch(res.body, 'canary-mail', `${name}: the token's claims are not echoed`)
  }
  t.notMatch(logs.text, 'canary-mail')
})

t.test('Supabase key rotation: an unknown kid refetches the key set, at most once per cooldown', async (t) => {
  const first = await supabaseKey('sb-old')
  const second = await supabaseKey('sb-new')
  const third = await supabaseKey('sb-newer')
  const keys = { keys: [first.jwk], hits: 0 }
  interceptNetwork(t, http.get(SUPABASE_JWKS, () => {
    keys.hits++
    return HttpResponse.json({ keys: keys.keys })
  }))
  const { app } = await build(t, { env: { IDENTITY_PROVIDERS: JSON.stringify([SUPABASE]) } })
  const user = crypto.randomUUID()
  await grant(app, user)
  t.equal((await mintWith(app, bearer(await supabaseToken(first, { sub: user })))).statusCode, 201)
  t.equal(keys.hits, 1)

  // The project rotates: the new key is published beside the old one, then used. The key set was fetched a
  // moment ago, so within the 30-second cooldown the new kid is refused without asking Supabase again…
  keys.keys = [first.jwk, second.jwk, third.jwk]
  t.equal(code(await mintWith(app, bearer(await supabaseToken(second, { sub: user })))), 'UNAUTHENTICATED', 'within the cooldown')
  t.equal(keys.hits, 1)
  // …and once the cooldown has passed (the clock moved on by 31 s), the unknown kid makes the verifier refetch.
  const realNow = Date.now
  Date.now = () => realNow() + 31_000
  t.teardown(() => { Date.now = realNow })
  t.equal((await mintWith(app, bearer(await supabaseToken(second, { sub: user })))).statusCode, 201, 'the new kid is fetched')
  t.equal(keys.hits, 2)
  t.equal((await mintWith(app, bearer(await supabaseToken(third, { sub: user })))).statusCode, 201, 'known after that fetch')
  t.equal((await mintWith(app, bearer(await supabaseToken(first, { sub: user })))).statusCode, 201, 'the old key still verifies')

  // A flood of tokens with made-up kids does not become a flood of fetches at Supabase.
  for (let i = 0; i < 5; i++) {
    const res = await mintWith(app, bearer(await supabaseToken(await supabaseKey(`forged-${i}`), { sub: user })))
    t.equal(code(res), 'UNAUTHENTICATED')
  }
  t.equal(keys.hits, 2, 'unknown kids within the cooldown are refused without refetching')
})

t.test('an HS256 provider with its own user id claim and several audiences', async (t) => {
  const { app } = await build(t, { env: { IDENTITY_PROVIDERS: JSON.stringify([HS_PROVIDER]) } })
  const user = newUserId('idp')
  await grant(app, user)
  const sign = (claims: JWTPayload, aud = 'mobile') => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer(HS_PROVIDER.issuer).setAudience(aud).setExpirationTime('5m').sign(new TextEncoder().encode(HS_SECRET))
  const res = await mintWith(app, bearer(await sign({ sub: 'not-the-id', user_id: user })))
  t.equal(res.statusCode, 201)
  t.equal((await app.inject({ url: '/v1/ai/entitlements', headers: bearer(res.json().token) })).json().userId, user)
  t.match((await mintWith(app, bearer(await sign({ sub: user })))).json().error.message, 'names no user (claim user_id)')
  t.match((await mintWith(app, bearer(await sign({ user_id: 'x'.repeat(257) })))).json().error.message, 'names no user')
  t.equal(code(await mintWith(app, bearer(await sign({ user_id: user }, 'desktop')))), 'UNAUTHENTICATED')
  // Without PORTAL_* a token of no trusted issuer gets the hint.
  const stranger = await new SignJWT({ sub: user }).setProtectedHeader({ alg: 'HS256' }).setIssuer('https://nobody.example').setExpirationTime('5m').sign(new TextEncoder().encode(HS_SECRET))
  t.match((await mintWith(app, bearer(stranger))).json().error.message, 'use an API key')
})

t.test('IDENTITY_PROVIDERS is checked at start, every problem listed, no value echoed', async (t) => {
  const problems = (value: unknown, env: Record<string, string> = {}) => {
    try {
      loadConfig({ ...TEST_SECRETS, ...env, IDENTITY_PROVIDERS: typeof value === 'string' ? value : JSON.stringify(value) })
      return []
    } catch (err) {
      t.ok(err instanceof ConfigError)
      t.notMatch((err as Error).message, HS_SECRET, 'the secret is never echoed')
      return (err as ConfigError).problems
    }
  }
  t.match(problems('{not json'), [/not valid JSON/])
  t.match(problems([]), [/1 to 16 providers/])
  t.match(problems({ issuer: 'x' }), [/JSON array/])
  t.match(problems([{ ...HS_PROVIDER, jwksUrl: SUPABASE_JWKS }]), [/entry 1: set exactly one of jwksUrl/])
  t.match(problems([{ issuer: 'https://a', audience: 'b' }]), [/entry 1: set exactly one of jwksUrl/])
  t.match(problems([{ ...HS_PROVIDER, secret: 'short' }]), [/entry 1: secret must/])
  t.match(problems([SUPABASE, { ...SUPABASE, jwksUrl: 'ftp://x' }]), [/entry 2: jwksUrl must/])
  t.match(problems([SUPABASE, { ...HS_PROVIDER, colour: 'blue' }]), [/entry 2: /])
  t.match(problems([{ ...SUPABASE, audience: undefined }]), [/entry 1: /])
  t.match(problems([SUPABASE, SUPABASE]), [/entry 2: the issuer .* is trusted twice/])
  t.match(problems([SUPABASE], { PORTAL_JWT_ISSUER: SUPABASE_ISSUER, PORTAL_JWKS_URL: JWKS_URL }), [/entry 1: the issuer .* trusted twice/])
  t.same(problems([SUPABASE, HS_PROVIDER]), [])
  const config = loadConfig({ ...TEST_SECRETS, IDENTITY_PROVIDERS: JSON.stringify([HS_PROVIDER]) })
  t.ok(config.secrets.includes(HS_SECRET), 'a provider secret is redacted from logs like every secret')
})

t.test('AUTH_COOKIE: the credential from an HTTP-only cookie, state changes only with X-Requested-With', async (t) => {
  const supa = await supabaseKey('sb-cookie')
  interceptNetwork(t, http.get(SUPABASE_JWKS, () => HttpResponse.json({ keys: [supa.jwk] })))
  const { app, logs } = await build(t, {
    env: { IDENTITY_PROVIDERS: JSON.stringify([SUPABASE]), AUTH_COOKIE: 'sb-access-token' },
    register: (app) => {
      // No GET route takes a credential yet; this one shows that a safe method needs no CSRF header.
      app.get('/v1/test/credential', { config: { auth: 'credential' } }, async (request) => ({ userId: request.credential?.userId }))
    }
  })
  const user = crypto.randomUUID()
  await grant(app, user)
  const token = await supabaseToken(supa, { sub: user })
  const cookie = `theme=dark; sb-access-token=${token}; other=1`

  const noHeader = await mintWith(app, { cookie })
  t.equal(noHeader.statusCode, 401)
  t.match(noHeader.json().error.message, 'must also send the X-Requested-With header')
  const withHeader = await mintWith(app, { cookie, 'x-requested-with': 'XMLHttpRequest' })
  t.equal(withHeader.statusCode, 201)
  t.equal((await app.inject({ url: '/v1/test/credential', headers: { cookie } })).json().userId, user, 'GET needs no CSRF header')

  t.equal(code(await mintWith(app, { cookie: 'theme=dark', 'x-requested-with': 'XMLHttpRequest' })), 'UNAUTHENTICATED', 'another cookie is no credential')
  t.equal(code(await mintWith(app, { cookie: 'sb-access-token=', 'x-requested-with': 'XMLHttpRequest' })), 'UNAUTHENTICATED', 'an empty cookie is none')
  t.equal(code(await mintWith(app, { cookie: 'sb-access-token=garbage', 'x-requested-with': 'fetch' })), 'UNAUTHENTICATED')
  // An Authorization header wins over the cookie, and needs no CSRF header (a browser never adds it on its own).
  const other = newUserId()
  await grant(app, other)
  const { json } = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId: other, mode: 'test' } })
  const viaHeader = await mintWith(app, { cookie, ...bearer(json().key) })
  t.equal(viaHeader.statusCode, 201)
  t.equal(viaHeader.json().mode, 'test', 'the API key of the header was used, not the cookie')
  t.notMatch(logs.text, token.split('.')[2] as string, 'the cookie never reaches a log line')
})

t.test('without AUTH_COOKIE cookies are ignored', async (t) => {
  const supa = await supabaseKey('sb-ignored')
  interceptNetwork(t, http.get(SUPABASE_JWKS, () => HttpResponse.json({ keys: [supa.jwk] })))
  const { app } = await build(t, { env: { IDENTITY_PROVIDERS: JSON.stringify([SUPABASE]) } })
  const res = await mintWith(app, { cookie: `sb-access-token=${await supabaseToken(supa, { sub: 'u' })}`, 'x-requested-with': 'XMLHttpRequest' })
  t.equal(res.statusCode, 401)
  t.match(res.json().error.message, 'Authorization: Bearer')
})
