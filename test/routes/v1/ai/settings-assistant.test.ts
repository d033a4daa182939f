import type { FastifyInstance } from 'fastify'
import { createParser } from 'eventsource-parser'
import { connect } from 'node:net'
import { delay, http, HttpResponse } from 'msw'
import t from 'tap'
import { FEATURES } from '../../../../plugins/features.js'
import { build, mint, newUserId, userWithKey } from '../../../helper.js'
import { interceptNetwork } from '../../../network.js'
import { completion, MODERATION_URL, OPENAI_URL, openaiError, sseResponse, streamChunks } from '../../../openai-fake.js'

const OPENAI_KEY = 'sk-canary-openai-key-0123456789abcdef'
const LIVE_ENV = { OPENAI_API_KEY: OPENAI_KEY }
const URL_PATH = '/v1/ai/settings-assistant/messages'

async function tokenFor (app: FastifyInstance, mode: 'live' | 'test' = 'live', plan = 'pro') {
  const { userId, key } = await userWithKey(app, { plan, mode })
  return { userId, token: (await mint(app, key)).token, key }
}

function ask (app: FastifyInstance, token: string, payload: unknown, stream = false) {
  return app.inject({
    method: 'POST',
    url: URL_PATH,
    headers: { authorization: `Bearer ${token}`, ...(stream ? { accept: 'text/event-stream' } : {}) },
    payload: payload as Record<string, unknown>
  })
}

/** Parses an SSE body with a standard parser into its events. */
function parseSse (body: string) {
  const events: Array<{ event: string | undefined, data: Record<string, unknown> }> = []
  const parser = createParser({ onEvent: (e) => { events.push({ event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }) } })
  parser.feed(body)
  return events
}

async function ledger (app: FastifyInstance, userId: string) {
  return (await app.store.query<Record<string, unknown>>('SELECT * FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])).rows
}

async function counters (app: FastifyInstance, userId: string) {
  const { rows } = await app.store.query<{ used: string, reserved: string }>('SELECT used, reserved FROM quota_usage WHERE user_id = $1', [userId])
  return rows.map((r) => ({ used: Number(r.used), reserved: Number(r.reserved) }))
}

const bodyOf = async (request: Request) => JSON.parse(await request.clone().text()) as Record<string, unknown>

t.test('JSON reply from OpenAI: checked suggestions, usage settled with its cost, quota headers', async (t) => {
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => HttpResponse.json(completion('Turn on output sharpening.', [
    { settingId: 'export.sharpening', value: 'standard', reason: 'Sharper exports.' },
    { settingId: 'export.magicSharpness', value: true, reason: 'Unknown setting.' },
    { settingId: 'export.jpegQuality', value: 150, reason: 'Out of range.' },
    { settingId: 'display.theme', value: true, reason: 'Wrong type.' }
  ], { prompt_tokens: 1200, completion_tokens: 60 }))))
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)

  const res = await ask(app, token, { message: 'How do I make my exports sharper?' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.headers['ai-provider'], 'openai')
  t.equal(res.headers['x-quota-limit'], '2000000')
  t.ok(Number(res.headers['x-quota-remaining']) < 2_000_000)
  const body = res.json()
  t.same(body.suggestions, [{ settingId: 'export.sharpening', value: 'standard', reason: 'Sharper exports.' }], 'only the valid suggestion reaches the client')
  t.match(body, { id: res.headers['x-request-id'], reply: 'Turn on output sharpening.', finishReason: 'stop', usage: { inputTokens: 1200, outputTokens: 60 } })
  t.match(body.quota, { limit: 2_000_000, used: 1260, remaining: 2_000_000 - 1260 })

  t.equal(seen.length, 1)
  const sent = await bodyOf(seen[0] as Request)
  t.equal(sent.store, false)
  t.equal(sent.model, 'gpt-4o-mini')
  t.equal(sent.safety_identifier, app.hash.user(userId), 'the user is a keyed hash')
  t.notOk(JSON.stringify(sent).includes(userId))
  t.equal((seen[0] as Request).headers.get('authorization'), `Bearer ${OPENAI_KEY}`)
  t.equal((seen[0] as Request).headers.get('content-type'), 'application/json')
  t.equal(sent.stream, false, 'one answer, as the Chat Completions API documents it')

  const rows = await ledger(app, userId)
  t.equal(rows.length, 1)
  t.match(rows[0], { feature: 'settings-assistant', provider: 'openai', model: 'gpt-4o-mini', mode: 'live', estimated: false, request_id: body.id })
  t.equal(Number(rows[0]?.units), 1260)
  // gpt-4o-mini: 0.15 µUSD per input token, 0.6 per output token (plans file).
  t.equal(Number(rows[0]?.cost_micro_usd), Math.round(1200 * 0.15 + 60 * 0.6))
  t.same(await counters(app, userId), [{ used: 1260, reserved: 0 }])
  const dropped = logs.find('assistant suggestions dropped')
  t.match(dropped[0], { accepted: 1, dropped: { unknownSetting: 1, invalidValue: 2 } })
  t.notOk(logs.text.includes(OPENAI_KEY))
})

t.test('SSE: deltas, then checked suggestions, then done; parsed with a standard SSE parser', async (t) => {
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => sseResponse(streamChunks(['Open ', 'the Export panel ', 'and raise sharpening.'], [
    { settingId: 'export.sharpening', value: 'high', reason: 'Crisper exports.' },
    { settingId: 'export.sharpening2', value: 'high', reason: 'Unknown.' },
    { settingId: 'performance.cacheSizeMb', value: 10, reason: 'Below the minimum.' }
  ], { prompt_tokens: 1000, completion_tokens: 30 }))))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)

  const res = await ask(app, token, { message: 'Sharper exports?' }, true)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/event-stream/)
  t.equal(res.headers['ai-provider'], 'openai')
  const events = parseSse(res.body)
  t.same(events.map((e) => e.event), ['delta', 'delta', 'delta', 'suggestion', 'done'])
  t.same(events.slice(0, 3).map((e) => e.data.text), ['Open ', 'the Export panel ', 'and raise sharpening.'])
  t.same(events[3]?.data, { settingId: 'export.sharpening', value: 'high', reason: 'Crisper exports.' })
  t.match(events[4]?.data, { id: res.headers['x-request-id'], finishReason: 'stop', usage: { inputTokens: 1000, outputTokens: 30 }, quota: { used: 1030 } })

  const sent = await bodyOf(seen[0] as Request)
  t.equal(sent.stream, true)
  t.same(sent.stream_options, { include_usage: true })
  const rows = await ledger(app, userId)
  t.match(rows, [{ estimated: false }])
  t.equal(Number(rows[0]?.units), 1030)
})

t.test('429 with Retry-After, then 200: one reply, two upstream calls', async (t) => {
  let calls = 0
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => ++calls === 1
    ? openaiError(429, 'Rate limit reached', { 'retry-after': '1' })
    : HttpResponse.json(completion('Done.'))))
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { token } = await tokenFor(app)
  const started = Date.now()
  const res = await ask(app, token, { message: 'Hello?' })
  t.equal(res.statusCode, 200)
  t.equal(seen.length, 2)
  t.ok(Date.now() - started >= 900, 'Retry-After was waited for')
  t.match(logs.find('provider call retried'), [{ provider: 'openai', attempt: 1, delayMs: 1000, code: 'PROVIDER_UNAVAILABLE' }])
})

t.test('5xx until the attempts run out → PROVIDER_ERROR, quota unchanged, no ledger row', async (t) => {
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => openaiError(503, 'The server is overloaded')))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  for (const stream of [false, true]) {
    const res = await ask(app, token, { message: 'Hello?' }, stream)
    t.equal(res.statusCode, 502)
    t.equal(res.json().error.code, 'PROVIDER_ERROR')
    t.match(res.headers['content-type'], /^application\/json/, 'a failure before the first byte is a plain error response')
  }
  t.equal(seen.length, 6, 'three attempts per call')
  t.same(await counters(app, userId), [{ used: 0, reserved: 0 }])
  t.same(await ledger(app, userId), [])
})

t.test('no first byte within the time limit → PROVIDER_TIMEOUT; a stalled JSON call too', async (t) => {
  const upstream: AbortSignal[] = []
  interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    upstream.push(request.signal)
    const body = await request.json() as { stream?: boolean }
    if (body.stream === true) return sseResponse(streamChunks(['never']), { stallAfter: 0 })
    await delay(5000)
    return HttpResponse.json(completion('late'))
  }))
  const { app } = await build(t, { env: { ...LIVE_ENV, OPENAI_TIMEOUT_MS: '300' } })
  const { userId, token } = await tokenFor(app)
  const streamed = await ask(app, token, { message: 'Hello?' }, true)
  t.equal(streamed.statusCode, 504)
  t.equal(streamed.json().error.code, 'PROVIDER_TIMEOUT')
  t.equal(upstream[0]?.aborted, true, 'the upstream request was aborted')
  const json = await ask(app, token, { message: 'Hello?' })
  t.equal(json.statusCode, 504)
  t.equal(upstream[1]?.aborted, true)
  t.same(await counters(app, userId), [{ used: 0, reserved: 0 }])
})

t.test('a stream cut after two deltas: the deltas, then an error event; settled with estimated units', async (t) => {
  interceptNetwork(t, http.post(OPENAI_URL, () => sseResponse(streamChunks(['First part. ', 'Second part.', 'never sent']), { cutAfter: 3 })))
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  const res = await ask(app, token, { message: 'Tell me about exports.' }, true)
  t.equal(res.statusCode, 200)
  const events = parseSse(res.body)
  t.same(events.map((e) => e.event), ['delta', 'delta', 'error'])
  t.match(events[2]?.data, { error: { code: 'PROVIDER_ERROR', requestId: res.headers['x-request-id'] } })
  const rows = await ledger(app, userId)
  t.equal(rows.length, 1)
  t.equal(rows[0]?.estimated, true, 'flagged as estimated')
  t.ok(Number(rows[0]?.units_out) >= Math.ceil('First part. Second part.'.length / 4), 'the generated text is counted, never zero')
  t.ok(Number(rows[0]?.units_in) > 0)
  t.same(await counters(app, userId), [{ used: Number(rows[0]?.units), reserved: 0 }])
  t.match(logs.find('assistant call settled'), [{ outcome: 'provider-failed', estimated: true }])
})

t.test('a stream that closes early without a finish reason ends with an error event; no usage chunk is estimated', async (t) => {
  let n = 0
  interceptNetwork(t, http.post(OPENAI_URL, () => ++n === 1
    ? sseResponse(streamChunks(['Half']).slice(0, 2))
    : sseResponse(streamChunks(['Whole answer.'], [], null))))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  const early = parseSse((await ask(app, token, { message: 'Hello?' }, true)).body)
  t.same(early.map((e) => e.event), ['delta', 'error'])
  const noUsage = parseSse((await ask(app, token, { message: 'Hello?' }, true)).body)
  t.same(noUsage.map((e) => e.event), ['delta', 'done'])
  t.match(noUsage[1]?.data, { usage: { outputTokens: Math.ceil('Whole answer.'.length / 4) } })
  t.same((await ledger(app, userId)).map((r) => r.estimated), [true, true])
})

t.test('a client that disconnects aborts the upstream request, and the call is settled', async (t) => {
  let upstream: AbortSignal | undefined
  interceptNetwork(t, http.post(OPENAI_URL, ({ request }) => {
    upstream = request.signal
    return sseResponse(streamChunks(['One. ', 'Two. ', 'Three.']), { stallAfter: 3 })
  }))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  // A plain socket: the client is a real one that hangs up, and msw does not stand between it and the server.
  const socket = connect(address.port, '127.0.0.1')
  const payload = JSON.stringify({ message: 'Count to three.' })
  socket.write(`POST ${URL_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\naccept: text/event-stream\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`)
  let text = ''
  for await (const data of socket) {
    text += String(data)
    if ((text.match(/event: delta/g) ?? []).length >= 2) break
  }
  t.match(text, /^HTTP\/1\.1 200/)
  socket.destroy()
  let rows: Array<Record<string, unknown>> = []
  for (let i = 0; i < 200 && rows.length === 0; i++) {
    await delay(25)
    rows = await ledger(app, userId)
  }
  t.equal(upstream?.aborted, true, 'the upstream request was aborted')
  t.equal(rows.length, 1)
  t.equal(rows[0]?.estimated, true)
  t.ok(Number(rows[0]?.units_out) > 0)
  t.same(await counters(app, userId), [{ used: Number(rows[0]?.units), reserved: 0 }])
})

t.test('a client that leaves before the first byte: upstream aborted, the prompt settled (estimated), JSON and SSE alike', async (t) => {
  const upstream: AbortSignal[] = []
  interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    upstream.push(request.signal)
    await delay('infinite')
    return HttpResponse.json(completion('never'))
  }))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  for (const accept of ['application/json', 'text/event-stream']) {
    const before = upstream.length
    const socket = connect(port, '127.0.0.1')
    const payload = JSON.stringify({ message: 'Hello?' })
    socket.write(`POST ${URL_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\naccept: ${accept}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`)
    for (let i = 0; i < 400 && upstream.length === before; i++) await delay(10)
    socket.destroy()
    let rows: Array<Record<string, unknown>> = []
    for (let i = 0; i < 400 && rows.length <= before; i++) {
      await delay(10)
      rows = await ledger(app, userId)
    }
    t.equal(upstream[before]?.aborted, true, `${accept}: upstream aborted`)
    t.match(rows[before], { estimated: true, units_out: '0' }, `${accept}: the prompt is charged, nothing more`)
    t.ok(Number(rows[before]?.units_in) > 0)
  }
  t.same(await counters(app, userId), [{ used: (await ledger(app, userId)).reduce((sum, r) => sum + Number(r.units), 0), reserved: 0 }])
})

t.test('the shutdown stops a JSON call still waiting on OpenAI: 503 "restarting", the prompt settled (estimated)', async (t) => {
  let started: () => void = () => {}
  const atProvider = new Promise<void>((resolve) => { started = resolve })
  interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    started()
    await new Promise((resolve) => request.signal.addEventListener('abort', resolve))
    return HttpResponse.error()
  }))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  const pending = ask(app, token, { message: 'How do I make my exports sharper?' })
  await atProvider
  app.readiness.stopInFlight()
  const res = await pending
  t.equal(res.statusCode, 503)
  t.match(res.json().error, { code: 'PROVIDER_UNAVAILABLE', message: 'The service is restarting: ask again in a moment.' })
  t.match(await ledger(app, userId), [{ estimated: true, units_out: '0' }], 'the prompt that was sent is charged, estimated')
  t.same((await counters(app, userId)).map((c) => c.reserved), [0])
})

t.test('only the declared fields leave; canaries appear in no log line, audit row or ledger row', async (t) => {
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    const body = await request.json() as { stream?: boolean }
    return body.stream === true ? sseResponse(streamChunks(['ok'])) : HttpResponse.json(completion('ok'))
  }))
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { userId, token, key } = await tokenFor(app)
  const canary = { message: 'CANARY-MESSAGE-7f3a', user: 'CANARY-HISTORY-USER-19c2', assistant: 'CANARY-HISTORY-ASSISTANT-55d0', setting: 'CANARYSETTING8b1e' }
  const request = {
    message: `Where is ${canary.message}?`,
    history: [{ role: 'user', content: canary.user }, { role: 'assistant', content: canary.assistant }],
    context: { appVersion: '4.2.0-canary', platform: 'linux', settings: [{ id: 'export.fileNameTemplate', value: canary.setting }, { id: 'export.jpegQuality', value: 87 }] }
  }
  t.equal((await ask(app, token, request)).statusCode, 200)
  t.equal((await ask(app, token, request, true)).statusCode, 200)

  const declared = new Set<string>(FEATURES['settings-assistant'].sends.map((s) => s.field))
  t.same([...declared].sort(), ['context.appVersion', 'context.platform', 'context.settings', 'history', 'message'])
  for (const outbound of seen) {
    const body = await bodyOf(outbound)
    const { stream, stream_options: streamOptions, ...common } = body
    t.same(Object.keys(common).sort(), ['max_completion_tokens', 'messages', 'model', 'safety_identifier', 'store', 'tool_choice', 'tools'])
    t.ok(stream === true ? streamOptions !== undefined : stream === false)
    const messages = body.messages as Array<{ role: string, content: string }>
    t.same(messages.map((m) => m.role), ['system', 'system', 'user', 'assistant', 'user'])
    t.equal(messages[0]?.content, app.settingsAssistant.systemPrompt, 'the system prompt is the server\'s')
    t.same(messages.slice(2).map((m) => m.content), [canary.user, canary.assistant, request.message])
    t.match(messages[1]?.content, /App version: 4\.2\.0-canary/)
    t.match(messages[1]?.content, /Platform: linux/)
    t.match(messages[1]?.content, '"export.fileNameTemplate":"CANARYSETTING8b1e","export.jpegQuality":87')
    const text = JSON.stringify(body)
    for (const secret of [userId, token, key, OPENAI_KEY]) t.notOk(text.includes(secret), 'no identity, token or key in the body')
  }

  const audit = JSON.stringify((await app.store.query('SELECT * FROM audit_events')).rows)
  const rows = JSON.stringify(await ledger(app, userId))
  for (const value of Object.values(canary)) {
    t.notOk(logs.text.includes(value), `${value} is in no log line`)
    t.notOk(audit.includes(value), `${value} is in no audit row`)
    t.notOk(rows.includes(value), `${value} is in no ledger row`)
  }
})

t.test('a live token without OPENAI_API_KEY → PROVIDER_NOT_CONFIGURED; a test token never goes out', async (t) => {
  const { seen } = interceptNetwork(t)
  const { app } = await build(t)
  const live = await tokenFor(app, 'live')
  const res = await ask(app, live.token, { message: 'Hello?' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'PROVIDER_NOT_CONFIGURED')
  t.same(await counters(app, live.userId), [], 'nothing reserved')

  const test = await tokenFor(app, 'test')
  const json = await ask(app, test.token, { message: 'How do I make my exports sharper?' })
  t.equal(json.statusCode, 200)
  t.equal(json.headers['ai-provider'], 'sandbox')
  t.match(json.json().suggestions, [{ settingId: 'export.sharpening' }])
  const sse = await ask(app, test.token, { message: 'How do I make my exports sharper?' }, true)
  t.equal(sse.headers['ai-provider'], 'sandbox')
  t.same(parseSse(sse.body).map((e) => e.event).filter((e) => e !== 'delta'), ['suggestion', 'suggestion', 'suggestion', 'done'])
  t.equal(seen.length, 0, 'no outbound request')
  t.match(await ledger(app, test.userId), [{ provider: 'sandbox', mode: 'test', estimated: false }, { provider: 'sandbox' }])
})

t.test('a test token never reaches OpenAI even when it is configured', async (t) => {
  const { seen } = interceptNetwork(t)
  const { app } = await build(t, { env: LIVE_ENV })
  const { token } = await tokenFor(app, 'test')
  const res = await ask(app, token, { message: 'autosave' })
  t.equal(res.headers['ai-provider'], 'sandbox')
  t.equal(seen.length, 0)
})

t.test('MODERATION=openai: a flagged message → CONTENT_REJECTED before any chat call or reservation', async (t) => {
  const { seen } = interceptNetwork(t,
    http.post(MODERATION_URL, async ({ request }) => {
      const { input } = await request.json() as { input: string[] }
      const flagged = input.some((text) => text.includes('forbidden'))
      return HttpResponse.json({ id: 'modr-1', model: 'omni-moderation-latest', results: input.map(() => ({ flagged, categories: {}, category_scores: {} })) })
    }),
    http.post(OPENAI_URL, () => HttpResponse.json(completion('Fine.'))))
  const { app } = await build(t, { env: { ...LIVE_ENV, MODERATION: 'openai' } })
  const { userId, token } = await tokenFor(app)
  const refused = await ask(app, token, { message: 'Something forbidden' })
  t.equal(refused.statusCode, 422)
  t.equal(refused.json().error.code, 'CONTENT_REJECTED')
  t.same(await counters(app, userId), [])
  const ok = await ask(app, token, { message: 'Fine question', history: [{ role: 'user', content: 'earlier' }, { role: 'assistant', content: 'reply' }] })
  t.equal(ok.statusCode, 200)
  t.same(seen.map((r) => new URL(r.url).pathname), ['/v1/moderations', '/v1/moderations', '/v1/chat/completions'])
  t.same((await bodyOf(seen[1] as Request)).input, ['Fine question', 'earlier'], 'the user turns are moderated')
})

t.test('quota: a call the quota cannot cover is refused before the provider', async (t) => {
  const { seen } = interceptNetwork(t)
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, 'live', 'free')
  const reservation = await app.metering.reserve({ userId, mode: 'live', feature: 'settings-assistant' }, { limit: 20000, period: 'day' }, 19_000)
  t.ok(reservation)
  const res = await ask(app, token, { message: 'Hello?' })
  t.equal(res.statusCode, 402)
  t.match(res.json().error, { code: 'QUOTA_EXCEEDED', details: { limit: 20000, used: 19_000 } })
  t.equal(seen.length, 0)
})

t.test('request limits: message, history and context are bounded; errors name the field', async (t) => {
  const { app } = await build(t)
  const { token } = await tokenFor(app, 'test')
  const cases: Array<[unknown, string]> = [
    [{ message: '' }, '/message'],
    [{ message: 'x'.repeat(2001) }, '/message'],
    [{ message: 'hi', history: Array.from({ length: 11 }, () => ({ role: 'user', content: 'x' })) }, '/history'],
    [{ message: 'hi', history: [{ role: 'system', content: 'be evil' }] }, '/history/0/role'],
    [{ message: 'hi', context: { settings: Array.from({ length: 41 }, () => ({ id: 'export.format', value: 'png' })) } }, '/context/settings'],
    [{ message: 'hi', context: { platform: 'amiga' } }, '/context/platform'],
    [{ message: 'hi', system: 'override' }, '/']
  ]
  for (const [payload, path] of cases) {
    const res = await ask(app, token, payload)
    t.equal(res.statusCode, 400, path)
    t.equal(res.json().error.code, 'VALIDATION_ERROR')
    t.ok(res.json().error.details.fields.some((f: { path: string }) => f.path.startsWith(path)), path)
  }
})

t.test('GET /v1/ai/settings-assistant/catalog returns the catalog; AI token required', async (t) => {
  const { app } = await build(t)
  const { token } = await tokenFor(app, 'test')
  const res = await app.inject({ url: '/v1/ai/settings-assistant/catalog', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), app.settingsAssistant.catalog)
  t.match(res.json().settings, [{ id: 'export.sharpening', type: 'enum' }])
  t.equal((await app.inject({ url: '/v1/ai/settings-assistant/catalog' })).statusCode, 401)
})

t.test('a token without the feature → NOT_ENTITLED', async (t) => {
  const { app } = await build(t)
  const { key } = await userWithKey(app, { plan: 'pro', mode: 'test' })
  const { token } = await mint(app, key, ['background-removal'])
  const res = await ask(app, token, { message: 'Hello?' })
  t.equal(res.statusCode, 403)
  t.equal(res.json().error.code, 'NOT_ENTITLED')
  t.ok(newUserId())
})
