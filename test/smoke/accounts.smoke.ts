import { randomBytes } from 'node:crypto'
import t from 'tap'
import { call, expectError, send } from './client.js'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const grant = (username: string, password: string) => new URLSearchParams({ grant_type: 'password', username, password }).toString()

t.test('built-in accounts: register, sign in with the password grant, me, mint, change the password, delete (or NOT_FOUND where they are off)', async (t) => {
  const email = `smoke-${randomBytes(5).toString('hex')}@example.com`
  const password = 'a smoke password 1'
  // Without a token, /v1/auth/me is 401 where accounts are on and 404 where they are off.
  const probe = await send({ path: '/v1/auth/me' })
  if (probe.status === 404) {
    expectError(t, await call(t, 'registerAccount', 404, { method: 'POST', path: '/v1/auth/register', body: { email, password } }), 'NOT_FOUND')
    t.comment('built-in accounts are off on this deployment (LOCAL_ACCOUNTS): nothing more to check')
    return
  }
  await call(t, 'registerAccount', 201, { method: 'POST', path: '/v1/auth/register', body: { email, password } })
  const signedIn = await call(t, 'login', 200, { method: 'POST', path: '/v1/auth/login', headers: FORM, raw: grant(email, password) })
  const token = signedIn.json.access_token as string
  const me = await call(t, 'getAccount', 200, { path: '/v1/auth/me', token })
  t.equal(me.json.email, email)
  await call(t, 'createAiToken', 201, { method: 'POST', path: '/v1/ai/tokens', token })
  expectError(t, await call(t, 'login', 401, { method: 'POST', path: '/v1/auth/login', headers: FORM, raw: grant(email, 'not the password') }), 'UNAUTHENTICATED')
  const changed = await call(t, 'changePassword', 200, { method: 'POST', path: '/v1/auth/password', token, body: { currentPassword: password, newPassword: 'another smoke password' } })
  expectError(t, await call(t, 'getAccount', 401, { path: '/v1/auth/me', token }), 'UNAUTHENTICATED')
  const fresh = changed.json.access_token as string
  await call(t, 'deleteAccount', 200, { method: 'DELETE', path: '/v1/auth/me', token: fresh })
  expectError(t, await call(t, 'getAccount', 401, { path: '/v1/auth/me', token: fresh }), 'UNAUTHENTICATED')
})
