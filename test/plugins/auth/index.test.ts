import { exportSPKI } from 'jose'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { createIdentityVerifier } from '../../../plugins/auth/identity-providers.js'
import { adminHeaders, build, mint, newUserId, userWithKey } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { JWKS_URL, jwksHandler, PORTAL_AUDIENCE, PORTAL_ISSUER, PORTAL_SECRET, portalKey, signPortal, signPortalHs, tamper, unsignedToken } from '../../portal-tokens.js'

const JWKS_ENV = { PORTAL_JWKS_URL: JWKS_URL, PORTAL_JWT_ISSUER: PORTAL_ISSUER, PORTAL_JWT_AUDIENCE: PORTAL_AUDIENCE }

/** A feature route for these tests (the real ones arrive with the features): it needs an AI token with the feature. */
async function featureRoute (app: FastifyInstance) {
  app.post('/v1/ai/test-feature', { config: { feature: 'background-removal' } }, async (request) => ({ userId: request.principal?.userId, mode: request.principal?.mode }))
}

const mintWith = (app: FastifyInstance, credential: string) =>
  app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${credential}` } })
const code = (res: { json: () => unknown }) => (res.json() as { error: { code: string } }).error.code

t.test('portal tokens from a JWKS (RS256 and ES256) mint live AI tokens', async (t) => {
  const rsa = await portalKey('RS256', 'rsa-1')
  const ec = await portalKey('ES256', 'ec-1')
  const jwks = { keys: [rsa.jwk, ec.jwk], hits: 0 }
  const { seen } = interceptNetwork(t, jwksHandler(jwks))
  const { app } = await build(t, { env: JWKS_ENV, register: featureRoute })
  const userId = newUserId()
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro' } })

  const viaRsa = await mintWith(app, await signPortal(rsa, { sub: userId }))
  t.equal(viaRsa.statusCode, 201)
  t.match(viaRsa.json(), { mode: 'live', plan: 'pro' })
  t.equal((await mintWith(app, await signPortal(ec, { sub: userId }))).statusCode, 201)
  t.equal(jwks.hits, 1, 'the key set is fetched once and cached')
  t.equal(seen[0]?.method, 'GET')

  const feature = await app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${viaRsa.json().token}` } })
  t.same(feature.json(), { userId, mode: 'live' })
})

t.test('security: every forged, expired or misplaced credential gets its exact code', async (t) => {
  const rsa = await portalKey('RS256', 'rsa-1')
  const stranger = await portalKey('RS256', 'rsa-1')
  interceptNetwork(t, jwksHandler({ keys: [rsa.jwk], hits: 0 }))
  const { app, logs } = await build(t, { env: JWKS_ENV, register: featureRoute })
  const userId = newUserId()
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro' } })
  const now = Math.floor(Date.now() / 1000)

  const cases: Array<[string, string, string]> = [
    ['expired portal token', await signPortal(rsa, { sub: userId }, { exp: now - 60 }), 'TOKEN_EXPIRED'],
    ['wrong aud', await signPortal(rsa, { sub: userId }, { aud: 'another-app' }), 'UNAUTHENTICATED'],
    ['wrong iss', await signPortal(rsa, { sub: userId }, { iss: 'https://evil.example' }), 'UNAUTHENTICATED'],
    ['alg none', unsignedToken({ sub: userId, iss: PORTAL_ISSUER, aud: PORTAL_AUDIENCE, exp: now + 300 }), 'UNAUTHENTICATED'],
    ['HS256 signed with the RS256 public key', await signPortalHs(await exportSPKI(rsa.publicKey), { sub: userId }), 'UNAUTHENTICATED'],
    ['tampered payload', tamper(await signPortal(rsa, { sub: newUserId() }), (c) => { c.sub = userId }), 'UNAUTHENTICATED'],
    ['signed by another key with the same kid', await signPortal(stranger, { sub: userId }), 'UNAUTHENTICATED'],
    ['not before in the future', await signPortal(rsa, { sub: userId, nbf: now + 600 }), 'UNAUTHENTICATED'],
    ['no subject', await signPortal(rsa, { sub: '' }), 'UNAUTHENTICATED'],
    ['garbage', 'not-a-token', 'UNAUTHENTICATED'],
    ['malformed API key', 'pak_test_short', 'UNAUTHENTICATED']
  ]
  for (const [name, credential, expected] of cases) {
    const res = await mintWith(app, credential)
    t.equal(res.statusCode, 401, `${name}: 401`)
    t.equal(code(res), expected, `${name}: ${expected}`)
    t.notOk(logs.text.includes(credential), `${name}: the credential is not logged`)
  }

  const missing = await app.inject({ method: 'POST', url: '/v1/ai/tokens' })
  t.equal(code(missing), 'UNAUTHENTICATED')
  t.equal(missing.headers['www-authenticate'], 'Bearer')
  const basic = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: 'Basic dXNlcjpwdw==' } })
  t.equal(code(basic), 'UNAUTHENTICATED')
})

t.test('security: AI tokens on feature routes', async (t) => {
  const rsa = await portalKey('RS256', 'rsa-1')
  interceptNetwork(t, jwksHandler({ keys: [rsa.jwk], hits: 0 }))
  const { app } = await build(t, { env: JWKS_ENV, register: featureRoute })
  const { userId, key } = await userWithKey(app, { mode: 'test' })
  const call = (credential: string) => app.inject({ method: 'POST', url: '/v1/ai/test-feature', headers: { authorization: `Bearer ${credential}` } })

  const { token } = await mint(app, key)
  t.same((await call(token)).json(), { userId, mode: 'test' })

  const portal = await call(await signPortal(rsa, { sub: userId }))
  t.equal(portal.statusCode, 401)
  t.match(portal.json().error, { code: 'UNAUTHENTICATED', message: /needs an AI token/ })
  t.equal(code(await call(key)), 'UNAUTHENTICATED', 'an API key is not an AI token')

  const expired = app.jwt.sign({ sub: userId, plan: 'pro', features: ['background-removal'], mode: 'test', jti: 'j-1' }, { expiresIn: -10 })
  t.equal(code(await call(expired)), 'TOKEN_EXPIRED', 'an AI token after its lifetime')
  t.equal(code(await call(tamper(token, (c) => { c.plan = 'team' }))), 'UNAUTHENTICATED', 'a tampered AI token')
  t.equal(code(await call(tamper(token, (c) => { c.mode = 'live' }))), 'UNAUTHENTICATED', 'a test token turned live')
  const wrongAud = app.jwt.sign({ sub: userId, plan: 'pro', features: ['background-removal'], mode: 'test', jti: 'j-2' }, { aud: 'someone-else' })
  t.equal(code(await call(wrongAud)), 'UNAUTHENTICATED', 'an AI token for another audience')
  t.equal(code(await call(unsignedToken({ sub: userId, aud: 'portal-ai', iss: 'portal-ai-api', jti: 'x', exp: 9_999_999_999, plan: 'pro', features: ['background-removal'], mode: 'live' }))), 'UNAUTHENTICATED', 'alg none AI token')

  const narrowed = await mint(app, key, ['settings-assistant'])
  const outOfScope = await call(narrowed.token)
  t.equal(outOfScope.statusCode, 403)
  t.match(outOfScope.json().error, { code: 'NOT_ENTITLED', details: { feature: 'background-removal' } })
  const retired = app.jwt.sign({ sub: userId, plan: 'retired', features: ['background-removal'], mode: 'test', jti: 'j-4' })
  t.equal(code(await call(retired)), 'NOT_ENTITLED', 'a plan no longer offered has no features')
  const oddClaims = app.jwt.sign({ sub: userId, plan: 'pro', features: 'background-removal', mode: 'other', jti: 'j-3' })
  t.equal(code(await call(oddClaims)), 'NOT_ENTITLED', 'features that are not a list give no feature')
})

t.test('security: revoked keys and suspended licenses stop minting at once', async (t) => {
  const { app } = await build(t)
  const { userId, key, keyId } = await userWithKey(app)
  t.equal((await mintWith(app, key)).statusCode, 201)
  await app.inject({ method: 'DELETE', url: `/v1/admin/keys/${keyId}`, headers: adminHeaders })
  const revoked = await mintWith(app, key)
  t.equal(revoked.statusCode, 401)
  t.match(revoked.json().error, { code: 'UNAUTHENTICATED', message: 'The API key is unknown or revoked.' })

  const other = await userWithKey(app)
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${other.userId}`, headers: adminHeaders, payload: { plan: 'pro', status: 'suspended' } })
  const suspended = await mintWith(app, other.key)
  t.equal(suspended.statusCode, 403)
  t.equal(code(suspended), 'LICENSE_INACTIVE')

  // A revoked key no longer names its user: that denial is anonymous; a suspended user is named.
  const denied = await app.inject({ url: `/v1/admin/audit?actor=user:${other.userId}&action=access.denied`, headers: adminHeaders })
  t.match(denied.json().events, [{ actor: `user:${other.userId}`, action: 'access.denied', outcome: 'LICENSE_INACTIVE', target: 'POST /v1/ai/tokens' }])
  const anonymous = await app.inject({ url: '/v1/admin/audit?actor=anonymous&action=access.denied&limit=200', headers: adminHeaders })
  t.ok(anonymous.json().events.some((e: { requestId: string, outcome: string }) => e.requestId === revoked.headers['x-request-id'] && e.outcome === 'UNAUTHENTICATED'))
  const minted = await app.inject({ url: `/v1/admin/audit?target=user:${userId}&action=token.minted`, headers: adminHeaders })
  t.match(minted.json().events, [{ actor: `user:${userId}`, outcome: 'ok', details: { plan: 'pro', mode: 'test', credential: 'api-key', keyId } }])
})

t.test('an HS256 portal secret: only HS256 tokens signed with it', async (t) => {
  const { app } = await build(t, { env: { PORTAL_JWT_SECRET: PORTAL_SECRET, PORTAL_JWT_ISSUER: PORTAL_ISSUER, PORTAL_JWT_AUDIENCE: PORTAL_AUDIENCE } })
  const userId = newUserId()
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'team' } })
  const ok = await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: userId }))
  t.equal(ok.statusCode, 201)
  t.equal(ok.json().plan, 'team')
  t.equal(code(await mintWith(app, await signPortalHs('another-secret-abcdefghijklmnopqrstuvwxyz', { sub: userId }))), 'UNAUTHENTICATED')
  t.equal(code(await mintWith(app, await signPortal(await portalKey('RS256', 'k'), { sub: userId }))), 'UNAUTHENTICATED', 'an RS256 token is refused')
  t.equal(code(await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: userId }, { exp: Math.floor(Date.now() / 1000) - 60 }))), 'TOKEN_EXPIRED')
})

t.test('ENTITLEMENTS_SOURCE=claims takes the plan from the portal token', async (t) => {
  const { app } = await build(t, { env: { PORTAL_JWT_SECRET: PORTAL_SECRET, ENTITLEMENTS_SOURCE: 'claims' } })
  const userId = newUserId()
  const res = await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: userId, plan: 'free' }))
  t.equal(res.statusCode, 201)
  t.equal(res.json().plan, 'free')
  t.equal(code(await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: userId, plan: 42 }))), 'LICENSE_INACTIVE')
  t.equal(code(await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: userId, plan: 'platinum' }))), 'LICENSE_INACTIVE')
  t.equal(code(await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: userId }))), 'LICENSE_INACTIVE', 'no claim and no license row')
})

t.test('without portal configuration, portal tokens are refused with a hint', async (t) => {
  const { app } = await build(t)
  const res = await mintWith(app, await signPortalHs(PORTAL_SECRET, { sub: 'u' }))
  t.equal(res.statusCode, 401)
  t.match(res.json().error.message, /use an API key/)
})

t.test('the JWKS endpoint failing is a 503, not a 401', async (t) => {
  let failure: 'status' | 'network' = 'status'
  interceptNetwork(t, http.get(JWKS_URL, () => failure === 'status' ? HttpResponse.json({ error: 'down' }, { status: 500 }) : HttpResponse.error()))
  const key = await portalKey('RS256', 'k')
  const status = createIdentityVerifier({ jwksUrl: JWKS_URL }, 'portal', { cooldownMs: 0 })
  await t.rejects(status(await signPortal(key, { sub: 'u' })), { code: 'PROVIDER_UNAVAILABLE' })

  const { app } = await build(t, { env: JWKS_ENV })
  failure = 'network'
  const res = await mintWith(app, await signPortal(key, { sub: 'u' }))
  t.equal(res.statusCode, 503)
  t.equal(code(res), 'PROVIDER_UNAVAILABLE')
})

t.test('key rotation: a token with a new kid makes the verifier fetch the key set again', async (t) => {
  const oldKey = await portalKey('RS256', '2026-01')
  const newKey = await portalKey('ES256', '2026-02')
  const jwks = { keys: [oldKey.jwk], hits: 0 }
  interceptNetwork(t, jwksHandler(jwks))
  const verify = createIdentityVerifier({ jwksUrl: JWKS_URL, issuer: PORTAL_ISSUER }, 'portal', { cooldownMs: 0 })
  t.match(await verify(await signPortal(oldKey, { sub: 'a' })), { userId: 'a' })
  jwks.keys = [oldKey.jwk, newKey.jwk]
  t.match(await verify(await signPortal(newKey, { sub: 'b' })), { userId: 'b' })
  t.equal(jwks.hits, 2)
  jwks.keys = [newKey.jwk]
  await t.rejects(verify(await signPortal(await portalKey('RS256', 'unknown'), { sub: 'c' })), { code: 'UNAUTHENTICATED' })
})

t.test('admin routes need the admin token', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/v1/admin/keys?userId=x', headers: { authorization: 'Bearer not-the-admin-token' } })
  t.equal(res.statusCode, 401)
  t.equal(code(res), 'UNAUTHENTICATED')
  const { key } = await userWithKey(app)
  t.equal(code(await app.inject({ url: '/v1/admin/keys?userId=x', headers: { authorization: `Bearer ${key}` } })), 'UNAUTHENTICATED')
})
