import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import t, { type Test } from 'tap'
import { build, dumpAllTables, JOBS_SCHEMA, mint, userWithKey } from '../../../helper.js'

async function tokenHeaders (app: Awaited<ReturnType<typeof build>>['app']) {
  const user = await userWithKey(app)
  return { userId: user.userId, headers: { authorization: `Bearer ${(await mint(app, user.key)).token}` } }
}

async function receiver (t: Test) {
  const received: Array<{ headers: Record<string, string>, body: string }> = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => { received.push({ headers: req.headers as Record<string, string>, body }); res.end() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, received }
}

t.test('create, list, read, change, ping and delete; another user\'s webhook is 404 on every route', async (t) => {
  const { app, logs } = await build(t, { env: { WEBHOOK_ALLOW_PRIVATE: 'true' } })
  const hook = await receiver(t)
  const me = await tokenHeaders(app)
  const other = await tokenHeaders(app)
  const created = await app.inject({ method: 'POST', url: '/v1/webhooks', headers: me.headers, payload: { url: hook.url, events: ['staging.completed', 'batch.completed'], description: 'CANARY-webhook-description' } })
  t.equal(created.statusCode, 201)
  const body = created.json()
  t.match(body, { id: /^wh_/, url: hook.url, events: ['staging.completed', 'batch.completed'], enabled: true, disabledReason: null, secret: /^whsec_/ })
  t.equal(created.headers.location, `/v1/webhooks/${body.id as string}`)
  t.equal(created.headers['cache-control'], 'no-store')

  const listed = await app.inject({ url: '/v1/webhooks', headers: me.headers })
  t.match(listed.json(), { data: [{ id: body.id }], nextCursor: null })
  t.notOk(listed.body.includes('whsec_'), 'the secret is shown once, never listed')
  t.same((await app.inject({ url: '/v1/webhooks', headers: other.headers })).json(), { data: [], nextCursor: null })

  for (const [method, url, payload] of [
    ['GET', `/v1/webhooks/${body.id as string}`, undefined],
    ['PATCH', `/v1/webhooks/${body.id as string}`, { enabled: false }],
    ['POST', `/v1/webhooks/${body.id as string}/test`, undefined],
    ['DELETE', `/v1/webhooks/${body.id as string}`, undefined]
  ] as const) {
    const res = await app.inject({ method, url, headers: other.headers, ...(payload === undefined ? {} : { payload }) })
    t.equal(res.statusCode, 404, `${method} ${url} of another user`)
    t.equal(res.json().error.code, 'NOT_FOUND')
  }

  const patched = await app.inject({ method: 'PATCH', url: `/v1/webhooks/${body.id as string}`, headers: me.headers, payload: { events: ['ping'], description: null } })
  t.match(patched.json(), { events: ['ping'], description: null })
  const ping = await app.inject({ method: 'POST', url: `/v1/webhooks/${body.id as string}/test`, headers: me.headers })
  t.equal(ping.statusCode, 202)
  t.match(ping.json(), { deliveryId: /^msg_/, status: 'queued' })
  for (let i = 0; i < 100 && hook.received.length === 0; i++) await sleep(100)
  const [got] = hook.received
  t.match(JSON.parse(got?.body as string), { type: 'ping', data: { webhookId: body.id } })
  t.ok(new StandardWebhook((body.secret as string).slice(6)).verify(got?.body as string, got?.headers as Record<string, string>), 'delivered by the job queue, signed')
  t.equal(got?.headers['webhook-id'], ping.json().deliveryId)

  t.equal((await app.inject({ method: 'PATCH', url: `/v1/webhooks/${body.id as string}`, headers: me.headers, payload: { enabled: false } })).json().disabledReason, 'by-user')
  t.equal((await app.inject({ method: 'POST', url: `/v1/webhooks/${body.id as string}/test`, headers: me.headers })).json().error.code, 'CONFLICT')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/webhooks/${body.id as string}`, headers: me.headers })).statusCode, 204)
  t.equal((await app.inject({ url: `/v1/webhooks/${body.id as string}`, headers: me.headers })).statusCode, 404)
  const audit = await app.audit.list({ target: `webhook:${body.id as string}`, limit: 10 })
  t.same(audit.events.map((e) => e.action).sort(), ['webhook.created', 'webhook.deleted'])
  t.notOk(logs.text.includes('CANARY-webhook') || logs.text.includes('whsec_'), 'neither the description nor the secret in a log line')
  t.notOk(JSON.stringify(audit).includes('CANARY'))
  const dump = await dumpAllTables(app.store)
  t.match(dump, /webhook_endpoints/, 'the dump has the webhook tables')
  t.match(dump, new RegExp(`${JOBS_SCHEMA}\\.job`), 'and the job queue\'s')
  for (const canary of ['CANARY-webhook', (body.secret as string).slice(6), hook.url]) t.notOk(dump.includes(canary), `${canary.slice(0, 14)}… is in no table in plain text`)
})

t.test('the SSRF guard (default): only https to public addresses; bad input is a clear 400', async (t) => {
  const { app } = await build(t)
  const me = await tokenHeaders(app)
  const create = async (payload: unknown) => app.inject({ method: 'POST', url: '/v1/webhooks', headers: me.headers, payload: payload as object })
  for (const url of ['https://127.0.0.1/h', 'https://localhost:8443/h', 'https://10.0.0.1/h', 'https://169.254.169.254/latest/meta-data', 'https://[::1]/h', 'https://[::ffff:192.168.0.1]/h', 'http://8.8.8.8/h', 'https://u:p@8.8.8.8/h']) {
    const res = await create({ url, events: ['ping'] })
    t.equal(res.statusCode, 400, url)
    t.match(res.json().error, { code: 'VALIDATION_ERROR', details: { fields: [{ path: '/url' }] } })
  }
  t.equal((await create({ url: 'https://8.8.8.8/hooks', events: ['ping'] })).statusCode, 201, 'a public address is fine')
  for (const payload of [{ url: 'https://8.8.8.8/h', events: ['staging.exploded'] }, { url: 'https://8.8.8.8/h', events: [] }, { url: 'https://8.8.8.8/h', events: ['ping', 'ping'] },
    { url: 'not a url', events: ['ping'] }, { url: 'https://8.8.8.8/h', events: ['ping'], extra: 1 }, { events: ['ping'] }]) {
    t.equal((await create(payload)).json().error.code, 'VALIDATION_ERROR', JSON.stringify(payload))
  }
  const id = (await app.inject({ url: '/v1/webhooks', headers: me.headers })).json().data[0].id as string
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/webhooks/${id}`, headers: me.headers, payload: { url: 'https://192.168.1.1/x' } })).statusCode, 400)
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/webhooks/${id}`, headers: me.headers, payload: {} })).statusCode, 400, 'a change of nothing')
  t.equal((await app.inject({ url: '/v1/webhooks/wh_bad', headers: me.headers })).json().error.code, 'VALIDATION_ERROR')
  for (const cursor of ['not a cursor', 'yesterday|wh_1', '2026-01-01T00:00:00.000Z|']) {
    const res = await app.inject({ url: `/v1/webhooks?cursor=${Buffer.from(cursor).toString('base64url')}`, headers: me.headers })
    t.equal(res.json().error.code, 'VALIDATION_ERROR', `cursor ${cursor}`)
  }
  t.equal((await app.inject({ url: '/v1/webhooks' })).json().error.code, 'UNAUTHENTICATED')
})

t.test('pages of webhooks, newest first; at most 20 per user', async (t) => {
  const { app } = await build(t)
  const me = await tokenHeaders(app)
  const ids: string[] = []
  for (let i = 0; i < 20; i++) {
    ids.push((await app.inject({ method: 'POST', url: '/v1/webhooks', headers: me.headers, payload: { url: `https://8.8.8.8/h${i}`, events: ['ping'] } })).json().id)
  }
  const full = await app.inject({ method: 'POST', url: '/v1/webhooks', headers: me.headers, payload: { url: 'https://8.8.8.8/h', events: ['ping'] } })
  t.equal(full.statusCode, 409)
  t.equal(full.json().error.code, 'CONFLICT')
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const page = (await app.inject({ url: `/v1/webhooks?limit=7${cursor === null ? '' : `&cursor=${cursor}`}`, headers: me.headers })).json() as { data: Array<{ id: string }>, nextCursor: string | null }
    seen.push(...page.data.map((w) => w.id))
    cursor = page.nextCursor
  } while (cursor !== null)
  t.same(seen, [...ids].reverse())
})

t.test('an endpoint that failed every delivery for 3 days is turned off by the delivery job, and audited', async (t) => {
  const { app } = await build(t, { env: { WEBHOOK_ALLOW_PRIVATE: 'true' } })
  const failing = createServer((req, res) => { req.resume(); res.writeHead(500).end() })
  await new Promise<void>((resolve) => failing.listen(0, '127.0.0.1', resolve))
  t.teardown(() => failing.close())
  const me = await tokenHeaders(app)
  const hook = await app.webhooks.create(me.userId, { url: `http://127.0.0.1:${(failing.address() as AddressInfo).port}/h`, events: ['scan.completed'] })
  await app.store.query("UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' WHERE id = $1", [hook.id])
  await app.webhooks.emit(me.userId, 'scan.completed', { scanId: 'scan-1', status: 'completed' })
  let state
  for (let i = 0; i < 100 && (state = (await app.inject({ url: `/v1/webhooks/${hook.id}`, headers: me.headers })).json()).enabled; i++) await sleep(100)
  t.match(state, { enabled: false, disabledReason: 'failing' })
  t.match((await app.audit.list({ action: 'webhook.disabled', target: `webhook:${hook.id}`, limit: 1 })).events, [{ actor: 'system', requestId: null, details: { userId: me.userId } }])
})
