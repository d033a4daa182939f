import { connect } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import { build, mint, userWithKey } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { completion, MODERATION_URL, moderation, OPENAI_URL, sseResponse, streamChunks } from '../../openai-fake.js'

// The OpenAI-compatible surface at its edges: moderation of the message and of the reply, clients that leave
// before or during an answer, and analytics that cannot be written. Each is charged exactly and never a 5xx.

const LIVE = { OPENAI_API_KEY: 'sk-canary-openai-0123456789' }
const HIGH = { violence: 0.93 }

async function tokenOf (app: FastifyInstance) {
  const { userId, key } = await userWithKey(app, { plan: 'pro', mode: 'live' })
  return { userId, token: (await mint(app, key)).token }
}

const ledger = async (app: FastifyInstance, userId: string) =>
  (await app.store.query<Record<string, unknown>>('SELECT * FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])).rows
const calls = async (app: FastifyInstance) =>
  (await app.store.query<Record<string, unknown>>('SELECT * FROM ai_calls WHERE feature = $1 ORDER BY id', ['openai-compatible'])).rows

const post = (app: FastifyInstance, token: string, payload: Record<string, unknown>) =>
  app.inject({ method: 'POST', url: '/v1/openai/chat/completions', headers: { authorization: `Bearer ${token}` }, payload: { model: 'gpt-4o-mini', ...payload } })

async function untilRows (app: FastifyInstance, userId: string) {
  for (let i = 0; i < 200; i++) {
    const rows = await ledger(app, userId)
    if (rows.length > 0) return rows
    await delay(25)
  }
  return []
}

t.test('moderation: a flagged message is refused before anything is reserved; a flagged reply is withheld, JSON or streamed', async (t) => {
  const moderated: string[] = []
  interceptNetwork(t,
    http.post(MODERATION_URL, async ({ request }) => {
      const { input } = await request.json() as { input: string[] }
      moderated.push(...input)
      return HttpResponse.json(moderation(input.map((text) => text.includes('MARK-HIGH') ? HIGH : {})))
    }),
    http.post(OPENAI_URL, async ({ request }) => {
      const body = await request.json() as { stream?: boolean, messages: Array<{ content: string }>, tools?: unknown[] }
      const asked = body.messages.at(-1)?.content ?? ''
      const text = asked.includes('reply-high') ? 'MARK-HIGH reply' : 'fine'
      if (body.tools !== undefined) return HttpResponse.json(completion('', [{ settingId: 'x', value: 1, reason: 'r' }]))
      return body.stream === true ? sseResponse(streamChunks([text])) : HttpResponse.json(completion(text))
    }))
  const { app } = await build(t, { env: { ...LIVE, MODERATION: 'openai' } })
  const { userId, token } = await tokenOf(app)

  const refused = await post(app, token, { messages: [{ role: 'user', content: 'MARK-HIGH message' }] })
  t.equal(refused.statusCode, 422)
  t.match(refused.json(), { error: { type: 'invalid_request_error', code: 'CONTENT_REJECTED', details: { categories: ['violence'] } } })
  t.same(await ledger(app, userId), [], 'nothing charged')

  const withheld = await post(app, token, { messages: [{ role: 'user', content: 'reply-high please' }] })
  t.equal(withheld.statusCode, 200)
  t.match(withheld.json(), { choices: [{ message: { content: null }, finish_reason: 'content_filter' }] }, 'the reply is not shown')
  t.notMatch(withheld.body, /MARK-HIGH/)
  t.match(await ledger(app, userId), [{ units_out: '40' }], 'the generated reply is charged')

  const streamed = await post(app, token, { messages: [{ role: 'user', content: 'reply-high please' }], stream: true })
  t.match(streamed.body, /data: \{"error":\{"message":"The reply was blocked by the content policy check: discard what was shown\.","type":"invalid_request_error","param":null,"code":"CONTENT_REJECTED"\}\}\n\n$/)
  t.notMatch(streamed.body, /\[DONE\]/, 'no [DONE] after an error')

  const tools = [{ type: 'function', function: { name: 'suggest_settings', parameters: { type: 'object' } } }]
  const called = await post(app, token, { messages: [{ role: 'user', content: 'suggest' }], tools })
  t.match(called.json(), { choices: [{ message: { content: null, tool_calls: [{ function: { name: 'suggest_settings' } }] }, finish_reason: 'tool_calls' }] })
  t.same(moderated.filter((text) => text === ''), [], 'an empty reply (a tool call only) is not sent to moderation')
  t.equal((await ledger(app, userId)).length, 3)
  t.same((await calls(app)).slice(-3).map((c) => c.outcome), ['blocked', 'blocked', 'completed'])
})

t.test('a client that leaves before the answer pays for its prompt; one that leaves mid-stream pays what was generated', async (t) => {
  let stall: 'answer' | 'stream' = 'answer'
  let upstreamAborted: boolean | undefined
  interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    if (stall === 'stream') return sseResponse(streamChunks(['One. ', 'Two. ', 'Three.']), { stallAfter: 3 })
    await new Promise((resolve) => request.signal.addEventListener('abort', resolve))
    upstreamAborted = request.signal.aborted
    return HttpResponse.json(completion('never'))
  }))
  const { app } = await build(t, { env: LIVE })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const send = (token: string, body: Record<string, unknown>) => {
    const socket = connect(port, '127.0.0.1')
    const payload = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Count to three.' }], ...body })
    socket.write(`POST /v1/openai/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`)
    return socket
  }

  const before = await tokenOf(app)
  const early = send(before.token, {})
  for (let i = 0; i < 200 && (await app.store.query('SELECT 1 FROM quota_reservations WHERE user_id = $1', [before.userId])).rows.length === 0; i++) await delay(25)
  await delay(50)
  early.destroy()
  const [charged] = await untilRows(app, before.userId)
  t.equal(upstreamAborted, true, 'the vendor call is stopped')
  t.match(charged, { feature: 'openai-compatible', estimated: true, units_out: '0' })
  t.ok(Number(charged?.units_in) > 0, 'the prompt was sent, so it is charged')

  stall = 'stream'
  const during = await tokenOf(app)
  const streaming = send(during.token, { stream: true })
  let text = ''
  for await (const data of streaming) {
    text += String(data)
    if ((text.match(/"content":"Two\. "/g) ?? []).length >= 1) break
  }
  streaming.destroy()
  const [partial] = await untilRows(app, during.userId)
  t.match(partial, { estimated: true, units_out: String(Math.ceil('One. Two. '.length / 4)) }, 'what was generated, estimated')
  t.same((await calls(app)).slice(-2).map((c) => c.outcome), ['client-aborted', 'client-aborted'])
})

t.test('analytics that cannot be written never fail a call; a vendor failing a stream before any byte is an OpenAI-shaped 502', async (t) => {
  interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
    const body = await request.json() as { stream?: boolean }
    return body.stream === true ? HttpResponse.json({ error: { message: 'down', type: 'server_error' } }, { status: 503 }) : HttpResponse.json(completion('fine'))
  }))
  const { app, logs } = await build(t, { env: { ...LIVE, MODEL_TIMEOUT_MS: '2000' } })
  const { userId, token } = await tokenOf(app)
  app.aiCalls.record = async () => { throw new Error('analytics table is gone') }
  const fine = await post(app, token, { messages: [{ role: 'user', content: 'hi' }] })
  t.equal(fine.statusCode, 200)
  t.equal(logs.find('an OpenAI-compatible call could not be recorded for analytics').length, 1)

  const down = await post(app, token, { messages: [{ role: 'user', content: 'hi' }], stream: true })
  t.equal(down.statusCode, 502)
  t.match(down.headers['content-type'], /^application\/json/)
  t.match(down.json(), { error: { type: 'server_error', code: 'PROVIDER_ERROR' } })
  t.equal((await ledger(app, userId)).length, 1, 'the failed stream charged nothing')
})

t.test('the shutdown stops calls still at a vendor: a stream ends with an error event, a JSON call is a 503; both settled', async (t) => {
  for (const stream of [true, false]) {
    let upstream: AbortSignal | undefined
    const sawUpstream = () => upstream !== undefined
    interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
      upstream = request.signal
      if (stream) return sseResponse(streamChunks(['One. ', 'Two. ', 'Three.']), { stallAfter: 3 })
      await new Promise((resolve) => request.signal.addEventListener('abort', resolve))
      return HttpResponse.json(completion('never'))
    }))
    const { app, logs } = await build(t, { env: LIVE })
    const { userId, token } = await tokenOf(app)
    const pending = post(app, token, { messages: [{ role: 'user', content: 'Count' }], stream })
    for (let i = 0; i < 200 && !sawUpstream(); i++) await delay(25)
    await delay(100)
    app.readiness.stopInFlight()
    const res = await pending
    if (stream) t.match(res.body, /data: \{"error":\{"message":"[^"]*restarting[^"]*","type":"server_error","param":null,"code":"PROVIDER_UNAVAILABLE"\}\}\n\n$/)
    else t.match([res.statusCode, res.json()], [503, { error: { type: 'server_error', code: 'PROVIDER_UNAVAILABLE', message: /restarting/ } }])
    t.match(await ledger(app, userId), [{ feature: 'openai-compatible', estimated: true }], `${stream ? 'stream' : 'JSON'}: settled`)
    t.match(logs.find('OpenAI-compatible call settled'), [{ outcome: 'shutdown' }])
  }
})
