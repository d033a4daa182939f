import type { FastifyInstance } from 'fastify'
import { connect } from 'node:net'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { delay, http, HttpResponse } from 'msw'
import t from 'tap'
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { CHAT_RETENTION_QUEUE, CHAT_SYSTEM_PROMPT, costMicroUsd, createChats } from '../../../plugins/chats.js'
import { FEATURES } from '../../../plugins/features.js'
import { loadModels } from '../../../plugins/models.js'
import { anthropicEvents, anthropicStream, ANTHROPIC_URL } from '../../anthropic-fake.js'
import { adminHeaders, build, dumpAllTables, mint, userWithKey } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { completion, OPENAI_URL, openaiError, sseResponse, streamChunks } from '../../openai-fake.js'

const LIVE_ENV = { OPENAI_API_KEY: 'sk-canary-openai-0123456789', ANTHROPIC_API_KEY: 'sk-ant-canary-0123456789' }
const catalog = loadModels()

async function tokenFor (app: FastifyInstance, opts: { mode?: 'live' | 'test', plan?: string } = {}) {
  const { userId, key } = await userWithKey(app, { plan: opts.plan ?? 'pro', mode: opts.mode ?? 'test' })
  return { userId, key, token: (await mint(app, key)).token }
}

const call = (app: FastifyInstance, token: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) })

async function newChat (app: FastifyInstance, token: string, body: Record<string, unknown> = {}) {
  const res = await call(app, token, 'POST', '/v1/chats', body)
  if (res.statusCode !== 201) throw new Error(res.body)
  return res.json() as { id: string }
}

function sse (body: string) {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (e) => events.push(e) })
  parser.feed(body)
  return events.map((e) => ({ event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }))
}

const ledger = async (app: FastifyInstance, userId: string) =>
  (await app.store.query<Record<string, unknown>>('SELECT * FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])).rows

t.test('create, read, list, rename, archive and delete a chat (test mode)', async (t) => {
  const { app } = await build(t)
  const { token } = await tokenFor(app)
  const created = await call(app, token, 'POST', '/v1/chats', { title: 'Reading notes', contextRef: 'book:42' })
  t.equal(created.statusCode, 201)
  const chat = created.json() as { id: string }
  t.equal(created.headers.location, `/v1/chats/${chat.id}`)
  t.match(chat, { title: 'Reading notes', contextRef: 'book:42', model: null, archived: false, messageCount: 0 })
  const second = await newChat(app, token)
  const page1 = (await call(app, token, 'GET', '/v1/chats?limit=1')).json() as { data: Array<{ id: string }>, nextCursor: string }
  t.equal(page1.data[0]?.id, second.id, 'latest activity first')
  const page2 = (await call(app, token, 'GET', `/v1/chats?limit=1&cursor=${page1.nextCursor}`)).json() as { data: Array<{ id: string }>, nextCursor: null }
  t.same([page2.data[0]?.id, page2.nextCursor], [chat.id, null])
  t.equal((await call(app, token, 'GET', '/v1/chats?cursor=bm9wZQ')).statusCode, 400, 'a cursor that is not ours')

  const patched = await call(app, token, 'PATCH', `/v1/chats/${chat.id}`, { title: 'Renamed', archived: true, model: 'gpt-4o-mini' })
  t.match(patched.json(), { title: 'Renamed', archived: true, model: 'gpt-4o-mini', contextRef: 'book:42' })
  t.match((await call(app, token, 'PATCH', `/v1/chats/${chat.id}`, { model: null })).json(), { title: 'Renamed', model: null })
  t.match((await call(app, token, 'PATCH', `/v1/chats/${chat.id}`, { title: null })).json(), { title: null, contextRef: 'book:42' })
  t.same(((await call(app, token, 'GET', '/v1/chats?archived=true')).json() as { data: Array<{ id: string }> }).data.map((c) => c.id), [chat.id])
  t.same(((await call(app, token, 'GET', '/v1/chats?archived=false')).json() as { data: Array<{ id: string }> }).data.map((c) => c.id), [second.id])
  t.equal((await call(app, token, 'PATCH', `/v1/chats/${chat.id}`, {})).statusCode, 400, 'an empty change')
  t.equal((await call(app, token, 'DELETE', `/v1/chats/${chat.id}`)).statusCode, 204)
  t.equal((await call(app, token, 'GET', `/v1/chats/${chat.id}`)).statusCode, 404)
  t.equal((await call(app, token, 'DELETE', `/v1/chats/${chat.id}`)).statusCode, 404)
})

t.test('models are checked against the plan: a premium model on a free plan is 403 with details.model', async (t) => {
  const { app } = await build(t)
  const { token } = await tokenFor(app, { plan: 'free' })
  const res = await call(app, token, 'POST', '/v1/chats', { model: 'claude-sonnet-4-5' })
  t.equal(res.statusCode, 403)
  t.match(res.json(), { error: { code: 'NOT_ENTITLED', details: { model: 'claude-sonnet-4-5' } } })
  const chat = await newChat(app, token)
  t.equal((await call(app, token, 'PATCH', `/v1/chats/${chat.id}`, { model: 'gpt-4.1' })).statusCode, 403)
  t.equal((await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'hi', model: 'grok-4' })).statusCode, 403)
  t.match((await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'hi', model: 'no-such-model' })).json(), { error: { code: 'VALIDATION_ERROR' } })
  t.equal((await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'x'.repeat(8001) })).statusCode, 400)
})

t.test('messages in test mode: the sandbox answers for the routed model; history, pages, cursors bound to their chat', async (t) => {
  const { app } = await build(t)
  const { token } = await tokenFor(app)
  const chat = await newChat(app, token)
  const first = await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'Please summarize chapter one' })
  t.equal(first.statusCode, 201)
  t.equal(first.headers['ai-provider'], 'sandbox')
  t.equal(first.headers['ai-model'], 'gpt-4o-mini', 'summary on pro → the routing matrix\'s model')
  t.match(first.json(), { role: 'assistant', model: 'gpt-4o-mini', finishReason: 'stop', content: /standing in for gpt-4o-mini.*1 turn/, usage: { totalTokens: Number } })
  const second = (await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'And chapter two?', model: 'claude-haiku-4-5' })).json() as { content: string }
  t.match(second.content, /claude-haiku-4-5.*3 turns/, 'the history went with the call')
  t.match((await call(app, token, 'GET', `/v1/chats/${chat.id}`)).json(), { messageCount: 4 })
  const page = (await call(app, token, 'GET', `/v1/chats/${chat.id}/messages?limit=3`)).json() as { data: Array<{ role: string, content: string }>, nextCursor: string }
  t.same(page.data.map((m) => m.role), ['assistant', 'user', 'assistant'])
  t.equal(page.data[1]?.content, 'And chapter two?')
  const rest = (await call(app, token, 'GET', `/v1/chats/${chat.id}/messages?limit=3&cursor=${page.nextCursor}`)).json() as { data: Array<{ content: string }>, nextCursor: null }
  t.same([rest.data.length, rest.data[0]?.content, rest.nextCursor], [1, 'Please summarize chapter one', null])
  const other = await newChat(app, token)
  const wrong = await call(app, token, 'GET', `/v1/chats/${other.id}/messages?cursor=${page.nextCursor}`)
  t.match(wrong.json(), { error: { code: 'VALIDATION_ERROR', message: /not one of this chat/ } })
  t.equal(wrong.statusCode, 400)
})

t.test('another user\'s chat is 404 on every route; test-mode chats are not seen by live tokens', async (t) => {
  const { app } = await build(t)
  const owner = await tokenFor(app)
  const chat = await newChat(app, owner.token)
  const reply = (await call(app, owner.token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'hello' })).json() as { id: string }
  const stranger = await tokenFor(app)
  const ownLive = (await mint(app, (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId: owner.userId, mode: 'live' } })).json<{ key: string }>().key)).token
  for (const token of [stranger.token, ownLive]) {
    for (const [method, url, payload] of [
      ['GET', `/v1/chats/${chat.id}`],
      ['PATCH', `/v1/chats/${chat.id}`, { title: 'x' }],
      ['DELETE', `/v1/chats/${chat.id}`],
      ['GET', `/v1/chats/${chat.id}/messages`],
      ['POST', `/v1/chats/${chat.id}/messages`, { content: 'x' }],
      ['POST', `/v1/chats/${chat.id}/stream`, { content: 'x' }],
      ['POST', `/v1/chats/${chat.id}/messages/${reply.id}/feedback`, { rating: 1 }]
    ] as const) {
      t.equal((await call(app, token, method, url, payload)).statusCode, 404, `${method} ${url}`)
    }
  }
  t.equal((await call(app, owner.token, 'GET', `/v1/chats/${chat.id}`)).statusCode, 200, 'still there for its owner')
})

t.test('feedback: one rating per reply, replaceable; not on a user message', async (t) => {
  const { app, store } = await build(t)
  const { token } = await tokenFor(app)
  const chat = await newChat(app, token)
  const reply = (await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'hello' })).json() as { id: string }
  const url = `/v1/chats/${chat.id}/messages/${reply.id}/feedback`
  t.equal((await call(app, token, 'POST', url, { rating: 1, comment: 'CANARY-FEEDBACK-7f3a' })).statusCode, 204)
  t.equal((await call(app, token, 'POST', url, { rating: -1 })).statusCode, 204)
  const { rows } = await store.query<{ rating: number, comment_sealed: unknown }>('SELECT rating, comment_sealed FROM chat_feedback WHERE message_id = $1', [reply.id])
  t.same(rows, [{ rating: -1, comment_sealed: null }])
  const page = (await call(app, token, 'GET', `/v1/chats/${chat.id}/messages`)).json() as { data: Array<{ id: string, role: string }> }
  const userMessage = page.data.find((m) => m.role === 'user') as { id: string }
  t.equal((await call(app, token, 'POST', `/v1/chats/${chat.id}/messages/${userMessage.id}/feedback`, { rating: 1 })).statusCode, 404)
  t.equal((await call(app, token, 'POST', url, { rating: 2 })).statusCode, 400)
  t.equal((await call(app, token, 'POST', url, { rating: 1, comment: 'x'.repeat(1001) })).statusCode, 400)
})

t.test('live: what goes to the vendor is the declared fields only; canaries reach no log line and no plaintext column', async (t) => {
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => HttpResponse.json(completion('CANARY-REPLY-91c2 answer', [], { prompt_tokens: 1200, completion_tokens: 300 }))))
  const { app, logs, store } = await build(t, { env: LIVE_ENV })
  const { userId, token, key } = await tokenFor(app, { mode: 'live' })
  const chat = await newChat(app, token, { title: 'CANARY-TITLE-55e1', contextRef: 'CANARY-REF-0a9b' })
  const res = await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'CANARY-MESSAGE-d41c hello', model: 'gpt-4o-mini' })
  t.equal(res.statusCode, 201)
  const gpt = catalog.find((m) => m.id === 'gpt-4o-mini') as (typeof catalog)[number]
  const cost = costMicroUsd(gpt, 1200, 300)
  t.equal(cost, 360, '1,200 × $0.15/M + 300 × $0.60/M = 360 micro-USD')
  t.match(res.json(), { content: 'CANARY-REPLY-91c2 answer', model: 'gpt-4o-mini', usage: { inputTokens: 1200, outputTokens: 300, totalTokens: 1500, costMicroUsd: cost, costCents: 0 } })
  await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'CANARY-SECOND-77aa', model: 'gpt-4o-mini' })

  t.same(FEATURES.chat.sends.map((s) => s.field), ['content', 'history', 'tools'], 'tools only for chats created with them (chats-tools.test.ts)')
  const body = await seen[1]?.json() as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['max_completion_tokens', 'messages', 'model', 'safety_identifier', 'store', 'stream'])
  t.same(body.messages, [
    { role: 'system', content: (body.messages as Array<{ content: string }>)[0]?.content },
    { role: 'user', content: 'CANARY-MESSAGE-d41c hello' },
    { role: 'assistant', content: 'CANARY-REPLY-91c2 answer' },
    { role: 'user', content: 'CANARY-SECOND-77aa' }
  ], 'the history, then the new message; never the title or contextRef')
  t.equal(body.store, false)
  t.equal(body.safety_identifier, app.hash.user(userId))
  const outbound = JSON.stringify(body)
  for (const secret of [userId, token, key, 'CANARY-TITLE', 'CANARY-REF']) t.notOk(outbound.includes(secret))

  const rows = await ledger(app, userId)
  t.match(rows, [{ feature: 'chat', provider: 'openai', model: 'gpt-4o-mini', units_in: '1200', units_out: '300', cost_micro_usd: String(cost), estimated: false }, { feature: 'chat' }])
  const dump = await dumpAllTables(store)
  for (const canary of ['CANARY-TITLE-55e1', 'CANARY-REF-0a9b', 'CANARY-MESSAGE-d41c', 'CANARY-REPLY-91c2', 'CANARY-SECOND-77aa']) {
    t.notOk(logs.text.includes(canary), `${canary} is in no log line`)
    t.notOk(dump.includes(canary), `${canary} is in no column of any table`)
  }
  const exported = (await call(app, token, 'GET', '/v1/ai/me/data')).json() as { sections: { chats: unknown[] } }
  t.match(exported.sections.chats, [{ title: 'CANARY-TITLE-55e1', contextRef: 'CANARY-REF-0a9b', messages: [{ content: 'CANARY-MESSAGE-d41c hello' }, {}, {}, {}] }], 'the export decrypts')
  t.equal((await call(app, token, 'DELETE', '/v1/ai/me/data')).statusCode, 200)
  t.equal((await store.query('SELECT 1 FROM chat_messages WHERE user_id = $1', [userId])).rows.length, 0, 'deleted for real')
  t.equal((await ledger(app, userId)).length, 2, 'the ledger keeps its rows')
})

t.test('live streaming: fallback before the first byte to another vendor; the done event carries the cost', async (t) => {
  const { seen } = interceptNetwork(t,
    http.post(OPENAI_URL, () => openaiError(500, 'down')),
    http.post(ANTHROPIC_URL, () => anthropicStream(anthropicEvents(['Once ', 'upon ', 'a time.'], { usage: { input: 500, output: 40 } })))
  )
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, { mode: 'live', plan: 'free' })
  const chat = await newChat(app, token)
  const res = await call(app, token, 'POST', `/v1/chats/${chat.id}/stream`, { content: 'Hello there', model: 'gpt-4o-mini' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['ai-provider'], 'anthropic')
  t.equal(res.headers['ai-model'], 'claude-haiku-4-5')
  const events = sse(res.body)
  t.same(events.map((e) => e.event), ['delta', 'delta', 'delta', 'usage', 'done'])
  const haiku = catalog.find((m) => m.id === 'claude-haiku-4-5') as (typeof catalog)[number]
  t.match(events.at(-1)?.data, { finishReason: 'stop', model: 'claude-haiku-4-5', costCents: 0, usage: { inputTokens: 500, outputTokens: 40, costMicroUsd: costMicroUsd(haiku, 500, 40) } })
  const anthropicBody = await seen.find((r) => r.url === ANTHROPIC_URL)?.json() as Record<string, unknown>
  t.match(anthropicBody, { model: 'claude-haiku-4-5', metadata: { user_id: app.hash.user(userId) } })
  t.match(await ledger(app, userId), [{ provider: 'anthropic', model: 'claude-haiku-4-5', units_in: '500', units_out: '40' }])
  const messages = (await call(app, token, 'GET', `/v1/chats/${chat.id}/messages`)).json() as { data: Array<{ content: string, model: string | null }> }
  t.same(messages.data.map((m) => m.content), ['Once upon a time.', 'Hello there'])
})

t.test('a vendor failing after the first byte: an error event, no fallback, nothing stored, settled from what was generated', async (t) => {
  interceptNetwork(t,
    http.post(OPENAI_URL, () => sseResponse(streamChunks(['First words ', 'then more']), { cutAfter: 2 })),
    http.post(ANTHROPIC_URL, () => { throw new Error('no fallback after the first byte') })
  )
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, { mode: 'live', plan: 'free' })
  const chat = await newChat(app, token)
  const res = await call(app, token, 'POST', `/v1/chats/${chat.id}/stream`, { content: 'Hello', model: 'gpt-4o-mini' })
  const events = sse(res.body)
  t.equal(events[0]?.event, 'delta')
  t.match(events.at(-1), { event: 'error', data: { error: { code: /PROVIDER_/ } } })
  t.match(await ledger(app, userId), [{ provider: 'openai', estimated: true }])
  t.match((await call(app, token, 'GET', `/v1/chats/${chat.id}`)).json(), { messageCount: 0 })
})

t.test('no vendor can serve: 503 and the reservation released; no key at all for the model: PROVIDER_NOT_CONFIGURED', async (t) => {
  interceptNetwork(t,
    http.post(OPENAI_URL, () => HttpResponse.json({ error: { message: 'You exceeded your current quota', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }, { status: 429 })),
    http.post(ANTHROPIC_URL, () => HttpResponse.json({ type: 'error', error: { type: 'billing_error', message: 'Your credit balance is too low' } }, { status: 402 }))
  )
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, { mode: 'live', plan: 'free' })
  const chat = await newChat(app, token)
  const res = await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'Hello', model: 'gpt-4o-mini' })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { error: { code: 'PROVIDER_UNAVAILABLE' } })
  t.same(await ledger(app, userId), [], 'nothing charged')
  const { rows } = await app.store.query<{ reserved: string }>('SELECT reserved FROM quota_usage WHERE user_id = $1', [userId])
  t.same(rows.map((r) => Number(r.reserved)), [0], 'nothing left reserved')
  t.match((await call(app, token, 'POST', `/v1/chats/${chat.id}/messages`, { content: 'Hello', model: 'grok-3-mini' })).json(), { error: { code: 'PROVIDER_UNAVAILABLE' } }, 'its fallbacks are out too')
  const ready = (await app.inject({ url: '/health/ready' })).json() as { status: string, checks: { models: { vendors: Record<string, { breaker: string }> } } }
  t.equal(ready.status, 'ready', 'open breakers do not make the instance unready')
  t.equal(ready.checks.models.vendors.openai?.breaker, 'open')

  const { app: bare } = await build(t)
  const live = await tokenFor(bare, { mode: 'live', plan: 'free' })
  const bareChat = await newChat(bare, live.token)
  t.match((await call(bare, live.token, 'POST', `/v1/chats/${bareChat.id}/messages`, { content: 'Hello' })).json(), { error: { code: 'PROVIDER_NOT_CONFIGURED' } })
})

t.test('a client that leaves mid-stream: the vendor call is aborted and settled from what was generated; nothing stored', async (t) => {
  let upstream: AbortSignal | undefined
  interceptNetwork(t, http.post(OPENAI_URL, ({ request }) => {
    upstream = request.signal
    return sseResponse(streamChunks(['One. ', 'Two. ', 'Three.']), { stallAfter: 3 })
  }))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, { mode: 'live' })
  const chat = await newChat(app, token)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = connect((app.server.address() as { port: number }).port, '127.0.0.1')
  const payload = JSON.stringify({ content: 'Count to three.', model: 'gpt-4o-mini' })
  socket.write(`POST /v1/chats/${chat.id}/stream HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`)
  let text = ''
  for await (const data of socket) {
    text += String(data)
    if ((text.match(/event: delta/g) ?? []).length >= 2) break
  }
  socket.destroy()
  let rows: Array<Record<string, unknown>> = []
  for (let i = 0; i < 200 && rows.length === 0; i++) {
    await delay(25)
    rows = await ledger(app, userId)
  }
  t.equal(upstream?.aborted, true)
  t.match(rows, [{ feature: 'chat', estimated: true }])
  t.ok(Number(rows[0]?.units_out) > 0, 'what was generated is charged, never zero')
  t.match((await call(app, token, 'GET', `/v1/chats/${chat.id}`)).json(), { messageCount: 0 })
})

t.test('the history sent is cut to the model\'s context, newest turns kept; retention deletes idle chats', async (t) => {
  const { store, app } = await build(t)
  const chats = createChats({ db: store, crypto: app.contentCrypto })
  const small = { ...(catalog.find((m) => m.id === 'deepseek-chat') as (typeof catalog)[number]), contextTokens: 1200 }
  const history = Array.from({ length: 40 }, (_v, i) => ({ role: i % 2 === 0 ? 'user' as const : 'assistant' as const, content: `turn ${i} ${'word '.repeat(40)}` }))
  const prompt = await chats.prompt(small, history, 'latest question', 400)
  t.ok(prompt.cutTurns > 0 && prompt.cutTurns < 40, `${prompt.cutTurns} old turns left out`)
  t.ok(prompt.tokens <= 800, 'prompt + reply fit the context')
  t.match(prompt.messages.at(-2)?.content, /^turn 39 /, 'the newest turns are kept')
  t.equal(prompt.messages.at(-1)?.content, 'latest question')
  const exact = await chats.prompt(catalog.find((m) => m.id === 'gpt-4o-mini') as (typeof catalog)[number], [], 'hello world', 100)
  t.equal(exact.tokens, countTokens(CHAT_SYSTEM_PROMPT) + 4 + countTokens('hello world') + 4, 'counted with the o200k tokenizer (OpenAI)')
  t.equal(countTokens('hello world'), 2)

  let now = new Date('2026-01-01T00:00:00Z')
  const clocked = createChats({ db: store, crypto: app.contentCrypto, now: () => now })
  const old = await clocked.create('retention-user', 'test', { title: 'old' })
  now = new Date('2026-06-01T00:00:00Z')
  const recent = await clocked.create('retention-user', 'test', {})
  now = new Date('2026-06-02T00:00:00Z')
  t.equal(await clocked.purge(30), 1)
  await t.rejects(clocked.get('retention-user', 'test', old.id), { code: 'NOT_FOUND' })
  t.match(await clocked.get('retention-user', 'test', recent.id), { id: recent.id })
})

t.test('the daily retention job deletes chats idle past CHAT_RETENTION_DAYS; the export carries feedback comments', async (t) => {
  const { app } = await build(t, { env: { CHAT_RETENTION_DAYS: '30' } })
  const { token } = await tokenFor(app)
  const idle = await newChat(app, token)
  const active = await newChat(app, token)
  const reply = (await call(app, token, 'POST', `/v1/chats/${active.id}/messages`, { content: 'hello' })).json() as { id: string }
  await call(app, token, 'POST', `/v1/chats/${active.id}/messages/${reply.id}/feedback`, { rating: 1, comment: 'Useful answer' })
  const plain = (await call(app, token, 'POST', `/v1/chats/${active.id}/messages`, { content: 'again' })).json() as { id: string }
  await call(app, token, 'POST', `/v1/chats/${active.id}/messages/${plain.id}/feedback`, { rating: -1 })
  const exported = (await call(app, token, 'GET', '/v1/ai/me/data')).json() as { sections: { chats: Array<{ id: string, feedback: unknown[] }> } }
  t.same(exported.sections.chats.find((c) => c.id === active.id)?.feedback, [{ messageId: reply.id, rating: 1, comment: 'Useful answer' }, { messageId: plain.id, rating: -1, comment: null }])
  await app.store.query("UPDATE chat_sessions SET last_activity_at = now() - interval '31 days' WHERE id = $1", [idle.id])
  const id = await app.jobs.send(CHAT_RETENTION_QUEUE, {})
  let job
  for (let i = 0; i < 200 && (job = (await app.jobs.list({ id, state: 'completed', limit: 1 }))[0]) === undefined; i++) await delay(100)
  t.match(job, { queue: 'chats.retention', state: 'completed' })
  t.equal((await call(app, token, 'GET', `/v1/chats/${idle.id}`)).statusCode, 404)
  t.equal((await call(app, token, 'GET', `/v1/chats/${active.id}`)).statusCode, 200)
})

t.test('a stream whose vendors all fail before the first byte is an ordinary error answer, the reservation released', async (t) => {
  interceptNetwork(t, http.post(OPENAI_URL, () => openaiError(400, 'bad request')), http.post(ANTHROPIC_URL, () => HttpResponse.json({ type: 'error', error: { type: 'invalid_request_error', message: 'bad' } }, { status: 400 })))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, { mode: 'live', plan: 'free' })
  const chat = await newChat(app, token)
  const res = await call(app, token, 'POST', `/v1/chats/${chat.id}/stream`, { content: 'Hello', model: 'gpt-4o-mini' })
  t.equal(res.statusCode, 502)
  t.match(res.json(), { error: { code: 'PROVIDER_ERROR' } })
  t.same(await ledger(app, userId), [])
})

t.test('a client that leaves before the first byte: the vendor call stops, the prompt is charged (estimated), no fallback', async (t) => {
  let upstream: AbortSignal | undefined
  const sawUpstream = () => upstream !== undefined
  interceptNetwork(t,
    http.post(OPENAI_URL, async ({ request }) => { upstream = request.signal; await delay('infinite'); return HttpResponse.json(completion('never')) }),
    http.post(ANTHROPIC_URL, () => { throw new Error('no fallback for a client that left') })
  )
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app, { mode: 'live', plan: 'free' })
  const chat = await newChat(app, token)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = connect((app.server.address() as { port: number }).port, '127.0.0.1')
  const payload = JSON.stringify({ content: 'Hello there', model: 'gpt-4o-mini' })
  socket.write(`POST /v1/chats/${chat.id}/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`)
  for (let i = 0; i < 200 && !sawUpstream(); i++) await delay(25)
  socket.destroy()
  let rows: Array<Record<string, unknown>> = []
  for (let i = 0; i < 200 && rows.length === 0; i++) {
    await delay(25)
    rows = await ledger(app, userId)
  }
  t.equal(upstream?.aborted, true)
  t.match(rows, [{ feature: 'chat', provider: 'openai', model: 'gpt-4o-mini', estimated: true, units_out: '0' }])
  t.ok(Number(rows[0]?.units_in) > 0, 'the prompt was sent, so it is charged')
})

t.test('the shutdown stops calls still at a vendor: a stream ends with an error event, a JSON call is a 503; both settled', async (t) => {
  for (const kind of ['stream', 'messages'] as const) {
    let upstream: AbortSignal | undefined
    const sawUpstream = () => upstream !== undefined
    interceptNetwork(t, http.post(OPENAI_URL, async ({ request }) => {
      upstream = request.signal
      if (kind === 'stream') return sseResponse(streamChunks(['One. ', 'Two. ', 'Three.']), { stallAfter: 3 })
      await delay('infinite')
      return HttpResponse.json(completion('never'))
    }), http.post(ANTHROPIC_URL, () => { throw new Error('no fallback during the shutdown') }))
    const { app } = await build(t, { env: LIVE_ENV })
    const { userId, token } = await tokenFor(app, { mode: 'live', plan: 'free' })
    const chat = await newChat(app, token)
    const pending = call(app, token, 'POST', `/v1/chats/${chat.id}/${kind}`, { content: 'Hello', model: 'gpt-4o-mini' })
    for (let i = 0; i < 200 && !sawUpstream(); i++) await delay(25)
    await delay(100)
    app.readiness.stopInFlight()
    const res = await pending
    if (kind === 'stream') t.match(sse(res.body).at(-1), { event: 'error', data: { error: { code: 'PROVIDER_UNAVAILABLE', message: /restarting/ } } })
    else t.match([res.statusCode, res.json()], [503, { error: { code: 'PROVIDER_UNAVAILABLE', message: /restarting/ } }])
    t.match(await ledger(app, userId), [{ feature: 'chat', estimated: true }], `${kind}: settled`)
  }
})
