import type { FastifyInstance } from 'fastify'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import { ConfigError, parseEnv } from '../../../plugins/config.js'
import { parseThresholds, sandboxScores, severityOf, type Thresholds } from '../../../plugins/moderation.js'
import { BLOCKED_REPLY } from '../../../routes/v1/chats/index.js'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { completion, MODERATION_URL, moderation, OPENAI_URL, sseResponse, streamChunks } from '../../openai-fake.js'

const LIVE_ENV = { OPENAI_API_KEY: 'sk-canary-openai-0123456789', MODERATION: 'openai' }

/** Marks a fake text carries to get a score from the fake moderation endpoint. */
const MARKS = { 'MARK-HIGH': { violence: 0.93 }, 'MARK-MEDIUM': { hate: 0.61 }, 'MARK-LOW': { harassment: 0.27 } } as const
const scoresOf = (text: string) => Object.assign({}, ...Object.entries(MARKS).filter(([mark]) => text.includes(mark)).map(([, scores]) => scores))

/** The moderation endpoint and a chat model whose reply is `reply.text`; every moderated input is kept. */
function vendors (t: Parameters<typeof interceptNetwork>[0], reply: { text: string }) {
  const moderated: string[] = []
  const { seen, server } = interceptNetwork(t,
    http.post(MODERATION_URL, async ({ request }) => {
      const { input, model } = await request.json() as { input: string[], model: string }
      if (model !== 'omni-moderation-latest') return HttpResponse.json({ error: { message: 'bad model' } }, { status: 400 })
      moderated.push(...input)
      return HttpResponse.json(moderation(input.map(scoresOf)))
    }),
    http.post(OPENAI_URL, async ({ request }) => {
      const body = await request.json() as { stream?: boolean }
      const usage = { prompt_tokens: 300, completion_tokens: 20 }
      return body.stream === true ? sseResponse(streamChunks(reply.text.split(/(?<= )/), [], usage)) : HttpResponse.json(completion(reply.text, [], usage))
    })
  )
  return { seen, moderated, server }
}

async function session (app: FastifyInstance, mode: 'live' | 'test' = 'live') {
  const { userId, key } = await userWithKey(app, { plan: 'pro', mode })
  const { token } = await mint(app, key)
  const send = (id: string, path: 'messages' | 'stream', content: string) =>
    app.inject({ method: 'POST', url: `/v1/chats/${id}/${path}`, headers: { authorization: `Bearer ${token}` }, payload: { content, model: 'gpt-4o-mini' } })
  const created = await app.inject({ method: 'POST', url: '/v1/chats', headers: { authorization: `Bearer ${token}` }, payload: {} })
  const chat = created.json() as { id: string }
  const messages = async () => ((await app.inject({ url: `/v1/chats/${chat.id}/messages`, headers: { authorization: `Bearer ${token}` } })).json() as {
    data: Array<{ role: string, content: string, flagged: boolean, finishReason: string | null }>
  }).data
  return { userId, token, chat, send, messages }
}

function sse (body: string) {
  const events: EventSourceMessage[] = []
  createParser({ onEvent: (e) => events.push(e) }).feed(body)
  return events.map((e) => ({ event: e.event, data: JSON.parse(e.data) as Record<string, unknown> }))
}

function problemsOf (env: Record<string, string>) {
  try {
    parseEnv(env)
    return []
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
}

const ledger = async (app: FastifyInstance, userId: string) =>
  (await app.store.query<Record<string, unknown>>('SELECT * FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])).rows

t.test('MODERATION_THRESHOLDS: levels, per-category levels, and every problem listed', async (t) => {
  t.same(parseThresholds('high=0.8,medium=0.5,low=0.2'), { high: 0.8, medium: 0.5, low: 0.2, categories: {} })
  t.same(parseThresholds(' high=0.9 , self-harm:high=0.4, self-harm:medium=0.3'), { high: 0.9, medium: 0.5, low: 0.2, categories: { 'self-harm': { high: 0.4, medium: 0.3 } } })
  t.same(parseThresholds('high=2,medium=x'), [
    'MODERATION_THRESHOLDS: "high=2" is not level=score or category:level=score (levels high, medium, low; scores 0 to 1).',
    'MODERATION_THRESHOLDS: "medium=x" is not level=score or category:level=score (levels high, medium, low; scores 0 to 1).'
  ])
  t.same(parseThresholds('medium=0.9,violence:low=0.85'), [
    'MODERATION_THRESHOLDS: the levels must not rise from high to low (high 0.8, medium 0.9, low 0.2).',
    'MODERATION_THRESHOLDS: the levels of violence must not rise from high to low (high 0.8, medium 0.8, low 0.85).'
  ])

  const thresholds = parseThresholds('high=0.8,medium=0.5,low=0.2,self-harm:high=0.4') as Thresholds
  t.same(severityOf([{ violence: 0.1, hate: 0.05 }], thresholds), { severity: 'none', categories: [] })
  t.same(severityOf([{ violence: 0.3 }, { hate: 0.25 }], thresholds), { severity: 'low', categories: ['hate', 'violence'] })
  t.same(severityOf([{ violence: 0.3, hate: 0.6 }, { hate: 0.7 }], thresholds), { severity: 'medium', categories: ['hate'] }, 'the most severe level, its categories once')
  t.same(severityOf([{ violence: 0.6, 'self-harm': 0.45 }], thresholds), { severity: 'high', categories: ['self-harm'] }, 'a category\'s own level')
  t.same(severityOf([{ 'self-harm': 0.39 }], thresholds), { severity: 'low', categories: ['self-harm'] }, 'its medium capped by its own high: no medium band left')
  t.same(severityOf([{ violence: 0.8 }], thresholds), { severity: 'high', categories: ['violence'] }, 'a score at the level reaches it')
  t.same(sandboxScores(['moderation-test:violence=0.9 and moderation-test:hate=0.3', 'nothing', 'moderation-test:hate=7']), [{ violence: 0.9, hate: 0.3 }, {}, {}])

  t.same(problemsOf({ MODERATION: 'openai' }), ['MODERATION=openai needs OPENAI_API_KEY (the moderation endpoint is OpenAI\'s): set the key, or MODERATION=off.'])
  t.same(problemsOf({ MODERATION_THRESHOLDS: 'high=0.1,low=0.5' }), ['MODERATION_THRESHOLDS: the levels must not rise from high to low (high 0.1, medium 0.5, low 0.5).'])
  t.match(problemsOf({ MODERATION_THRESHOLDS: 'loud=0.5' }), [/^MODERATION_THRESHOLDS must be comma-separated level=score entries/])
})

t.test('a message at the high level is refused before anything is reserved or sent to a model', async (t) => {
  const { seen, moderated } = vendors(t, { text: 'never sent' })
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { userId, chat, send, messages } = await session(app)
  for (const path of ['messages', 'stream'] as const) {
    const res = await send(chat.id, path, 'CANARY-MOD-1f0e MARK-HIGH please')
    t.equal(res.statusCode, 422)
    t.match(res.json(), { error: { code: 'CONTENT_REJECTED', details: { categories: ['violence'] } } })
    t.notMatch(res.body, 'CANARY-MOD')
  }
  t.same(seen.map((r) => new URL(r.url).pathname), ['/v1/moderations', '/v1/moderations'], 'no chat call')
  t.same(moderated, ['CANARY-MOD-1f0e MARK-HIGH please', 'CANARY-MOD-1f0e MARK-HIGH please'], 'the new message only')
  t.same(await ledger(app, userId), [])
  t.same(await messages(), [])
  const { rows } = await app.store.query<{ reserved: string }>('SELECT reserved FROM quota_usage WHERE user_id = $1', [userId])
  t.same(rows.map((r) => Number(r.reserved)), [], 'nothing reserved')
  const lines = logs.entries.filter((l) => l.check === 'moderation')
  t.match(lines, [{ stage: 'message', severity: 'high', categories: ['violence'] }, { stage: 'message', severity: 'high' }])
  t.notOk(logs.text.includes('CANARY-MOD'), 'never the text in a log line')
})

t.test('medium: answered with a warning; low: logged by category only; the moderation endpoint failing fails the call, released', async (t) => {
  const reply = { text: 'A fine answer.' }
  const { moderated, server } = vendors(t, reply)
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { userId, chat, send, messages } = await session(app)
  const medium = await send(chat.id, 'messages', 'MARK-MEDIUM question')
  t.equal(medium.statusCode, 201)
  t.match(medium.json(), { content: 'A fine answer.', flagged: false, warning: { severity: 'medium', categories: ['hate'], message: /sensitive subject \(hate\)/ } })
  t.same(moderated, ['MARK-MEDIUM question', 'A fine answer.'], 'the message before, the reply after')

  reply.text = 'An answer MARK-LOW and MARK-MEDIUM.'
  const stream = await send(chat.id, 'stream', 'MARK-LOW question')
  const done = sse(stream.body).at(-1)
  t.match(done, { event: 'done', data: { warning: { severity: 'medium', categories: ['hate'] } } }, 'the reply\'s level')
  t.match(logs.entries.filter((l) => l.check === 'moderation'), [
    { stage: 'message', severity: 'medium', categories: ['hate'] },
    { stage: 'message', severity: 'low', categories: ['harassment'] },
    { stage: 'reply', severity: 'medium', categories: ['hate'] }
  ])
  t.notOk('warning' in ((await messages())[0] as object), 'a warning is not stored')
  t.equal((await ledger(app, userId)).length, 2)

  const { app: down } = await build(t, { env: { ...LIVE_ENV, OPENAI_BASE_URL: 'https://moderation-down.example/v1' } })
  server.use(http.post('https://moderation-down.example/v1/moderations', () => HttpResponse.json({ error: { message: 'down', type: 'server_error' } }, { status: 500 })))
  const other = await session(down)
  const failed = await other.send(other.chat.id, 'messages', 'hello')
  t.equal(failed.statusCode, 502)
  t.same(await ledger(down, other.userId), [], 'a message that could not be checked is not sent')
})

t.test('a reply at the high level: JSON keeps the notice, flagged; a stream ends with an error event and keeps nothing; both charged', async (t) => {
  const reply = { text: 'CANARY-BAD-REPLY-3c1d MARK-HIGH' }
  vendors(t, reply)
  const { app, logs, store } = await build(t, { env: LIVE_ENV })
  const { userId, chat, send, messages } = await session(app)
  const json = await send(chat.id, 'messages', 'tell me')
  t.equal(json.statusCode, 201)
  t.match(json.json(), { content: BLOCKED_REPLY, flagged: true, finishReason: 'content_filter', usage: { inputTokens: 300, outputTokens: 20 } })
  t.match(await messages(), [{ role: 'assistant', content: BLOCKED_REPLY, flagged: true }, { role: 'user', content: 'tell me', flagged: false }])

  const stream = await send(chat.id, 'stream', 'tell me again')
  const events = sse(stream.body)
  t.same(events.map((e) => e.event), ['delta', 'delta', 'usage', 'error'])
  t.match(events.at(-1)?.data, { error: { code: 'CONTENT_REJECTED', message: /discard what was shown/ } })
  t.equal((await messages()).length, 2, 'the blocked streamed reply is not stored')
  t.match(await ledger(app, userId), [{ units_in: '300', units_out: '20' }, { units_in: '300', units_out: '20' }], 'what the vendor generated is charged')
  t.match(logs.entries.filter((l) => l.check === 'moderation'), [{ stage: 'reply', severity: 'high' }, { stage: 'reply', severity: 'high' }])
  t.notOk(logs.text.includes('CANARY-BAD-REPLY'))
  t.notOk((await dumpAllTables(store)).includes('CANARY-BAD-REPLY'), 'the blocked text is in no table')
})

t.test('test mode: the sandbox moderator scores the marks a text carries, offline', async (t) => {
  const { seen } = interceptNetwork(t)
  const { app } = await build(t, { env: LIVE_ENV })
  const { chat, send } = await session(app, 'test')
  const high = await send(chat.id, 'messages', 'moderation-test:violence=0.95')
  t.match(high.json(), { error: { code: 'CONTENT_REJECTED', details: { categories: ['violence'] } } })
  const medium = await send(chat.id, 'messages', 'moderation-test:self-harm=0.6 hello')
  t.match(medium.json(), { flagged: false, warning: { categories: ['self-harm'] } })
  t.notOk('warning' in ((await send(chat.id, 'messages', 'hello')).json() as object))
  t.same(seen, [], 'nothing left the process')
})
