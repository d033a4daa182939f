import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { createHmac } from 'node:crypto'
import { SignJWT } from 'jose'
import { ACCOUNT_ISSUER, createAccounts, MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS } from '../../../../plugins/accounts.js'
import { adminHeaders, build, dumpAllTables, mint, TEST_SECRETS, userWithKey } from '../../../helper.js'

const ON = { LOCAL_ACCOUNTS: 'on', LOCAL_ACCOUNTS_PLAN: 'pro' }
const CANARY_PASSWORD = 'CANARY-PASSWORD-6H2J long enough'
let counter = 0
/** An email no other subtest uses, with a canary in it. */
const newEmail = () => `canary-mail-${process.pid}-${++counter}@Example.COM`

const register = (app: FastifyInstance, email: string, password = CANARY_PASSWORD) =>
  app.inject({ method: 'POST', url: '/v1/auth/register', payload: { email, password } })

/** The OAuth2 password grant as a form, as Swagger UI and OAuth2 libraries send it. */
const login = (app: FastifyInstance, username: string, password: string, address = '127.0.0.1') =>
  app.inject({
    method: 'POST',
    url: '/v1/auth/login',
    remoteAddress: address,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'password', username, password, client_id: 'swagger-ui' }).toString()
  })

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('off by default: every /v1/auth route is NOT_FOUND, and the rest of the service is unchanged', async (t) => {
  const { app } = await build(t)
  for (const [method, url] of [['POST', '/v1/auth/register'], ['POST', '/v1/auth/login'], ['GET', '/v1/auth/me'], ['POST', '/v1/auth/password'], ['DELETE', '/v1/auth/me']] as const) {
    const res = await app.inject({ method, url, headers: bearer('x'), payload: method === 'POST' ? { email: 'a@b.cd', password: 'x'.repeat(12), username: 'a', currentPassword: 'x', newPassword: 'y' } : undefined })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.equal(res.json().error.code, 'NOT_FOUND')
  }
})

t.test('a LOCAL_ACCOUNTS_PLAN that is not a plan stops the service at startup', async (t) => {
  await t.rejects(build(t, { env: { ...ON, LOCAL_ACCOUNTS_PLAN: 'platinum' } }), { name: 'ConfigError', message: /LOCAL_ACCOUNTS_PLAN: "platinum" is not a plan of the plans file \(free, pro, team\)/ })
})

t.test('register, sign in with the password grant (form or JSON), read me, mint an AI token like a portal token', async (t) => {
  const { app, logs, store } = await build(t, { env: ON })
  const email = newEmail()
  const created = await register(app, `  ${email} `)
  t.equal(created.statusCode, 201, created.body)
  t.match(created.json(), { id: /^acc_[0-9A-Za-z]{16}$/, email: email.toLowerCase(), createdAt: /Z$/ })
  const again = await register(app, email.toUpperCase())
  t.equal(again.statusCode, 409, 'the same email in other case')
  t.equal(again.json().error.code, 'CONFLICT')

  const signedIn = await login(app, email.toUpperCase(), CANARY_PASSWORD)
  t.equal(signedIn.statusCode, 200, signedIn.body)
  t.equal(signedIn.headers['cache-control'], 'no-store')
  t.match(signedIn.json(), { token_type: 'bearer', expires_in: 3600, access_token: /^ey/ })
  const token = signedIn.json().access_token as string
  const asJson = await app.inject({ method: 'POST', url: '/v1/auth/login', payload: { username: email, password: CANARY_PASSWORD } })
  t.equal(asJson.statusCode, 200, 'JSON is accepted too')
  const wrongGrant = await app.inject({ method: 'POST', url: '/v1/auth/login', payload: { grant_type: 'client_credentials', username: email, password: CANARY_PASSWORD } })
  t.equal(wrongGrant.statusCode, 400)

  const denied = await login(app, email, 'not the password at all')
  t.equal(denied.statusCode, 401)
  const rows = await app.store.query<{ actor: string, target: string, outcome: string, details: unknown }>('SELECT actor, target, outcome, details FROM audit_events WHERE request_id = $1', [denied.json().error.requestId])
  t.same(rows.rows, [{ actor: 'anonymous', target: 'POST /v1/auth/login', outcome: 'UNAUTHENTICATED', details: null }], 'a failed sign-in is audited, without the email')
  const forged = await app.inject({ url: '/v1/auth/me', headers: bearer('x.y.z') })
  t.equal((await app.store.query('SELECT 1 FROM audit_events WHERE request_id = $1 AND action = $2', [forged.json().error.requestId, 'access.denied'])).rows.length, 1, 'so is a forged account token')

  const me = await app.inject({ url: '/v1/auth/me', headers: bearer(token) })
  t.same(me.json(), { ...created.json(), plan: 'pro' }, 'new accounts get LOCAL_ACCOUNTS_PLAN')

  const minted = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: bearer(token) })
  t.equal(minted.statusCode, 201, minted.body)
  t.match(minted.json(), { plan: 'pro', mode: 'live' })
  const entitlements = await app.inject({ url: '/v1/ai/entitlements', headers: bearer(minted.json().token) })
  t.equal(entitlements.json().userId, created.json().id, 'the AI token acts for the account')
  t.equal((await app.inject({ url: '/v1/auth/me', headers: bearer(minted.json().token) })).statusCode, 401, 'an AI token is not an account token')
  t.equal((await app.inject({ url: '/v1/auth/me', headers: bearer(TEST_SECRETS.ADMIN_TOKEN) })).statusCode, 401)
  t.equal((await app.inject({ url: '/v1/auth/me' })).statusCode, 401)

  const exported = await app.inject({ url: '/v1/ai/me/data', headers: bearer(minted.json().token) })
  t.same(exported.json().sections.account, created.json(), 'the account is in the data export')

  const dump = (await dumpAllTables(store)).toLowerCase()
  t.notOk(dump.includes('canary-mail'), 'the email is stored sealed, found by a keyed hash')
  t.notOk(dump.includes('canary-password'), 'the password only as an argon2id hash')
  t.match(dump, /\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  t.notOk(logs.text.toLowerCase().includes('canary-mail') || logs.text.includes('CANARY-PASSWORD'), 'neither in the logs')
})

t.test('bad input: clear errors, never a 5xx', async (t) => {
  const { app } = await build(t, { env: ON })
  const cases: Array<[string, unknown, string]> = [
    ['no @', { email: 'not-an-email', password: CANARY_PASSWORD }, '/email'],
    ['a 255-character email', { email: `${'a'.repeat(243)}@example.com`, password: CANARY_PASSWORD }, '/email'],
    ['a very long email', { email: `${'a'.repeat(5000)}@example.com`, password: CANARY_PASSWORD }, '/email'],
    ['9 characters', { email: newEmail(), password: '123456789' }, '/password'],
    ['257 characters', { email: newEmail(), password: 'p'.repeat(257) }, '/password'],
    ['the email as password', { email: 'same.as.password@example.com', password: 'Same.As.Password@example.com' }, '/password'],
    ['a number', { email: newEmail(), password: 1234567890123 }, '/password'],
    ['a field too many', { email: newEmail(), password: CANARY_PASSWORD, plan: 'team' }, '/plan']
  ]
  for (const [name, payload, path] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/auth/register', payload: payload as Record<string, unknown> })
    t.equal(res.statusCode, 400, `${name}: ${res.body}`)
    t.equal(res.json().error.details.fields[0].path, path, name)
  }
  t.equal((await register(app, newEmail(), 'p'.repeat(256))).statusCode, 201, '256 characters are fine')
  t.equal((await register(app, newEmail(), 'é'.repeat(10))).statusCode, 201, 'ten characters of two bytes each')
  const form = await app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'username=a' })
  t.equal(form.statusCode, 400, 'a grant without a password')
  const huge = await app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `username=a&password=${'x'.repeat(20_000)}` })
  t.equal(huge.statusCode, 413, 'a form over 16 KB')
  t.equal((await login(app, 'x'.repeat(5000), 'y')).statusCode, 400, 'a username longer than any email')
  t.equal((await app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'text/plain' }, payload: 'x' })).statusCode, 415)
})

t.test('a wrong password and an unknown email: the same answer, both after one argon2 verification (timing compared in one run)', async (t) => {
  const { app } = await build(t, { env: ON })
  const email = newEmail()
  await register(app, email)
  const timed = async (username: string) => {
    const start = process.hrtime.bigint()
    const res = await login(app, username, 'wrong password!', `10.0.0.${++counter % 250}`)
    return { res, ms: Number(process.hrtime.bigint() - start) / 1e6 }
  }
  const wrong = await timed(email)
  const unknown = await timed('nobody-' + email)
  t.equal(wrong.res.statusCode, 401)
  t.equal(unknown.res.statusCode, 401)
  const strip = (body: string) => ({ ...JSON.parse(body).error, requestId: undefined })
  t.same(strip(wrong.res.body), strip(unknown.res.body), 'the same code and message')
  t.same(wrong.res.headers['www-authenticate'], unknown.res.headers['www-authenticate'])
  // Medians of a few of each, interleaved: an unknown email also pays an argon2 verification, so neither is a fraction of the other.
  const samples = { wrong: [] as number[], unknown: [] as number[] }
  for (let i = 0; i < 4; i++) {
    samples.wrong.push((await timed(email)).ms)
    samples.unknown.push((await timed(`nobody-${i}-${email}`)).ms)
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
  const ratio = median(samples.unknown) / median(samples.wrong)
  t.ok(ratio > 0.33 && ratio < 3, `unknown / wrong = ${ratio.toFixed(2)} (${median(samples.unknown).toFixed(1)} ms / ${median(samples.wrong).toFixed(1)} ms)`)
})

t.test('brute force: failures are limited per account and per address, with Retry-After; a success resets the account\'s count', async (t) => {
  const { app, store } = await build(t, { env: ON })
  const email = newEmail()
  await register(app, email)
  for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT - 1; i++) t.equal((await login(app, email, 'wrong password!', `10.1.0.${i}`)).statusCode, 401)
  t.equal((await login(app, email, CANARY_PASSWORD, '10.1.1.1')).statusCode, 200, 'under the limit the right password works, and resets the count')
  for (let i = 0; i < MAX_FAILURES_PER_ACCOUNT; i++) t.equal((await login(app, email, 'wrong password!', `10.2.0.${i}`)).statusCode, 401)
  const locked = await login(app, email, CANARY_PASSWORD, '10.3.0.1')
  t.equal(locked.statusCode, 429, 'locked from every address, even with the right password')
  t.equal(locked.json().error.code, 'RATE_LIMITED')
  t.ok(Number(locked.headers['retry-after']) > 0 && Number(locked.headers['retry-after']) <= 900)

  // One address trying many accounts, each below its own limit.
  const spread = Math.ceil(MAX_FAILURES_PER_ADDRESS / (MAX_FAILURES_PER_ACCOUNT - 1))
  const others = await Promise.all(Array.from({ length: spread }, async () => { const e = newEmail(); await register(app, e); return e }))
  for (let i = 0; i < MAX_FAILURES_PER_ADDRESS; i++) t.equal((await login(app, others[i % spread] as string, 'wrong password!', '192.0.2.7')).statusCode, 401)
  const blocked = await login(app, others[0] as string, CANARY_PASSWORD, '192.0.2.7')
  t.equal(blocked.statusCode, 429, 'that address is locked out, even with a right password')
  t.ok(Number(blocked.headers['retry-after']) > 0)
  t.equal((await login(app, others[0] as string, CANARY_PASSWORD, '192.0.2.8')).statusCode, 200, 'the account itself signs in from elsewhere')
  const keys = (await store.query<{ key: string }>('SELECT key FROM auth_attempts')).rows.map((r) => r.key).join(' ')
  t.notOk(keys.includes('192.0.2.7') || keys.includes('canary-mail'), 'attempts are counted under keyed hashes, not addresses or emails')
})

t.test('a password change ends every other session; a deleted account takes its data, keys and license with it', async (t) => {
  const { app } = await build(t, { env: { ...ON, WEBHOOK_ALLOW_PRIVATE: 'true' } })
  const email = newEmail()
  const { id } = (await register(app, email)).json()
  const first = (await login(app, email, CANARY_PASSWORD)).json().access_token as string
  const second = (await login(app, email, CANARY_PASSWORD)).json().access_token as string

  const wrong = await app.inject({ method: 'POST', url: '/v1/auth/password', headers: bearer(first), payload: { currentPassword: 'not it at all', newPassword: 'a new password here' } })
  t.equal(wrong.statusCode, 401)
  const short = await app.inject({ method: 'POST', url: '/v1/auth/password', headers: bearer(first), payload: { currentPassword: CANARY_PASSWORD, newPassword: 'short' } })
  t.equal(short.statusCode, 400)
  t.equal(short.json().error.details.fields[0].path, '/newPassword')
  const changed = await app.inject({ method: 'POST', url: '/v1/auth/password', headers: bearer(first), payload: { currentPassword: CANARY_PASSWORD, newPassword: 'a new password here' } })
  t.equal(changed.statusCode, 200, changed.body)
  const third = changed.json().access_token as string
  for (const old of [first, second]) {
    t.equal((await app.inject({ url: '/v1/auth/me', headers: bearer(old) })).statusCode, 401, 'an older session is out')
    t.equal((await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: bearer(old) })).statusCode, 401, 'and cannot mint')
  }
  t.equal((await app.inject({ url: '/v1/auth/me', headers: bearer(third) })).statusCode, 200, 'the new token works')
  t.equal((await login(app, email, CANARY_PASSWORD)).statusCode, 401, 'the old password is gone')
  t.equal((await login(app, email, 'a new password here')).statusCode, 200)

  const ai = (await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: bearer(third) })).json().token as string
  const hook = await app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(ai), payload: { url: 'https://8.8.8.8/hooks', events: ['staging.completed'] } })
  t.equal(hook.statusCode, 201, hook.body)
  const gone = await app.inject({ method: 'DELETE', url: '/v1/auth/me', headers: bearer(third) })
  t.equal(gone.statusCode, 200, gone.body)
  t.match(gone.json(), { id, deleted: { webhooks: 1 } })
  t.equal((await app.inject({ url: '/v1/auth/me', headers: bearer(third) })).statusCode, 401, 'the token stops working')
  t.equal((await login(app, email, 'a new password here')).statusCode, 401, 'the account is gone')
  t.equal((await app.store.query('SELECT 1 FROM licenses WHERE user_id = $1', [id])).rows.length, 0, 'so is its license')
  t.equal((await app.store.query('SELECT 1 FROM webhook_endpoints WHERE user_id = $1', [id])).rows.length, 0, 'and its data')
  const audit = await app.store.query<{ action: string }>('SELECT action FROM audit_events WHERE target = $1 ORDER BY id', [`user:${id as string}`])
  t.match(audit.rows.map((r) => r.action), ['account.created', 'account.password-changed', 'token.minted', 'account.deleted'])
  t.equal((await register(app, email)).statusCode, 201, 'the email can be used again')
})

t.test('CORS with credentials for the listed origins only; the contract declares the password flow', async (t) => {
  const { app } = await build(t, { env: { ...ON, CORS_ORIGINS: 'http://localhost:5173,https://risk.example.com' } })
  const preflight = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' } })
  t.equal(preflight.headers['access-control-allow-origin'], 'http://localhost:5173')
  t.equal(preflight.headers['access-control-allow-credentials'], 'true')
  const stranger = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } })
  t.notOk(stranger.headers['access-control-allow-origin'])
  const contract = (await app.inject({ url: '/openapi.json' })).json()
  t.same(contract.components.securitySchemes.accountPassword.flows, { password: { tokenUrl: '/v1/auth/login', scopes: {} } })
  t.same(Object.keys(contract.paths['/v1/auth/login'].post.requestBody.content).sort(), ['application/json', 'application/x-www-form-urlencoded'])
  t.match(contract.paths['/v1/ai/tokens'].post.security, [{ portalToken: [] }, { apiKey: [] }, { accountPassword: [] }])
})

t.test('edges: a registration that fails after its insert leaves no account; a license taken away reads as plan null; API keys go with the account; issuers are registered once', async (t) => {
  const { app } = await build(t, { env: ON })
  const accounts = app.accounts
  if (accounts === null) throw new Error('accounts are on')
  const email = newEmail()
  await t.rejects(accounts.register(email, CANARY_PASSWORD, async () => { throw new Error('the license could not be written') }), { message: 'the license could not be written' })
  t.equal((await login(app, email, CANARY_PASSWORD)).statusCode, 401, 'rolled back with it')

  const { id } = (await register(app, email)).json()
  const token = (await login(app, email, CANARY_PASSWORD)).json().access_token as string
  const key = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId: id, mode: 'test' } })
  t.equal(key.statusCode, 201, key.body)
  await app.entitlements.deleteLicense(id)
  t.equal((await app.inject({ url: '/v1/auth/me', headers: bearer(token) })).json().plan, null)
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/auth/me', headers: bearer(token) })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: bearer(key.json().key) })).statusCode, 401, 'its API key is revoked')

  t.throws(() => app.credentialIssuers.register({ issuer: 'portal-ai-api/accounts', verify: async () => { throw new Error('no') } }), /registered twice/)
  // A JWT whose iss is not a string goes the portal's way (not configured here).
  const odd = ['{"alg":"HS256"}', '{"iss":42,"sub":"x"}'].map((p) => Buffer.from(p).toString('base64url')).join('.') + '.c2ln'
  const minted = await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: bearer(odd) })
  t.equal(minted.statusCode, 401)
  t.match(minted.json().error.message, /Portal tokens are not accepted/)
})

t.test('tokens: an expired one, one without a subject, a password changed under a stale session; a user who is not an account exports none', async (t) => {
  const { app } = await build(t, { env: ON })
  let now = new Date('2026-12-04T12:00:00Z')
  const secret = 'a test secret of the accounts, long enough to sign'
  const accounts = createAccounts({ db: app.store, crypto: app.contentCrypto, secret, tokenTtlSeconds: 60, now: () => now })
  const email = newEmail()
  await accounts.register(email, CANARY_PASSWORD, async () => {})
  const { access_token: token } = await accounts.login(email, CANARY_PASSWORD, '127.0.0.1')
  const row = await accounts.verify(token)
  now = new Date(now.getTime() + 61_000)
  await t.rejects(accounts.verify(token), { code: 'TOKEN_EXPIRED' })
  const key = createHmac('sha256', secret).update('account-tokens').digest()
  const noSubject = await new SignJWT({ ver: 0 }).setProtectedHeader({ alg: 'HS256' }).setIssuer(ACCOUNT_ISSUER).setAudience(ACCOUNT_ISSUER)
    .setIssuedAt(Math.floor(now.getTime() / 1000)).setExpirationTime(Math.floor(now.getTime() / 1000) + 60).sign(key)
  await t.rejects(accounts.verify(noSubject), { code: 'UNAUTHENTICATED' })
  await accounts.changePassword(row, CANARY_PASSWORD, 'the first new password')
  await t.rejects(accounts.changePassword(row, CANARY_PASSWORD, 'the second new password'), { code: 'CONFLICT' }, 'a session that read the account before the change')

  const { key: apiKey } = await userWithKey(app, { mode: 'test' })
  const exported = await app.inject({ url: '/v1/ai/me/data', headers: bearer((await mint(app, apiKey)).token) })
  t.equal(exported.json().sections.account, null)
})
