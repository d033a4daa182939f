import type { FastifyInstance } from 'fastify'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { connect } from 'node:net'
import { delay, http, HttpResponse } from 'msw'
import t, { type Test } from 'tap'
import { MAX_TOOL_ROUNDS } from '../../../plugins/assistant-tools.js'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'
import { fakeGoogle, GOOGLE_ENV } from '../../google-fake.js'
import { interceptNetwork } from '../../network.js'
import { chunksWith, completionWith, OPENAI_URL, openaiError, sseResponse, type FakeToolCall } from '../../openai-fake.js'

const LIVE_ENV = { ...GOOGLE_ENV, OPENAI_API_KEY: 'sk-canary-openai-0123456789' }
const CANARY_TITLE = 'CANARY-board-meeting-5d1e'
const CANARY_PLACE = 'CANARY-secret-location-77'
const WEEK = { from: '2026-12-07T00:00:00Z', to: '2026-12-14T00:00:00Z' }

function sse (body: string) {
  const events: EventSourceMessage[] = []
  const parser = createParser({ onEvent: (e) => events.push(e) })
  parser.feed(body)
  return events.map((e) => ({ event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }))
}

interface SeenRequest { messages: Array<{ role: string, content: string | null, tool_calls?: unknown[], tool_call_id?: string }>, tools?: Array<{ function: { name: string } }>, tool_choice?: unknown, stream?: boolean }

/** OpenAI answering each call of a reply in turn (JSON or streamed, as asked), keeping what it was sent. */
const USAGE = { prompt_tokens: 700, completion_tokens: 30 }
const answer = (text: string | null, toolCalls: FakeToolCall[] = []) => completionWith(text, toolCalls, USAGE)

function scriptedOpenAI (replies: Array<{ text: string, toolCalls?: FakeToolCall[] } | 'fail'>) {
  const seen: SeenRequest[] = []
  const handler = http.post(OPENAI_URL, async ({ request }) => {
    const body = await request.json() as SeenRequest
    seen.push(body)
    const next = replies[Math.min(seen.length - 1, replies.length - 1)] as (typeof replies)[number]
    if (next === 'fail') return openaiError(500, 'The server had an error while processing your request.')
    return body.stream === true ? sseResponse(chunksWith(next.text === '' ? [] : [next.text], next.toolCalls, USAGE)) : HttpResponse.json(answer(next.text === '' ? null : next.text, next.toolCalls))
  })
  return { handler, seen }
}

async function liveUser (app: FastifyInstance, mode: 'live' | 'test' = 'live') {
  const { userId, key } = await userWithKey(app, { plan: 'pro', mode })
  const token = (await mint(app, key)).token
  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) })
  return { userId, token, call }
}

async function connectCalendar (app: FastifyInstance, google: ReturnType<typeof fakeGoogle>, user: Awaited<ReturnType<typeof liveUser>>) {
  const link = (await user.call('POST', '/v1/integrations/google-calendar/connect')).json().authorizationUrl as string
  const done = await app.inject({ url: google.consent(link).callback })
  if (done.statusCode !== 200) throw new Error(done.body)
}

const ledger = async (app: FastifyInstance, userId: string) =>
  (await app.store.query<{ units_in: number, units_out: number, model: string }>('SELECT * FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])).rows

async function setup (t: Test, replies: Parameters<typeof scriptedOpenAI>[0]) {
  const google = fakeGoogle()
  google.state.events = [
    { id: 'ev1', summary: `${CANARY_TITLE} with the board`, start: { dateTime: '2026-12-08T14:00:00+01:00' }, end: { dateTime: '2026-12-08T15:00:00+01:00' }, location: CANARY_PLACE, description: 'CANARY-notes' },
    { id: 'ev2', summary: 'Offsite', start: { date: '2026-12-10' }, end: { date: '2026-12-11' } }
  ]
  const openai = scriptedOpenAI(replies)
  interceptNetwork(t, ...google.handlers, openai.handler)
  const built = await build(t, { env: LIVE_ENV })
  const user = await liveUser(built.app)
  await connectCalendar(built.app, google, user)
  const chat = (await user.call('POST', '/v1/chats', { model: 'gpt-4o-mini', tools: ['calendar', 'tasks'] })).json() as { id: string, tools: string[] }
  return { ...built, google, openai, user, chat }
}

const calendarCall = { id: 'call_cal', name: 'list_calendar_events', arguments: { from: WEEK.from, to: WEEK.to } }
const taskCall = { id: 'call_task', name: 'create_task', arguments: { title: 'Prepare the board deck', dueDate: '2026-12-07' } }

t.test('a chat reads the calendar on the server, answers from it and proposes a task (JSON)', async (t) => {
  const { app, logs, store, openai, user, chat } = await setup(t, [
    { text: '', toolCalls: [calendarCall] },
    { text: 'You meet the board on Tuesday.', toolCalls: [taskCall] },
    { text: 'I proposed a task to prepare the deck.' }
  ])
  t.same(chat.tools, ['calendar', 'tasks'])
  const res = await user.call('POST', `/v1/chats/${chat.id}/messages`, { content: 'What is on this week, and remind me to prepare for it' })
  t.equal(res.statusCode, 201)
  const message = res.json()
  t.equal(message.content, 'You meet the board on Tuesday.\n\nI proposed a task to prepare the deck.')
  t.same(message.toolsUsed, ['list_calendar_events'])
  t.same(message.suggestions, [{ type: 'create_task', task: { title: 'Prepare the board deck', dueDate: '2026-12-07' } }])
  t.same(message.usage, { inputTokens: 2100, outputTokens: 90, totalTokens: 2190, costMicroUsd: message.usage.costMicroUsd, costCents: 0 }, 'the three calls, counted together')

  t.equal(openai.seen.length, 3)
  const [first, second, third] = openai.seen as [SeenRequest, SeenRequest, SeenRequest]
  t.same(first.tools?.map((tool) => tool.function.name), ['list_calendar_events', 'create_task'], 'the chat\'s tools are offered')
  t.match(first.messages[0]?.content, /Today is \d{4}-\d{2}-\d{2}/, 'the model is told the date')
  const toolTurn = second.messages.find((m) => m.role === 'tool')
  t.equal(toolTurn?.tool_call_id, 'call_cal')
  const result = JSON.parse(toolTurn?.content as string) as { events: Array<Record<string, unknown>> }
  t.same(result.events, [
    { title: `${CANARY_TITLE} with the board`, start: '2026-12-08T14:00:00+01:00', end: '2026-12-08T15:00:00+01:00', allDay: false },
    { title: 'Offsite', start: '2026-12-10', end: '2026-12-11', allDay: true }
  ], 'titles and times only go to the vendor: no place, no id, no notes')
  t.notMatch(JSON.stringify(openai.seen), CANARY_PLACE)
  t.notMatch(JSON.stringify(openai.seen), 'CANARY-notes')
  t.equal(third.messages.filter((m) => m.role === 'tool').at(-1)?.tool_call_id, 'call_task')
  t.match(third.messages.filter((m) => m.role === 'tool').at(-1)?.content, /"proposed":true/)
  t.equal(third.tool_choice, 'none', `after ${MAX_TOOL_ROUNDS} rounds the model may not call tools`)

  const rows = await ledger(app, user.userId)
  t.equal(rows.length, 1, 'one ledger row for the reply')
  t.match(rows[0], { units_in: 2100, units_out: 90, model: 'gpt-4o-mini' })
  t.equal((await user.call('GET', '/v1/tasks')).json().data.length, 0, 'the suggestion created nothing')
  const confirmed = await user.call('POST', '/v1/tasks', message.suggestions[0].task)
  t.equal(confirmed.statusCode, 201, 'the app confirms it with POST /v1/tasks')

  const stored = (await user.call('GET', `/v1/chats/${chat.id}/messages`)).json().data as Array<Record<string, unknown>>
  t.notOk('suggestions' in (stored[0] as object), 'suggestions are not stored with the message')
  t.notMatch(logs.text, CANARY_TITLE, 'event titles never reach a log line')
  t.notMatch(await dumpAllTables(store), CANARY_TITLE, 'nor a table')
})

t.test('streamed: tool and suggestion events, the reply goes on after the tool round', async (t) => {
  const { app, openai, user, chat } = await setup(t, [
    { text: 'Let me look.', toolCalls: [calendarCall] },
    { text: 'Tuesday: the board.' }
  ])
  const res = await user.call('POST', `/v1/chats/${chat.id}/stream`, { content: 'What is on this week?' })
  t.equal(res.statusCode, 200)
  const events = sse(res.body)
  t.same(events.map((e) => e.event), ['delta', 'tool', 'delta', 'usage', 'done'])
  t.same(events[1]?.data, { name: 'list_calendar_events' })
  t.same(events.filter((e) => e.event === 'delta').map((e) => e.data.text), ['Let me look.', '\n\nTuesday: the board.'])
  t.same(events.at(-2)?.data, { inputTokens: 1400, outputTokens: 60 })
  t.equal(openai.seen.length, 2)
  t.equal(openai.seen[1]?.stream, true)
  const stored = (await user.call('GET', `/v1/chats/${chat.id}/messages`)).json().data as Array<{ content: string }>
  t.equal(stored[0]?.content, 'Let me look.\n\nTuesday: the board.')
  t.equal((await ledger(app, user.userId)).length, 1)
})

t.test('a vendor failing in a later round: the rounds answered are charged, nothing is stored, the quota is not held', async (t) => {
  const { app, user, chat } = await setup(t, [{ text: '', toolCalls: [calendarCall] }, 'fail'])
  const res = await user.call('POST', `/v1/chats/${chat.id}/messages`, { content: 'What is on this week?' })
  t.equal(res.statusCode, 502)
  const rows = await ledger(app, user.userId)
  t.equal(rows.length, 1, 'the first call is charged')
  t.match(rows[0], { units_in: 700, units_out: 30 })
  t.equal((await user.call('GET', `/v1/chats/${chat.id}/messages`)).json().data.length, 0, 'nothing stored')
  const held = await app.store.query<{ n: number }>('SELECT count(*)::int AS n FROM quota_reservations WHERE user_id = $1', [user.userId])
  t.equal(held.rows[0]?.n, 0, 'no reservation left held')
})

t.test('streamed, a vendor failing to open a later round: an error event, the first round charged', async (t) => {
  const { app, user, chat } = await setup(t, [{ text: 'Let me look.', toolCalls: [calendarCall] }, 'fail'])
  const res = await user.call('POST', `/v1/chats/${chat.id}/stream`, { content: 'What is on this week?' })
  const events = sse(res.body)
  t.same(events.map((e) => e.event), ['delta', 'tool', 'error'])
  t.equal((events[2]?.data as { error: { code: string } }).error.code, 'PROVIDER_ERROR')
  const rows = await ledger(app, user.userId)
  t.equal(rows.length, 1)
  t.match(rows[0], { units_in: 700, units_out: 30 })
})

t.test('what the model gets wrong is its to explain: unknown tools, bad arguments, no calendar connected', async (t) => {
  const google = fakeGoogle()
  const openai = scriptedOpenAI([
    { text: '', toolCalls: [{ id: 'c1', name: 'delete_everything', arguments: {} }, { id: 'c2', name: 'create_task', arguments: { title: 'x'.repeat(600) } }, { id: 'c3', name: 'create_task', arguments: { title: 'ok', dueDate: '2026-02-30' } }] },
    { text: '', toolCalls: [{ id: 'c4', name: 'list_calendar_events', arguments: { from: 'soon', to: 'later' } }, { id: 'c5', name: 'list_calendar_events', arguments: { from: WEEK.from, to: WEEK.to } }] },
    { text: 'Sorry.' }
  ])
  interceptNetwork(t, ...google.handlers, openai.handler)
  const { app } = await build(t, { env: LIVE_ENV })
  const user = await liveUser(app)
  const chat = (await user.call('POST', '/v1/chats', { model: 'gpt-4o-mini', tools: ['calendar', 'tasks'] })).json() as { id: string }
  // A tool call whose arguments are not JSON at all.
  const res = await user.call('POST', `/v1/chats/${chat.id}/messages`, { content: 'Do things' })
  t.equal(res.statusCode, 201)
  t.same(res.json().suggestions, [])
  t.same(res.json().toolsUsed, ['list_calendar_events'], 'the call that reached the calendar')
  const results = openai.seen.flatMap((r) => r.messages.filter((m) => m.role === 'tool')).map((m) => `${m.tool_call_id as string}: ${m.content as string}`)
  t.match(results, [/c1: .*no tool delete_everything/, /c2: .*title/, /c3: .*dueDate/, /c1: /, /c2: /, /c3: /, /c4: .*ISO 8601/, /c5: .*not connected/])
  t.equal(google.state.eventRequests.length, 0, 'Google was not asked: nothing is connected')
})

t.test('a chat without tools offers none; unknown tools are refused at creation', async (t) => {
  const openai = scriptedOpenAI([{ text: 'Hello.' }])
  interceptNetwork(t, openai.handler)
  const { app } = await build(t, { env: LIVE_ENV })
  const user = await liveUser(app)
  for (const tools of [['calendar', 'calendar'], ['email'], 'calendar']) {
    const res = await user.call('POST', '/v1/chats', { tools })
    t.equal(res.statusCode, 400, JSON.stringify(tools))
  }
  const plain = (await user.call('POST', '/v1/chats', { model: 'gpt-4o-mini' })).json() as { id: string, tools: string[] }
  t.same(plain.tools, [])
  const res = await user.call('POST', `/v1/chats/${plain.id}/messages`, { content: 'Hi' })
  t.notOk('suggestions' in res.json(), 'no tool fields on a chat without tools')
  t.equal(openai.seen[0]?.tools, undefined)
})

t.test('test mode: the sandbox model reads the sandbox calendar and proposes a task', async (t) => {
  const { app } = await build(t)
  const user = await liveUser(app, 'test')
  const link = new URL((await user.call('POST', '/v1/integrations/google-calendar/connect')).json().authorizationUrl)
  await app.inject({ url: `${link.pathname}${link.search}` })
  const chat = (await user.call('POST', '/v1/chats', { tools: ['calendar', 'tasks'] })).json() as { id: string }
  const week = (await user.call('POST', `/v1/chats/${chat.id}/messages`, { content: 'What is on my calendar this week?' })).json()
  t.match(week.content, /Team stand-up/)
  t.same(week.toolsUsed, ['list_calendar_events'])
  const streamed = sse((await user.call('POST', `/v1/chats/${chat.id}/stream`, { content: 'Remind me to book a room for the demo.' })).body)
  const suggestion = streamed.find((e) => e.event === 'suggestion')
  t.match(suggestion?.data, { type: 'create_task', task: { title: 'book a room for the demo', dueDate: /^\d{4}-\d{2}-\d{2}$/ } })
  t.notOk(streamed.some((e) => e.event === 'delta' && e.data.text === ''), 'no empty deltas')
  t.equal((await user.call('POST', '/v1/tasks', suggestion?.data.task)).statusCode, 201)
})

t.test('a model that keeps calling tools: the rounds stop at the bound (streamed)', async (t) => {
  const { openai, user, chat } = await setup(t, [
    { text: '', toolCalls: [calendarCall] },
    { text: '', toolCalls: [{ ...calendarCall, id: 'call_cal_2' }] },
    { text: 'Done.', toolCalls: [{ ...calendarCall, id: 'call_cal_3' }] }
  ])
  const events = sse((await user.call('POST', `/v1/chats/${chat.id}/stream`, { content: 'What is on this week?' })).body)
  t.equal(openai.seen.length, MAX_TOOL_ROUNDS + 1, 'no call after the last round')
  t.same(events.filter((e) => e.event === 'tool').length, MAX_TOOL_ROUNDS, 'tools run in the bounded rounds only')
  t.equal(events.at(-1)?.event, 'done')
})

t.test('a client leaving during a later round: the rounds answered are charged, as a client that left', async (t) => {
  const google = fakeGoogle()
  let calls = 0
  const seen: { upstream?: AbortSignal } = {}
  interceptNetwork(t, ...google.handlers, http.post(OPENAI_URL, async ({ request }) => {
    calls++
    if (calls === 1) return HttpResponse.json(answer(null, [calendarCall]))
    seen.upstream = request.signal
    await new Promise((resolve) => request.signal.addEventListener('abort', resolve))
    return HttpResponse.json(answer('never'))
  }))
  const { app } = await build(t, { env: LIVE_ENV })
  const user = await liveUser(app)
  await connectCalendar(app, google, user)
  const chat = (await user.call('POST', '/v1/chats', { model: 'gpt-4o-mini', tools: ['calendar'] })).json() as { id: string }
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = connect((app.server.address() as { port: number }).port, '127.0.0.1')
  const payload = JSON.stringify({ content: 'What is on this week?' })
  socket.write(`POST /v1/chats/${chat.id}/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${user.token}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`)
  for (let i = 0; i < 400 && seen.upstream === undefined; i++) await delay(25)
  socket.destroy()
  let rows: Awaited<ReturnType<typeof ledger>> = []
  for (let i = 0; i < 400 && rows.length === 0; i++) {
    await delay(25)
    rows = await ledger(app, user.userId)
  }
  t.equal(seen.upstream?.aborted, true, 'the vendor call was stopped')
  t.match(rows, [{ units_in: 700, units_out: 30 }], 'the first round is charged')
  const outcomes = await app.store.query<{ outcome: string }>('SELECT outcome FROM ai_calls WHERE model = $1 ORDER BY id DESC LIMIT 1', ['gpt-4o-mini'])
  t.equal(outcomes.rows[0]?.outcome, 'client-aborted')
})
