import type { FastifyInstance } from 'fastify'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import { createAiCalls } from '../../../../plugins/ai-calls.js'
import { adminHeaders, build, createTestStore, mint, userWithKey } from '../../../helper.js'
import { anthropicMessage, ANTHROPIC_URL } from '../../../anthropic-fake.js'
import { interceptNetwork } from '../../../network.js'
import { completion, OPENAI_URL, openaiError, sseResponse, streamChunks } from '../../../openai-fake.js'

const LIVE_ENV = { OPENAI_API_KEY: 'sk-canary-openai-0123456789', ANTHROPIC_API_KEY: 'sk-ant-canary-0123456789' }

async function chatUser (app: FastifyInstance, mode: 'live' | 'test') {
  const { key } = await userWithKey(app, { plan: 'pro', mode })
  const { token } = await mint(app, key)
  const headers = { authorization: `Bearer ${token}` }
  const chat = (await app.inject({ method: 'POST', url: '/v1/chats', headers, payload: { title: 'CANARY-TITLE-a1' } })).json() as { id: string }
  const send = (path: 'messages' | 'stream', content: string) =>
    app.inject({ method: 'POST', url: `/v1/chats/${chat.id}/${path}`, headers, payload: { content, model: 'gpt-4o-mini' } })
  const rate = (messageId: string, rating: 1 | -1) =>
    app.inject({ method: 'POST', url: `/v1/chats/${chat.id}/messages/${messageId}/feedback`, headers, payload: { rating } })
  const replies = async () => ((await app.inject({ url: `/v1/chats/${chat.id}/messages`, headers })).json() as { data: Array<{ id: string, role: string }> })
    .data.filter((m) => m.role === 'assistant')
  return { send, rate, replies }
}

const analytics = (app: FastifyInstance, query = '') => app.inject({ url: `/v1/admin/analytics/ai${query}`, headers: adminHeaders })

t.test('calls, outcomes, tokens, cost, feedback and time to first token by model and vendor', async (t) => {
  const state = { openaiDown: false }
  interceptNetwork(t,
    http.post(OPENAI_URL, async ({ request }) => {
      if (state.openaiDown) return openaiError(400, 'CANARY-VENDOR-ERROR bad request')
      const body = await request.json() as { stream?: boolean }
      return body.stream === true
        ? sseResponse(streamChunks(['CANARY-REPLY ', 'streamed'], [], { prompt_tokens: 900, completion_tokens: 40 }))
        : HttpResponse.json(completion('CANARY-REPLY json', [], { prompt_tokens: 1200, completion_tokens: 300 }))
    }),
    http.post(ANTHROPIC_URL, () => HttpResponse.json(anthropicMessage('From Claude', { usage: { input_tokens: 500, output_tokens: 60 } })))
  )
  const { app, store } = await build(t, { env: LIVE_ENV })
  const live = await chatUser(app, 'live')
  t.equal((await live.send('messages', 'CANARY-MESSAGE one')).statusCode, 201)
  t.equal((await live.send('stream', 'CANARY-MESSAGE two')).statusCode, 200)
  const [second, first] = await live.replies() as unknown as [{ id: string }, { id: string }]
  t.equal((await live.rate(first.id, 1)).statusCode, 204)
  t.equal((await live.rate(second.id, -1)).statusCode, 204)
  state.openaiDown = true
  t.match((await live.send('messages', 'CANARY-MESSAGE three')).json(), { model: 'claude-haiku-4-5' }, 'the fallback served')
  const test = await chatUser(app, 'test')
  t.equal((await test.send('messages', 'hello')).statusCode, 201)

  const res = await analytics(app)
  t.equal(res.statusCode, 200)
  const report = res.json() as { from: string, to: string, mode: string, data: Array<Record<string, unknown>>, totals: Record<string, number> }
  t.equal(report.mode, 'live')
  t.equal(Date.parse(report.to) - Date.parse(report.from), 30 * 86_400_000, 'the last 30 days by default')
  t.match(report.data, [
    { model: 'gpt-4o-mini', vendor: 'openai', calls: 3, completed: 2, errors: 1, aborted: 0, blocked: 0, inputTokens: 2100, outputTokens: 340, costMicroUsd: 360 + 159, feedbackUp: 1, feedbackDown: 1, ttftP50Ms: Number, ttftP95Ms: Number },
    { model: 'claude-haiku-4-5', vendor: 'anthropic', calls: 1, completed: 1, errors: 0, inputTokens: 500, outputTokens: 60, feedbackUp: 0, feedbackDown: 0 }
  ])
  t.equal(report.data.length, 2, 'test-mode calls are apart')
  t.match(report.totals, { calls: 4, completed: 3, errors: 1, inputTokens: 2600, outputTokens: 400, feedbackUp: 1, feedbackDown: 1 })

  const tested = (await analytics(app, '?mode=test')).json() as typeof report
  t.match(tested.data, [{ model: 'gpt-4o-mini', vendor: 'openai', calls: 1, completed: 1 }])
  const empty = (await analytics(app, '?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z')).json() as typeof report
  t.same([empty.data, empty.totals.calls, empty.from], [[], 0, '2020-01-01T00:00:00.000Z'])

  const { rows } = await store.query<{ error_code: string | null }>('SELECT * FROM ai_calls ORDER BY id')
  t.same(rows.map((r) => r.error_code), [null, null, 'PROVIDER_ERROR', null, null])
  const dump = JSON.stringify(rows)
  t.notOk(/CANARY/.test(dump), 'no content, no vendor message in a call row')
  t.same(Object.keys(rows[0] as object).sort(), ['at', 'cost_micro_usd', 'error_code', 'feature', 'id', 'input_tokens', 'latency_ms', 'mode', 'model', 'outcome', 'output_tokens', 'ttft_ms', 'vendor'], 'no user column')
})

t.test('the period is checked; the route is the operators\'; a call row that cannot be kept fails nothing', async (t) => {
  interceptNetwork(t)
  const { app, logs } = await build(t)
  for (const query of ['?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z', '?from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', '?from=yesterday', '?mode=both']) {
    const res = await analytics(app, query)
    t.equal(res.statusCode, 400, query)
    t.match(res.json(), { error: { code: 'VALIDATION_ERROR' } })
  }
  t.equal((await analytics(app, '?from=2026-01-01T00:00:00Z&to=2026-12-31T00:00:00Z')).statusCode, 200, 'a year is allowed')
  t.equal((await app.inject({ url: '/v1/admin/analytics/ai' })).statusCode, 401)

  app.aiCalls.record = async () => { throw new Error('disk full') }
  const user = await chatUser(app, 'test')
  t.equal((await user.send('messages', 'hello')).statusCode, 201)
  t.equal(logs.find('a chat call could not be recorded for analytics').length, 1)
})

t.test('call rows past the retention are deleted', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  let clock = new Date('2026-01-01T00:00:00Z')
  const calls = createAiCalls(store, () => clock)
  await calls.record({ feature: 'chat', mode: 'live', model: 'gpt-4o-mini', vendor: 'openai', outcome: 'completed' })
  clock = new Date('2026-03-01T00:00:00Z')
  await calls.record({ feature: 'chat', mode: 'live', model: 'gpt-4o-mini', vendor: 'openai', outcome: 'failed', errorCode: 'PROVIDER_TIMEOUT' })
  t.equal(await calls.purge(30), 1)
  clock = new Date('2026-03-01T00:00:01Z')
  t.match((await calls.report({})).data, [{ calls: 1, errors: 1, ttftP50Ms: null }])
  await calls.record({ feature: 'chat', mode: 'live', model: 'gpt-4o', vendor: 'openai', outcome: 'completed', ttftMs: 120 })
  clock = new Date('2026-03-01T00:00:02Z')
  t.same((await calls.report({})).data.map((r) => r.model), ['gpt-4o', 'gpt-4o-mini'], 'as many calls of one vendor: by model')
})
