import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS, type Accounts } from '../../../plugins/accounts.js'
import { bearer } from '../../../plugins/auth/index.js'
import { AppError } from '../../../plugins/errors.js'
import { AccessToken, AccountDeleted, AccountMe, Account, LoginRequest, PasswordChange, RegisterRequest } from '../../../schemas/accounts.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'

/** Sign-ups and sign-ins an address may start a minute (the failure limits of sign-in come on top). */
export const AUTH_CALLS_PER_MINUTE = 30
const common = { tags: ['accounts'] }
const signedIn = { ...common, security: [{ accountPassword: [] }] }
const FORM = 'application/x-www-form-urlencoded'

type AccountRow = Awaited<ReturnType<Accounts['verify']>>
declare module 'fastify' {
  interface FastifyRequest {
    account: AccountRow | null
  }
}

/** Every route here checks credentials itself: its denials go to the audit trail as those of token routes do. */
const AUDITED = { auditDenials: true }

/** /v1/auth: built-in accounts (SPEC §14). With LOCAL_ACCOUNTS off every route answers NOT_FOUND. */
const auth: FastifyPluginAsyncTypebox = async (app) => {
  // OAuth2 clients (Swagger UI's Authorize dialog among them) post the password grant as a form.
  await app.register(formbody, { bodyLimit: 16 * 1024 })
  app.decorateRequest('account', null)
  // Off: every route is NOT_FOUND, before its body is even read.
  app.addHook('onRequest', async () => {
    if (app.accounts === null) throw new AppError('NOT_FOUND', 'Built-in accounts are off on this deployment (LOCAL_ACCOUNTS): sign in through the portal.')
  })

  // Runs before every route of this plugin: past it, accounts are on.
  const enabled = () => app.accounts as Accounts

  /** The account of the request's bearer token. */
  async function account (request: FastifyRequest) {
    request.account = await enabled().verify(bearer(request, 'access_token from POST /v1/auth/login'))
  }
  const me = (request: FastifyRequest) => request.account as AccountRow

  app.post('/register', {
    config: { perAddressPerMinute: AUTH_CALLS_PER_MINUTE, ...AUDITED },
    schema: {
      operationId: 'registerAccount',
      summary: 'Create an account',
      description: 'Email and password (10 to 256 characters, not the email). The email is compared in lower case and must be new. The account ' +
        'gets a license of LOCAL_ACCOUNTS_PLAN; sign in with POST /v1/auth/login. Only with LOCAL_ACCOUNTS=on (otherwise NOT_FOUND).',
      ...common,
      body: ref(RegisterRequest),
      response: { 201: ref(Account), ...errorResponses('VALIDATION_ERROR', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    const created = await enabled().register(request.body.email, request.body.password, async (tx, id) => {
      await app.entitlements.putLicense(id, { plan: app.config.LOCAL_ACCOUNTS_PLAN, status: 'active' }, tx)
    })
    await app.audit.record({ actor: `user:${created.id}`, action: 'account.created', target: `user:${created.id}`, outcome: 'ok', requestId: request.id, details: { plan: app.config.LOCAL_ACCOUNTS_PLAN } })
    return reply.code(201).send(created)
  })

  app.post('/login', {
    config: { perAddressPerMinute: AUTH_CALLS_PER_MINUTE, ...AUDITED },
    schema: {
      operationId: 'login',
      summary: 'Sign in (OAuth2 password grant)',
      description: 'The OAuth2 password grant: a form (`grant_type=password&username=<email>&password=…`) or the same fields as JSON. Answers ' +
        'OAuth2\'s token response; the `access_token` signs in to /v1/auth/* and mints AI tokens at POST /v1/ai/tokens. A wrong email and a wrong ' +
        `password get the same answer. After ${MAX_FAILURES_PER_ACCOUNT} failures for an account, or ${MAX_FAILURES_PER_ADDRESS} from an address, within 15 minutes: RATE_LIMITED with Retry-After.`,
      ...common,
      body: { content: { [FORM]: { schema: ref(LoginRequest) }, 'application/json': { schema: ref(LoginRequest) } } },
      response: { 200: ref(AccessToken), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'NOT_FOUND', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    // A form or JSON was checked against LoginRequest; anything else (text/plain…) is not a password grant.
    if (typeof request.body !== 'object' || request.body === null) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send the password grant as application/x-www-form-urlencoded (or JSON): grant_type=password, username, password.')
    }
    const body = request.body as { username: string, password: string }
    // A failed sign-in is an access.denied row of the audit trail (the route's auditDenials), with no email in it.
    const token = await enabled().login(body.username, body.password, request.ip)
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(token)
  })

  app.get('/me', {
    config: AUDITED,
    onRequest: account,
    schema: {
      operationId: 'getAccount',
      summary: 'Your account',
      description: 'The account of the access token, with its license plan.',
      ...signedIn,
      response: { 200: ref(AccountMe), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED') }
    }
  }, async (request) => {
    const row = me(request)
    const license = await app.entitlements.getLicense(row.id)
    return { ...enabled().toAccount(row), plan: license?.plan ?? null }
  })

  app.post('/password', {
    config: AUDITED,
    onRequest: account,
    schema: {
      operationId: 'changePassword',
      summary: 'Change your password',
      description: 'Needs the current password. Every other access token of the account stops working at once (AI tokens already minted ' +
        'run out within their own lifetime); the answer carries a new token for this session.',
      ...signedIn,
      body: ref(PasswordChange),
      response: { 200: ref(AccessToken), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    const token = await enabled().changePassword(me(request), request.body.currentPassword, request.body.newPassword)
    await app.audit.record({ actor: `user:${me(request).id}`, action: 'account.password-changed', target: `user:${me(request).id}`, outcome: 'ok', requestId: request.id, details: {} })
    return reply.header('cache-control', 'no-store').send(token)
  })

  app.delete('/me', {
    config: AUDITED,
    onRequest: account,
    schema: {
      operationId: 'deleteAccount',
      summary: 'Delete your account and everything kept for it',
      description: 'Deletes every section of your data (as DELETE /v1/ai/me/data), your API keys and license, and the account: its tokens stop ' +
        'working at once. The usage ledger keeps its rows (billing records with no content).',
      ...signedIn,
      response: { 200: ref(AccountDeleted), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED', 'STORAGE_UNAVAILABLE') }
    }
  }, async (request) => {
    const { id } = me(request)
    const deleted = await app.userData.delete(id)
    for (const key of await app.apiKeys.list(id)) await app.apiKeys.revoke(key.id)
    await app.store.transaction(async (tx) => {
      await app.entitlements.deleteLicense(id, tx)
      await enabled().remove(id, tx)
    })
    await app.audit.record({ actor: `user:${id}`, action: 'account.deleted', target: `user:${id}`, outcome: 'ok', requestId: request.id, details: { deleted } })
    return { id, deleted }
  })
}

export default auth
