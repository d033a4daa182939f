import { randomBytes } from 'node:crypto'
import t from 'tap'
import { call, expectError, refused, send, smokeClient } from './client.js'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const grant = (username: string, password: string) => new URLSearchParams({ grant_type: 'password', username, password }).toString()

t.test('built-in accounts: register, sign in with the password grant, me, mint, change the password, delete (or NOT_FOUND where they are off)', async (t) => {
  const email = `smoke-${randomBytes(5).toString('hex')}@example.com`
  const password = 'a smoke password 1'
  const anonymous = smokeClient(t)
  // Without a token, /v1/auth/me is 401 where accounts are on and 404 where they are off.
  const probe = await send({ path: '/v1/auth/me' })
  if (probe.status === 404) {
    await refused(t, anonymous.POST('/v1/auth/register', { body: { email, password } }), 404, 'NOT_FOUND')
    t.comment('built-in accounts are off on this deployment (LOCAL_ACCOUNTS): nothing more to check')
    return
  }
  await anonymous.POST('/v1/auth/register', { body: { email, password } })
  // The OAuth2 password grant as a form (what an OAuth library sends), then the same as JSON through the client.
  const signedIn = await call(t, 'login', 200, { method: 'POST', path: '/v1/auth/login', headers: FORM, raw: grant(email, password) })
  t.match(signedIn.json.access_token, /\S/)
  const { data: session } = await anonymous.POST('/v1/auth/login', { body: { grant_type: 'password', username: email, password } })
  const account = smokeClient(t, session.access_token)
  const { data: me } = await account.GET('/v1/auth/me')
  t.equal(me.email, email)
  await account.POST('/v1/ai/tokens', { body: {} })
  expectError(t, await call(t, 'login', 401, { method: 'POST', path: '/v1/auth/login', headers: FORM, raw: grant(email, 'not the password') }), 'UNAUTHENTICATED')
  const { data: changed } = await account.POST('/v1/auth/password', { body: { currentPassword: password, newPassword: 'another smoke password' } })
  await refused(t, account.GET('/v1/auth/me'), 401, 'UNAUTHENTICATED')
  const fresh = smokeClient(t, changed.access_token)
  await fresh.DELETE('/v1/auth/me')
  await refused(t, fresh.GET('/v1/auth/me'), 401, 'UNAUTHENTICATED')
})
