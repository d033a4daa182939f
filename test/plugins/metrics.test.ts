import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { http, passthrough } from 'msw'
import sharp from 'sharp'
import t from 'tap'
import { freePort } from '../free-port.js'
import { callOutcome, createMetrics } from '../../plugins/metrics.js'
import { errorOutcome } from '../../providers/provider-error.js'
import { loadConfig } from '../../plugins/config.js'
import { adminHeaders, build, mint, multipart, TEST_SECRETS } from '../helper.js'
import { interceptNetwork } from '../network.js'
import { completion, OPENAI_URL, sseResponse, streamChunks } from '../openai-fake.js'

const CANARY = 'CANARY-metrics-7f3a'
const OPENAI_KEY = 'sk-canary-openai-key-0123456789abcdef'

/** A licensed user whose id carries the canary, with a key of `mode`; its AI token. */
async function userToken (app: FastifyInstance, userId: string, plan: string, mode: 'live' | 'test') {
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan, status: 'active' } })
  const created = await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode } })
  const { key } = created.json() as { key: string }
  return { key, token: (await mint(app, key)).token }
}

/** Samples of a family in Prometheus text: `name{labels} value` lines. */
const samples = (text: string, family: string) => text.split('\n').filter((line) => line.startsWith(`${family}{`) || line.startsWith(`${family} `))

t.test('the metrics listener: every family after real calls, bounded labels only, nothing of users or their content', async (t) => {
  const port = await freePort()
  // A webhook receiver on loopback, so a delivery job runs.
  const receiver = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(204).end()) })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  t.teardown(() => receiver.close())
  const receiverPort = (receiver.address() as AddressInfo).port
  interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    const body = await request.json() as { stream?: boolean }
    return body.stream === true ? sseResponse(streamChunks(['Open ', 'the Export panel.'])) : Response.json(completion('Open the Export panel.'))
  }), http.all(`http://127.0.0.1:${port}/*`, () => passthrough()), http.all(`http://127.0.0.1:${receiverPort}/*`, () => passthrough()))
  const { app } = await build(t, { env: { METRICS_PORT: String(port), OPENAI_API_KEY: OPENAI_KEY, WEBHOOK_ALLOW_PRIVATE: 'true' } })
  const url = await app.metrics.listen()
  t.equal(url, `http://127.0.0.1:${port}/metrics`)

  const userId = `user-${CANARY}`
  const requestIds: string[] = []
  const call = async (opts: InjectOptions) => {
    const res = await app.inject(opts)
    requestIds.push(String(res.headers['x-request-id']))
    return res
  }
  const live = await userToken(app, userId, 'pro', 'live')
  const test = await userToken(app, `${userId}-test`, 'pro', 'test')
  const free = await userToken(app, `${userId}-free`, 'free', 'live')
  const auth = (token: string) => ({ authorization: `Bearer ${token}` })
  const message = { message: `${CANARY} how do I export?` }

  t.equal((await call({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: auth(live.token), payload: message })).statusCode, 200)
  const streamed = await call({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: { ...auth(live.token), accept: 'text/event-stream' }, payload: message })
  t.match(streamed.body, /event: done/)
  t.equal((await call({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: auth(test.token), payload: message })).statusCode, 200)
  const image = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 230, g: 230, b: 230 } } }).png().toBuffer()
  const upload = multipart([{ name: 'image', value: image, filename: `${CANARY}.png`, type: 'image/png' }])
  t.equal((await call({ method: 'POST', url: '/v1/ai/background-removal', headers: { ...auth(test.token), 'content-type': upload.contentType }, payload: upload.payload })).statusCode, 200)
  t.equal((await call({ method: 'POST', url: '/v1/ai/scans', headers: auth(test.token), payload: { text: `${CANARY}: the tenant pays all repairs.` } })).statusCode, 201)
  const refused = await call({ method: 'POST', url: '/v1/openai/chat/completions', headers: auth(free.token), payload: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: CANARY }] } })
  t.equal(refused.json().error.code, 'NOT_ENTITLED')
  t.equal((await call({ method: 'GET', url: `/v1/no-such-route/${CANARY}?user=${userId}` })).statusCode, 404)
  const hook = await call({ method: 'POST', url: '/v1/webhooks', headers: auth(test.token), payload: { url: `http://127.0.0.1:${receiverPort}/${CANARY}`, events: ['staging.completed'] } })
  t.equal(hook.statusCode, 201)
  t.equal((await call({ method: 'POST', url: `/v1/webhooks/${hook.json().id as string}/test`, headers: auth(test.token) })).statusCode, 202)

  const scrape = async () => {
    const res = await fetch(url as string)
    t.equal(res.status, 200)
    t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
    return res.text()
  }
  // The delivery runs as a job: wait for it to be counted.
  let text = await scrape()
  for (let i = 0; i < 100 && samples(text, 'portal_webhook_attempts_total').length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    text = await scrape()
  }

  t.match(samples(text, 'http_requests_total'), [/^/, /^/], 'requests are counted')
  t.ok(samples(text, 'http_requests_total').includes('http_requests_total{route="/v1/ai/settings-assistant/messages",feature="settings-assistant",method="POST",status_code="200"} 3'), 'by route pattern, method and status')
  t.ok(samples(text, 'http_requests_total').includes('http_requests_total{route="(unmatched)",feature="none",method="GET",status_code="404"} 1'), 'an unknown path is one series, never the path')
  t.ok(samples(text, 'http_request_duration_seconds_count').some((l) => l.startsWith('http_request_duration_seconds_count{route="/v1/webhooks/:id/test"')))
  t.ok(samples(text, 'portal_http_errors_total').includes('portal_http_errors_total{route="/v1/openai/chat/completions",feature="openai-compatible",code="NOT_ENTITLED"} 1'))
  t.ok(samples(text, 'portal_refusals_total').includes('portal_refusals_total{feature="openai-compatible",code="NOT_ENTITLED"} 1'))
  const calls = samples(text, 'portal_provider_calls_total')
  t.ok(calls.includes('portal_provider_calls_total{feature="settings-assistant",mode="live",vendor="openai",model="gpt-4o-mini",outcome="ok"} 2'), 'live assistant calls by vendor and model')
  t.ok(calls.includes('portal_provider_calls_total{feature="settings-assistant",mode="test",vendor="sandbox",model="sandbox-catalog-1",outcome="ok"} 1'))
  t.ok(calls.includes('portal_provider_calls_total{feature="background-removal",mode="test",vendor="sandbox",model="",outcome="ok"} 1'))
  t.ok(calls.includes('portal_provider_calls_total{feature="risk-scan",mode="test",vendor="sandbox",model="",outcome="ok"} 1'))
  t.ok(samples(text, 'portal_provider_call_duration_seconds_count').includes('portal_provider_call_duration_seconds_count{feature="settings-assistant",mode="live",vendor="openai",model="gpt-4o-mini"} 2'))
  t.ok(samples(text, 'portal_provider_first_token_seconds_count').includes('portal_provider_first_token_seconds_count{feature="settings-assistant",mode="live",vendor="openai",model="gpt-4o-mini"} 1'), 'time to first token of the stream')
  t.ok(samples(text, 'portal_tokens_total').includes('portal_tokens_total{feature="settings-assistant",vendor="openai",model="gpt-4o-mini",direction="input"} 1800'), 'the provider\'s usage, 900 input tokens a call')
  t.ok(samples(text, 'portal_tokens_total').includes('portal_tokens_total{feature="settings-assistant",vendor="openai",model="gpt-4o-mini",direction="output"} 80'))
  t.match(samples(text, 'portal_cost_micro_usd_total'), [/^portal_cost_micro_usd_total\{feature="settings-assistant",vendor="openai",model="gpt-4o-mini"\} \d+$/], 'cost of the live calls (the sandbox costs nothing)')
  t.ok(samples(text, 'portal_settled_calls_total').includes('portal_settled_calls_total{feature="background-removal",vendor="sandbox"} 1'))
  t.ok(samples(text, 'portal_circuit_breaker_state').includes('portal_circuit_breaker_state{vendor="openai"} 0'), 'the configured vendor\'s breaker, closed')
  t.ok(samples(text, 'portal_jobs_queued').some((l) => l.startsWith('portal_jobs_queued{queue="webhooks.deliver"}')))
  t.ok(samples(text, 'portal_jobs_active').some((l) => l.startsWith('portal_jobs_active{queue="staging.run"}')))
  t.ok(samples(text, 'portal_job_runs_total').includes('portal_job_runs_total{queue="webhooks.deliver",outcome="completed"} 1'))
  t.ok(samples(text, 'portal_job_duration_seconds_count').some((l) => l.startsWith('portal_job_duration_seconds_count{queue="webhooks.deliver",outcome="completed"}')))
  t.ok(samples(text, 'portal_webhook_attempts_total').includes('portal_webhook_attempts_total{result="delivered"} 1'))
  t.ok(samples(text, 'portal_settlements_pending').includes('portal_settlements_pending 0'))
  t.ok(samples(text, 'process_cpu_user_seconds_total').length === 1 && samples(text, 'nodejs_eventloop_lag_seconds').length === 1, 'process metrics')

  t.notOk(text.includes(CANARY), 'no canary: not the prompt, the file name, the path, the webhook URL or the user id')
  t.notOk(text.includes('user-'), 'no user id')
  t.notOk(text.includes(live.key.slice(0, 12)) || text.includes(test.key.slice(0, 12)), 'no key prefix')
  t.notOk(requestIds.some((id) => text.includes(id)), 'no request id')

  const publicPort = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(publicPort.statusCode, 404, 'nothing at /metrics on the public port')
  t.equal(publicPort.json().error.code, 'NOT_FOUND')
  const other = await fetch(`http://127.0.0.1:${port}/`)
  t.equal(other.status, 404, 'the listener serves GET /metrics only')
  t.equal((await fetch(url as string, { method: 'POST' })).status, 404)
})

t.test('bad values of the new variables stop startup naming them', async (t) => {
  for (const [name, value] of [['METRICS_PORT', '70000'], ['METRICS_PORT', 'nine'], ['OTEL_EXPORTER_OTLP_ENDPOINT', 'ftp://collector'], ['OTEL_SERVICE_NAME', 'x'.repeat(101)]]) {
    t.throws(() => loadConfig({ ...TEST_SECRETS, [name as string]: value as string }), new RegExp(name as string), `${name as string}=${JSON.stringify(value)}`)
  }
})

t.test('METRICS_HOST may be an IPv6 address', async (t) => {
  const port = await freePort()
  const { app } = await build(t, { env: { METRICS_HOST: '::1', METRICS_PORT: String(port) } })
  const url = await app.metrics.listen()
  t.equal(url, `http://[::1]:${port}/metrics`)
  t.equal((await fetch(url as string)).status, 200)
})

t.test('METRICS_PORT=0: no listener; a port in use is an error at listen', async (t) => {
  const off = await build(t, { env: { METRICS_PORT: '0' } })
  t.equal(await off.app.metrics.listen(), null)
  const port = await freePort()
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve))
  t.teardown(() => taken.close())
  const { app } = await build(t, { env: { METRICS_PORT: String(port) } })
  await t.rejects(app.metrics.listen(), { code: 'EADDRINUSE' })
})

t.test('a scrape: queue figures that cannot be read leave the gauges as they were; a collector that fails answers 500', async (t) => {
  const port = await freePort()
  const { app, logs } = await build(t, { env: { METRICS_PORT: String(port) } })
  const url = await app.metrics.listen() as string
  app.metrics.sources.queues = async () => ({ 'staging.run': { queued: 3, active: 1 } })
  t.match(await (await fetch(url)).text(), /portal_jobs_queued\{queue="staging.run"\} 3/)
  app.metrics.sources.queues = async () => { throw new Error('the store is down') }
  t.match(await (await fetch(url)).text(), /portal_jobs_queued\{queue="staging.run"\} 3/, 'the last figures stay')
  app.metrics.sources.breakers = () => { throw new Error('no breakers') }
  const failed = await fetch(url)
  t.equal(failed.status, 500)
  t.equal(await failed.text(), 'The metrics could not be read.\n')
  t.equal(logs.find('metrics scrape failed').length, 1)
})

t.test('labels: a value that is not a bounded name becomes other; a feature outside the registry none; an unknown model other', async (t) => {
  const metrics = createMetrics({ knownModel: (id) => id === 'known-model' })
  metrics.providerCall({ feature: `${CANARY} feature`, mode: 'live', vendor: `vendor ${CANARY}`, model: `model-${CANARY}`, outcome: 'a/b c' })
  metrics.providerCall({ feature: 'chat', mode: 'test', vendor: 'openai', model: 'known-model', outcome: 'ok' })
  metrics.settlement({ feature: 'chat', vendor: 'openai', model: null, tokensIn: 0, tokensOut: 0, costMicroUsd: 0 })
  metrics.settlement({ feature: 'background-removal', vendor: 'removebg' })
  metrics.request({ route: undefined, method: 'BREW', status: 418, seconds: 0.001, errorCode: 'VALIDATION_ERROR', feature: undefined })
  metrics.request({ route: '/v1/ai/background-removal', method: 'POST', status: 429, seconds: 0.001, errorCode: 'RATE_LIMITED', feature: 'background-removal' })
  const text = await metrics.scrape()
  t.notOk(text.includes(CANARY))
  t.match(text, /portal_provider_calls_total\{feature="none",mode="live",vendor="other",model="other",outcome="other"\} 1/)
  t.match(text, /portal_provider_calls_total\{feature="chat",mode="test",vendor="openai",model="known-model",outcome="ok"\} 1/)
  t.match(text, /portal_settled_calls_total\{feature="chat",vendor="openai"\} 1/)
  t.notMatch(text, /portal_tokens_total\{/, 'no tokens, no series')
  t.match(text, /http_requests_total\{route="\(unmatched\)",feature="none",method="OTHER",status_code="418"\} 1/)
  t.notMatch(text, /portal_refusals_total\{feature="none"/, 'a validation error is not a refusal')
  t.match(text, /portal_refusals_total\{feature="background-removal",code="RATE_LIMITED"\} 1/)
  t.match(text, /portal_settlements_pending 0/, 'no source yet: nothing waits')
  t.same([errorOutcome(Object.assign(new Error('x'), { code: 'PROVIDER_TIMEOUT' })), errorOutcome(new Error('no code')), errorOutcome(null), errorOutcome({ code: 7 })],
    ['PROVIDER_TIMEOUT', 'failed', 'failed', 'failed'], 'a failure\'s outcome is its code, or failed')
  t.same([callOutcome('completed', undefined), callOutcome('failed', 'PROVIDER_ERROR'), callOutcome('client-aborted', undefined), callOutcome('blocked', 'CONTENT_REJECTED')],
    ['ok', 'PROVIDER_ERROR', 'client-aborted', 'CONTENT_REJECTED'], 'a recorded call\'s outcome')
  t.match(text, /portal_settled_calls_total\{feature="background-removal",vendor="removebg"\} 1/, 'a settlement without tokens or cost is counted')
})
