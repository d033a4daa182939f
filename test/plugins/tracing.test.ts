import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace'
import pino from 'pino'
import t from 'tap'
import { buildApp } from '../../app.js'
import { loadConfig } from '../../plugins/config.js'
import { activeTracer, scrubbingExporter, startTracing, traceCarrier, traceRedis, tracedStore } from '../../plugins/tracing.js'
import { createFakeUpstream } from '../fake-upstream.js'
import { otlpCollector } from '../otlp-collector.js'
import { adminHeaders, createTestStore, JOBS_SCHEMA, mint, TEST_SECRETS } from '../helper.js'

const CANARY = 'CANARY-trace-5d1c'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  status?: { code?: number, message?: string }
  attributes?: Array<{ key: string, value: Record<string, unknown> }>
  events?: Array<{ name: string, attributes?: Array<{ key: string }> }>
}

const attrs = (span: OtlpSpan) => Object.fromEntries((span.attributes ?? []).map((a) => [a.key, Object.values(a.value)[0]]))

t.test('off without an endpoint, or with OTEL_SDK_DISABLED: nothing is started', async (t) => {
  t.equal(await startTracing(loadConfig({ ...TEST_SECRETS })), null)
  t.equal(await startTracing(loadConfig({ ...TEST_SECRETS, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), { OTEL_SDK_DISABLED: 'true' }), null)
  t.equal(activeTracer(), null)
  t.same(traceCarrier(), {}, 'no trace context for jobs')
})

t.test('traces over OTLP/HTTP: a request, its queries, Redis, its provider call and the job it queued, with nothing of users', async (t) => {
  const { endpoint, bodies } = await otlpCollector(t)
  const upstream = createFakeUpstream().listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  // A webhook receiver: answers 204, or 500 on paths that start with /fail.
  const receiver = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(req.url?.startsWith('/fail') === true ? 500 : 204).end()) }).listen(0, '127.0.0.1')
  await once(receiver, 'listening')
  t.teardown(() => receiver.close())
  const port = (server: { address: () => unknown }) => (server.address() as AddressInfo).port

  const config = loadConfig({
    ...TEST_SECRETS,
    JOBS_SCHEMA,
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_SERVICE_NAME: 'portal-ai-api-test',
    REDIS_URL: 'redis://127.0.0.1:6379/13',
    OPENAI_API_KEY: 'sk-trace-test',
    OPENAI_BASE_URL: `http://127.0.0.1:${port(upstream)}/v1`,
    WEBHOOK_ALLOW_PRIVATE: 'true'
  })
  const tracing = await startTracing(config)
  if (tracing === null) throw new Error('tracing did not start')
  t.not(activeTracer(), null)
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const app = await buildApp(config, pino({ level: 'silent' }), {}, store, tracing)
  await app.ready()

  const userId = `user-${CANARY}`
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro', status: 'active' } })
  const live = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'live' } })).json() as { key: string }
  const { token } = await mint(app, live.key)
  const auth = { authorization: `Bearer ${token}` }
  const asked = await app.inject({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: auth, payload: { message: `${CANARY} how do I export?` } })
  t.equal(asked.statusCode, 200)
  await fetch(`http://127.0.0.1:${port(upstream)}/_control`, { method: 'POST', body: JSON.stringify({ fault: { kind: 'status', status: 400 }, faultTimes: 1 }) })
  const failed = await app.inject({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: auth, payload: { message: `${CANARY} again` } })
  t.equal(failed.statusCode, 502)
  const hook = await app.inject({ method: 'POST', url: '/v1/webhooks', headers: auth, payload: { url: `http://127.0.0.1:${port(receiver)}/${CANARY}`, events: ['staging.completed'] } })
  const pinged = await app.inject({ method: 'POST', url: `/v1/webhooks/${hook.json().id as string}/test`, headers: auth })
  t.equal(pinged.statusCode, 202)
  const failing = await app.inject({ method: 'POST', url: '/v1/webhooks', headers: auth, payload: { url: `http://127.0.0.1:${port(receiver)}/fail-${CANARY}`, events: ['staging.completed'] } })
  const refused = await app.inject({ method: 'POST', url: `/v1/webhooks/${failing.json().id as string}/test`, headers: auth })
  // A job queued outside any request starts a trace of its own.
  const orphan = await app.jobs.send('webhooks.deliver', { deliveryId: '00000000-0000-4000-8000-000000000000' })
  t.equal((await app.inject({ method: 'GET', url: `/v1/no-such-route/${CANARY}` })).statusCode, 404)
  // The delivery jobs run on this instance's worker.
  for (let i = 0; i < 200; i++) {
    const { rows } = await store.query<{ n: string }>('SELECT count(*) AS n FROM webhook_deliveries WHERE id = ANY($1) AND attempts > 0', [[pinged.json().deliveryId, refused.json().deliveryId]])
    const [job] = await app.jobs.list({ id: orphan, limit: 1 })
    if (Number(rows[0]?.n) === 2 && job?.state === 'completed') break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await app.close()
  await tracing.shutdown()
  t.equal(activeTracer(), null, 'off again after the shutdown')

  const exported = bodies.join('\n')
  const spans: OtlpSpan[] = bodies.flatMap((b) => (JSON.parse(b) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string, value: { stringValue?: string } }> }, scopeSpans: Array<{ spans: OtlpSpan[] }> }> }).resourceSpans
    .flatMap((rs) => {
      t.ok(rs.resource.attributes.some((a) => a.key === 'service.name' && a.value.stringValue === 'portal-ai-api-test'))
      return rs.scopeSpans.flatMap((s) => s.spans)
    }))
  const byId = new Map(spans.map((s) => [s.spanId, s]))
  const requestSpan = (requestId: string) => spans.find((s) => attrs(s)['portal.request_id'] === requestId) as OtlpSpan
  const inTrace = (root: OtlpSpan) => spans.filter((s) => s.traceId === root.traceId)
  const ancestors = (span: OtlpSpan): string[] => {
    const parent = span.parentSpanId === undefined ? undefined : byId.get(span.parentSpanId)
    return parent === undefined ? [] : [parent.name, ...ancestors(parent)]
  }

  const ask = requestSpan(String(asked.headers['x-request-id']))
  t.equal(ask.name, 'POST /v1/ai/settings-assistant/messages', 'named by method and route pattern')
  t.equal(ask.kind, 2, 'a server span')
  t.match(attrs(ask), { 'http.request.method': 'POST', 'http.route': '/v1/ai/settings-assistant/messages', 'http.response.status_code': 200 })
  const askTrace = inTrace(ask)
  const provider = askTrace.find((s) => s.name === 'provider.call') as OtlpSpan
  t.match(attrs(provider), { 'portal.feature': 'settings-assistant', 'portal.mode': 'live', 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o-mini', 'portal.outcome': 'ok' })
  t.ok(ancestors(provider).includes('POST /v1/ai/settings-assistant/messages'), 'the provider call is under its request')
  t.ok(askTrace.some((s) => s.name === 'POST' && s.kind === 3 && attrs(s)['http.response.status_code'] === 200), 'the HTTP call to OpenAI (undici) is in the trace')
  const queries = askTrace.filter((s) => s.name === 'db.query')
  t.ok(queries.length > 0 && queries.every((q) => attrs(q)['db.system.name'] === 'postgresql' && /^[A-Z]+$/.test(String(attrs(q)['db.operation.name']))), 'queries: the system and the operation only')
  t.ok(askTrace.some((s) => s.name === 'redis' && attrs(s)['db.system.name'] === 'redis'), 'the rate limit\'s Redis commands')

  const failedCall = inTrace(requestSpan(String(failed.headers['x-request-id']))).find((s) => s.name === 'provider.call') as OtlpSpan
  t.equal(failedCall.status?.code, SpanStatusCode.ERROR)
  t.notOk(failedCall.status?.message, 'no status message leaves the service')

  const ping = requestSpan(String(pinged.headers['x-request-id']))
  // Three deliveries ran (this one, the failing receiver's, one queued outside a request), in any order.
  const job = spans.find((s) => s.name === 'job webhooks.deliver' && s.traceId === ping.traceId) as OtlpSpan
  t.ok(job, 'the job continues the trace of the request that queued it')
  t.equal(job.kind, 5, 'a consumer span')
  t.match(attrs(job), { 'portal.job.queue': 'webhooks.deliver', 'portal.job.attempt': 0 })
  t.ok(spans.some((s) => s.name === 'POST' && s.parentSpanId !== undefined && ancestors(s).includes('job webhooks.deliver')), 'the delivery\'s HTTP call is under the job')
  const failedJob = spans.find((s) => s.name === 'job webhooks.deliver' && s.traceId === requestSpan(String(refused.headers['x-request-id'])).traceId) as OtlpSpan
  t.equal(failedJob.status?.code, SpanStatusCode.ERROR, 'a failed attempt is an error span')
  t.ok(spans.some((s) => s.name === 'job webhooks.deliver' && s.parentSpanId === undefined), 'a job without a sender is a trace of its own')
  t.ok(spans.some((s) => s.name === 'GET (unmatched)'), 'an unknown path is named as unmatched, never by its path')

  t.notOk(exported.includes(CANARY), 'no canary: not the prompt, the user id, the webhook URL')
  t.notOk(exported.includes(userId), 'no user id')
  t.notOk(exported.includes(live.key.slice(0, 12)) || exported.includes(token.slice(0, 20)), 'no key, no token')
  for (const key of ['url.full', 'url.path', 'url.query', 'server.address', 'db.statement', 'db.query.text', 'http.url', 'http.target']) {
    t.notOk(spans.some((s) => key in attrs(s)), `no ${key}`)
  }
})

t.test('the exporter keeps allowlisted attributes, exception types without messages, and no status message', async (t) => {
  const sent: ReadableSpan[][] = []
  const next: SpanExporter = { export: (spans, done) => { sent.push(spans); done({ code: 0 }) }, shutdown: async () => {}, forceFlush: async () => {} }
  const exporter = scrubbingExporter(next)
  const context = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 }
  const span = {
    name: 'request',
    kind: SpanKind.SERVER,
    spanContext: () => context,
    startTime: [1, 0],
    endTime: [2, 0],
    status: { code: SpanStatusCode.ERROR, message: `failed for ${CANARY}` },
    attributes: { 'http.route': '/v1/x/:id', 'url.path': `/v1/x/${CANARY}`, 'portal.request_id': 'r-1', 'enduser.id': CANARY },
    links: [],
    events: [
      { name: 'exception', time: [1, 5], attributes: { 'exception.type': 'AppError', 'exception.message': CANARY, 'exception.stacktrace': CANARY } },
      { name: 'exception', time: [1, 6] },
      { name: 'log', time: [1, 6], attributes: { text: CANARY } }
    ],
    duration: [1, 0],
    ended: true,
    resource: { attributes: {} },
    instrumentationScope: { name: 'x' },
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0
  } as unknown as ReadableSpan
  await new Promise<void>((resolve) => { exporter.export([span], () => { resolve() }) })
  const out = sent[0]?.[0] as ReadableSpan
  t.same(out.attributes, { 'http.route': '/v1/x/:id', 'portal.request_id': 'r-1' })
  t.same(out.events.map((e) => e.attributes), [{ 'exception.type': 'AppError' }, {}])
  t.same(out.status, { code: SpanStatusCode.ERROR })
  t.equal(out.spanContext(), context)
  t.notOk(JSON.stringify(out).includes(CANARY))
  await exporter.forceFlush?.()
  await exporter.shutdown()
})

t.test('a failing query, transaction or Redis command ends its span as an error and still rejects', async (t) => {
  const ended: Array<{ name: string, status?: number }> = []
  const tracer = {
    startSpan: (name: string) => {
      let status: number | undefined
      return { setStatus: (s: { code: number }) => { status = s.code }, end: () => { ended.push({ name, ...(status === undefined ? {} : { status }) }) } }
    }
  } as unknown as Parameters<typeof tracedStore>[1]
  const failing = async () => { throw new Error('relation does not exist') }
  const store = { kind: 'embedded', query: failing, exec: failing, transaction: async (fn: (tx: unknown) => Promise<unknown>) => fn({ query: failing, exec: failing }), close: async () => {} } as unknown as Parameters<typeof tracedStore>[0]
  const traced = tracedStore(store, tracer)
  t.equal(traced.kind, 'embedded')
  await t.rejects(traced.query('SELECT 1'), /relation/)
  await t.rejects(traced.exec('  create table x ()'), /relation/)
  await t.rejects(traced.query('(SELECT 1)'), /relation/, 'a statement that does not start with a word')
  await t.rejects(traced.transaction(async (tx) => tx.query('UPDATE x SET y = 1')), /relation/)
  t.same(ended, [{ name: 'db.query', status: SpanStatusCode.ERROR }, { name: 'db.query', status: SpanStatusCode.ERROR }, { name: 'db.query', status: SpanStatusCode.ERROR },
    { name: 'db.query', status: SpanStatusCode.ERROR }, { name: 'db.transaction', status: SpanStatusCode.ERROR }])

  ended.length = 0
  const sentCommands: string[] = []
  const client = { sendCommand: (command: { name: string, promise: Promise<unknown> }) => { sentCommands.push(command.name); return command.promise } }
  traceRedis(client, tracer)
  const ok = Promise.resolve('PONG')
  const bad = Promise.reject(new Error('NOSCRIPT'))
  bad.catch(() => {})
  await client.sendCommand({ name: 'ping', promise: ok })
  await t.rejects(client.sendCommand({ name: 'evalsha', promise: bad }) as Promise<unknown>)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(sentCommands, ['ping', 'evalsha'])
  t.same(ended, [{ name: 'redis' }, { name: 'redis', status: SpanStatusCode.ERROR }])
})
