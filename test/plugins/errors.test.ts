import type { FastifyInstance } from 'fastify'
import t from 'tap'
import Type from 'typebox'
import { AppError } from '../../plugins/errors.js'
import { build } from '../helper.js'

/** Routes that exercise the error paths; registered on the real app, after every plugin. */
async function errorRoutes (app: FastifyInstance) {
  app.post('/test/echo', {
    schema: {
      body: Type.Object({ count: Type.Integer({ minimum: 1 }), name: Type.String({ maxLength: 5 }) }, { additionalProperties: false }),
      querystring: Type.Object({ limit: Type.Optional(Type.Integer({ maximum: 10 })) })
    }
  }, async (request) => ({ body: request.body, query: request.query }))
  app.get('/test/app-error', async () => {
    throw new AppError('QUOTA_EXCEEDED', 'Quota of settings-assistant used up.', { limit: 5, used: 5 }, { 'retry-after': '60' })
  })
  app.get('/test/provider-down', async () => { throw new AppError('PROVIDER_UNAVAILABLE', 'The provider is busy.') })
  app.get('/test/crash', async () => { throw new Error('database password is hunter2') })
  app.get('/test/teapot', async () => { throw Object.assign(new Error('teapot with content'), { statusCode: 418 }) })
  app.get('/test/library-403', async () => { throw Object.assign(new Error('library says forbidden'), { statusCode: 403 }) })
}

function envelope (res: { json: () => unknown }) {
  return (res.json() as { error: Record<string, unknown> }).error
}

t.test('request ids: a valid incoming X-Request-Id is kept and echoed', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'desktop-1234.abc:5' } })
  t.equal(res.headers['x-request-id'], 'desktop-1234.abc:5')
})

t.test('request ids: a missing or invalid one is replaced by a generated id', async (t) => {
  const { app } = await build(t)
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
  const none = await app.inject({ url: '/health/live' })
  t.match(none.headers['x-request-id'], uuid)
  const injected = await app.inject({ url: '/nope', headers: { 'x-request-id': 'bad id\twith "stuff"' } })
  t.match(injected.headers['x-request-id'], uuid)
  t.equal(envelope(injected).requestId, injected.headers['x-request-id'])
  const long = await app.inject({ url: '/health/live', headers: { 'x-request-id': 'a'.repeat(129) } })
  t.match(long.headers['x-request-id'], uuid)
})

t.test('an unknown route is a 404 in the envelope', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ method: 'DELETE', url: '/v1/nothing?secret=1' })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(envelope(res), {
    code: 'NOT_FOUND',
    message: 'No such route: check the method and path against the API reference at /docs.',
    requestId: res.headers['x-request-id']
  })
})

t.test('validation errors list every failing field in details', async (t) => {
  const { app } = await build(t, { register: errorRoutes })
  const res = await app.inject({ method: 'POST', url: '/test/echo', payload: { count: '3', name: 'too long', extra: true } })
  t.equal(res.statusCode, 400)
  const error = envelope(res)
  t.equal(error.code, 'VALIDATION_ERROR')
  t.equal(error.message, 'The request body is invalid: see details.fields.')
  t.same(error.details, {
    fields: [
      { location: 'body', path: '/extra', message: 'is not a field of this request' },
      { location: 'body', path: '/count', message: 'must be integer' },
      { location: 'body', path: '/name', message: 'must NOT have more than 5 characters' }
    ]
  })

  const missing = await app.inject({ method: 'POST', url: '/test/echo', payload: {} })
  t.same(envelope(missing).details, {
    fields: [
      { location: 'body', path: '/count', message: "must have required property 'count'" },
      { location: 'body', path: '/name', message: "must have required property 'name'" }
    ]
  })

  const query = await app.inject({ method: 'POST', url: '/test/echo?limit=11', payload: { count: 1, name: 'a' } })
  t.equal(query.statusCode, 400)
  t.same(envelope(query).details, { fields: [{ location: 'querystring', path: '/limit', message: 'must be <= 10' }] })

  const ok = await app.inject({ method: 'POST', url: '/test/echo?limit=3', payload: { count: 1, name: 'a' } })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { body: { count: 1, name: 'a' }, query: { limit: 3 } }, 'query strings are coerced, bodies are not')
})

t.test('malformed, empty, oversized and wrongly typed bodies', async (t) => {
  const { app } = await build(t, { register: errorRoutes })
  const json = { 'content-type': 'application/json' }
  const bad = await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: '{"count": 1,' })
  t.equal(bad.statusCode, 400)
  t.equal(envelope(bad).code, 'VALIDATION_ERROR')
  const empty = await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: '' })
  t.equal(envelope(empty).code, 'VALIDATION_ERROR')
  const proto = await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: '{"count":1,"name":"a","__proto__":{"x":1}}' })
  t.equal(proto.statusCode, 400)
  t.equal(envelope(proto).code, 'VALIDATION_ERROR')
  const big = await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: JSON.stringify({ count: 1, name: 'x'.repeat(300 * 1024) }) })
  t.equal(big.statusCode, 413)
  t.equal(envelope(big).code, 'PAYLOAD_TOO_LARGE')
  const xml = await app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/xml' }, payload: '<a/>' })
  t.equal(xml.statusCode, 415)
  t.equal(envelope(xml).code, 'UNSUPPORTED_MEDIA_TYPE')
})

t.test('an AppError keeps its code, status, details and headers', async (t) => {
  const { app } = await build(t, { register: errorRoutes })
  const res = await app.inject({ url: '/test/app-error' })
  t.equal(res.statusCode, 402)
  t.equal(res.headers['retry-after'], '60')
  t.same(envelope(res), {
    code: 'QUOTA_EXCEEDED',
    message: 'Quota of settings-assistant used up.',
    requestId: res.headers['x-request-id'],
    details: { limit: 5, used: 5 }
  })
})

t.test('a crash is a 500 that reveals nothing; the log keeps only safe facts', async (t) => {
  const { app, logs } = await build(t, { register: errorRoutes })
  const res = await app.inject({ url: '/test/crash' })
  t.equal(res.statusCode, 500)
  t.same(envelope(res), {
    code: 'INTERNAL_ERROR',
    message: 'Internal server error. Quote the requestId when reporting it.',
    requestId: res.headers['x-request-id']
  })
  t.notMatch(res.body, /hunter2|database/)
  t.notMatch(logs.text, /hunter2/)
  const [failed] = logs.find('request failed')
  t.match(failed, { level: 50, requestId: res.headers['x-request-id'], err: { type: 'Error', message: `[REDACTED] (${'database password is hunter2'.length} chars)`, stack: /at / } })
})

t.test('a documented 5xx (a provider failing) is a warn line; error lines are kept for faults of the service', async (t) => {
  const { app, logs } = await build(t, { register: errorRoutes })
  const res = await app.inject({ url: '/test/provider-down' })
  t.equal(res.statusCode, 503)
  t.equal(envelope(res).code, 'PROVIDER_UNAVAILABLE')
  t.match(logs.find('request failed'), [{ level: 40, requestId: res.headers['x-request-id'], err: { type: 'AppError' } }])
  t.equal(logs.entries.filter((e) => (e.level as number) >= 50).length, 0)
})

t.test('4xx errors from elsewhere get a fixed message, never their own text', async (t) => {
  const { app } = await build(t, { register: errorRoutes })
  const teapot = await app.inject({ url: '/test/teapot' })
  t.equal(teapot.statusCode, 400)
  t.same(envelope(teapot).code, 'VALIDATION_ERROR')
  t.notMatch(teapot.body, /content/)
  const forbidden = await app.inject({ url: '/test/library-403' })
  t.equal(forbidden.statusCode, 403)
  t.equal(envelope(forbidden).message, 'This credential may not do that.')
})

t.test('a malformed URL is answered in the envelope before routing', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/health/%E0%A4%A' })
  t.equal(res.statusCode, 400)
  t.same(envelope(res).code, 'VALIDATION_ERROR')
  t.equal(envelope(res).message, 'The request URL is malformed.')
  t.ok(res.headers['x-request-id'])
})
