import type { FastifyInstance } from 'fastify'
import t from 'tap'
import Type from 'typebox'
import { createHasher, serializeError } from '../../plugins/privacy.js'
import { AppError } from '../../plugins/errors.js'
import { build, TEST_SECRETS } from '../helper.js'

const CANARY = {
  authorization: 'Bearer canary-authorization-7f3a91',
  cookie: 'session=canary-cookie-55e2b0',
  apiKey: 'pak_live_canaryApiKey0000000000000000000000',
  query: 'canary-query-c4d8e1',
  body: 'canary-body-prompt-91b7aa',
  provider: 'sk-canary-provider-key-3d9f'
}

/** A route that sees content and then fails, the worst case for a leak. */
async function leakyRoutes (app: FastifyInstance) {
  app.post('/test/leaky', {
    schema: { body: Type.Object({ message: Type.String() }) }
  }, async (request) => {
    // What a careless handler might do: every one of these must be cut out of the line.
    request.log.info({ body: request.body, headers: request.headers, query: request.query }, 'handler saw the request')
    throw new Error(`failed while handling ${(request.body as { message: string }).message}`)
  })
}

t.test('canary: no credential, query value or body reaches a log line, even when the route throws', async (t) => {
  const { app, logs } = await build(t, { env: { OPENAI_API_KEY: CANARY.provider }, register: leakyRoutes })
  const res = await app.inject({
    method: 'POST',
    url: `/test/leaky?q=${CANARY.query}`,
    headers: { authorization: CANARY.authorization, cookie: CANARY.cookie, 'x-api-key': CANARY.apiKey },
    payload: { message: `${CANARY.body} and ${CANARY.provider}` }
  })
  t.equal(res.statusCode, 500)
  t.ok(logs.lines.length >= 3, 'the handler line, the failure and the request line were written')
  for (const [name, canary] of Object.entries(CANARY)) {
    t.notOk(logs.text.includes(canary), `${name} canary is not in the logs`)
    t.notOk(res.body.includes(canary), `${name} canary is not in the response`)
  }
  const [line] = logs.find('request completed')
  t.same(Object.keys(line ?? {}).sort(), ['durationMs', 'errorCode', 'hostname', 'level', 'method', 'msg', 'pid', 'requestId', 'route', 'statusCode', 'time'])
  t.match(line, { requestId: res.headers['x-request-id'], method: 'POST', route: '/test/leaky', statusCode: 500, errorCode: 'INTERNAL_ERROR' })
  t.type(line?.durationMs, 'number')
})

t.test('canary: a 404 logs the route as unknown, never the raw URL', async (t) => {
  const { app, logs } = await build(t)
  await app.inject({ url: `/v1/unknown/${CANARY.query}?x=${CANARY.query}` })
  t.notOk(logs.text.includes(CANARY.query))
  t.match(logs.find('request completed')[0], { route: '(no route)', statusCode: 404, errorCode: 'NOT_FOUND' })
})

t.test('the request line names the route pattern and the principal when known', async (t) => {
  const { app, logs } = await build(t, {
    register: (app) => {
      app.get('/test/items/:id', async (request) => {
        request.principal = { userId: 'user-42', plan: 'pro', mode: 'live', credential: 'ai-token', features: [] }
        return { ok: true }
      })
    }
  })
  await app.inject({ url: '/test/items/secret-item-id' })
  const [line] = logs.find('request completed')
  t.match(line, { route: '/test/items/:id', statusCode: 200, principalId: 'user-42' })
  t.notOk('errorCode' in (line ?? {}))
  t.notOk(logs.text.includes('secret-item-id'))
})

t.test('configured secrets are cut out of any line, whatever logged them', async (t) => {
  const { app, logs } = await build(t, { env: { REMOVEBG_API_KEY: 'removebg-canary-key-0a1b2c' } })
  app.log.warn(`misconfigured header ${app.config.REMOVEBG_API_KEY ?? ''} / ${TEST_SECRETS.ADMIN_TOKEN}`)
  t.notOk(logs.text.includes('removebg-canary-key-0a1b2c'))
  t.notOk(logs.text.includes(TEST_SECRETS.ADMIN_TOKEN))
  t.match(logs.text, /misconfigured header \[REDACTED\] \/ \[REDACTED\]/)
})

t.test('request and reply objects are logged as method, route and status only', async (t) => {
  const { app, logs } = await build(t, {
    register: (app) => {
      app.get('/test/objects', async (request, reply) => {
        request.log.info({ req: request, res: reply }, 'objects')
        return { ok: true }
      })
    }
  })
  await app.inject({ url: `/test/objects?token=${CANARY.query}`, headers: { authorization: CANARY.authorization } })
  t.match(logs.find('objects')[0], { req: { method: 'GET', route: '/test/objects' }, res: { statusCode: 200 } })
  t.notOk(logs.text.includes(CANARY.query))
  t.notOk(logs.text.includes(CANARY.authorization))
})

t.test('serializeError keeps only messages we wrote', async (t) => {
  t.match(serializeError(new AppError('NOT_FOUND', 'No such key.')), { type: 'AppError', message: 'No such key.' })
  const sys = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
  t.match(serializeError(sys), { message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' })
  const fst = Object.assign(new Error('Body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 })
  t.match(serializeError(fst), { message: 'Body is too large', statusCode: 413 })
  const badUrl = Object.assign(new Error("'/secret%' is not a valid url component"), { code: 'FST_ERR_BAD_URL' })
  t.match(serializeError(badUrl), { message: /^\[REDACTED\]/ })
  const wrapped = new Error('outer prompt text', { cause: new Error('inner prompt text') })
  const out = serializeError(wrapped)
  t.notMatch(JSON.stringify(out), /prompt/)
  t.match(out, { cause: { type: 'Error', message: '[REDACTED] (17 chars)' } })
  t.equal(serializeError(Object.assign(new Error('x'), { stack: undefined })).stack, '')
})

t.test('keyed hashes are stable, keyed and one-way', async (t) => {
  const a = createHasher('k'.repeat(32))
  const b = createHasher('j'.repeat(32))
  t.equal(a.user('user-1'), a.user('user-1'))
  t.not(a.user('user-1'), a.user('user-2'))
  t.not(a.user('user-1'), b.user('user-1'), 'another key gives another id')
  t.match(a.user('user-1'), /^[0-9a-f]{64}$/)
  t.not(a.content('user-1'), a.user('user-1').slice(0, 32), 'user ids and content fingerprints never collide by construction')
  t.equal(a.content(Buffer.from('hello')), a.content('hello'))
  t.match(a.content('hello'), /^[0-9a-f]{32}$/)
  const { app } = await build(t)
  t.equal(app.hash.user('user-1'), createHasher(TEST_SECRETS.USER_HASH_SECRET).user('user-1'))
})
