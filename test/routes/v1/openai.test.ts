import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createOpenAICompatible } from '@ai-sdk/openai-compatible'
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai'
import type { FastifyInstance } from 'fastify'
import { http, HttpResponse } from 'msw'
import OpenAI, { APIError } from 'openai'
import t, { type Test } from 'tap'
import { fetch as undiciFetch } from 'undici'
import { costMicroUsd } from '../../../plugins/chats.js'
import { withMarkup } from '../../../plugins/money.js'
import { FEATURES } from '../../../plugins/features.js'
import { loadModels } from '../../../plugins/models.js'
import { VENDORS } from '../../../providers/vendors.js'
import type { VendorId } from '../../../schemas/models.js'
import { anthropicEvents, anthropicMessage, anthropicStream, ANTHROPIC_URL } from '../../anthropic-fake.js'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { MODEL_OF, VENDOR_ENV, VENDOR_KEYS } from '../../vendor-keys.js'
import { completion, openaiError, sseResponse, streamChunks } from '../../openai-fake.js'

// The OpenAI-compatible surface through the clients people use: the official openai package and the AI SDK's
// OpenAI-compatible provider, pointed at a listening service whose vendors are msw fakes in their documented shapes.

const KEYS = VENDOR_KEYS
const LIVE = VENDOR_ENV
const COMPATIBLE = ['openai', 'qwen', 'deepseek', 'xai', 'gemini'] as const
const catalog = loadModels()
const entry = (id: string) => catalog.find((m) => m.id === id) as (typeof catalog)[number]

const feature = (limit: number) => ({ 'openai-compatible': { quota: { limit, period: 'month' }, rateLimitPerMinute: 1000 } })
const PLANS_FILE = join(mkdtempSync(join(tmpdir(), 'openai-plans-')), 'plans.json')
writeFileSync(PLANS_FILE, JSON.stringify({
  plans: {
    pro: { name: 'Pro', features: feature(10_000_000), rateLimitPerMinute: 100_000 },
    small: { name: 'Small', features: feature(3000), rateLimitPerMinute: 100_000 },
    billed: { name: 'Billed', features: feature(10_000_000), credits: { monthlyFreeCents: 500, markupPercent: 40 }, rateLimitPerMinute: 100_000 },
    slow: { name: 'Slow', features: { 'openai-compatible': { quota: { limit: 10_000_000, period: 'month' }, rateLimitPerMinute: 1 } }, rateLimitPerMinute: 100_000 },
    chat: { name: 'Chat only', features: { chat: { quota: { limit: 1000, period: 'month' }, rateLimitPerMinute: 100 } }, rateLimitPerMinute: 100 }
  },
  prices: { sandbox: { perCall: 0 } }
}))

/**
 * The clients reach the listening service over real HTTP with undici's own fetch, which msw does not patch: msw sees
 * (and fakes) only the service's calls to vendors. (Through msw's passthrough, a stream read slowly never ends.)
 */
const direct = undiciFetch as unknown as typeof fetch

async function serve (t: Test, env: Record<string, string> = {}) {
  const built = await build(t, { env: { PLANS_FILE, ...env } })
  await built.app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(built.app.server.address() as { port: number }).port}/v1/openai`
  return { ...built, base }
}

async function userOn (app: FastifyInstance, plan: string, mode: 'live' | 'test' = 'live') {
  const { userId, key } = await userWithKey(app, { plan, mode })
  return { userId, token: (await mint(app, key)).token }
}

const ledger = async (app: FastifyInstance, userId: string) =>
  (await app.store.query<Record<string, unknown>>('SELECT * FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])).rows

const jsonOf = async (request: Request) => await request.clone().json() as Record<string, unknown>

/** A chat.completion whose reply is one tool call. */
function toolCompletion (name: string, args: unknown, usage = { prompt_tokens: 50, completion_tokens: 9 }) {
  const body = completion('', [], usage)
  const choice = body.choices[0] as { message: Record<string, unknown>, finish_reason: string }
  choice.message = { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'call_w1', type: 'function', function: { name, arguments: JSON.stringify(args) } }] }
  choice.finish_reason = 'tool_calls'
  return body
}

const vendorHandlers = () => [
  http.post(ANTHROPIC_URL, async ({ request }) => {
    const body = await jsonOf(request)
    return body.stream === true
      ? anthropicStream(anthropicEvents(['from ', 'anthropic'], { usage: { input: 40, output: 2 } }))
      : HttpResponse.json(anthropicMessage('from anthropic', { usage: { input_tokens: 40, output_tokens: 2 } }))
  }),
  ...COMPATIBLE.map((vendor) => http.post(`${VENDORS[vendor].defaultBaseUrl}/chat/completions`, async ({ request }) => {
    const body = await jsonOf(request)
    return body.stream === true
      ? sseResponse(streamChunks(['from ', vendor], [], { prompt_tokens: 40, completion_tokens: 2 }))
      : HttpResponse.json(completion(`from ${vendor}`, [], { prompt_tokens: 40, completion_tokens: 2 }))
  }))
]

t.test('the official openai client: JSON and streamed with usage on every vendor\'s fake, the messages sent as given, metering exact', async (t) => {
  const { seen } = interceptNetwork(t, ...vendorHandlers())
  const { app, base, logs, store } = await serve(t, LIVE)
  const { userId, token } = await userOn(app, 'pro')
  const client = new OpenAI({ apiKey: token, baseURL: base, maxRetries: 0, fetch: direct })
  const userHash = app.hash.user(userId)
  t.same(FEATURES['openai-compatible'].sends.map((s) => s.field)[0], 'messages', 'the disclosure declares the messages first')

  const listed = await client.models.list()
  t.same(listed.data.map((m) => m.id), catalog.map((m) => m.id), 'a pro plan with every vendor configured sees the whole catalog')
  t.match(listed.data[0], { object: 'model', owned_by: 'openai' })

  for (const vendor of Object.keys(MODEL_OF) as VendorId[]) {
    const model = MODEL_OF[vendor]
    const messages = [
      { role: 'system' as const, content: `CANARY-SYSTEM-${vendor}` },
      { role: 'user' as const, content: `CANARY-USER-${vendor}` }
    ]
    const before = seen.length
    const answer = await client.chat.completions.create({ model, messages, temperature: 0.5, max_tokens: 300, stop: ['END'] })
    t.equal(answer.object, 'chat.completion', `${vendor}: JSON`)
    t.equal(answer.model, model, 'the model that served')
    t.equal(answer.choices[0]?.message.content, `from ${vendor}`)
    t.equal(answer.choices[0]?.finish_reason, 'stop')
    t.same(answer.usage, { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42 }, 'the vendor\'s counts')

    const stream = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let usage: OpenAI.CompletionUsage | null | undefined
    const finishes: string[] = []
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      if (chunk.choices[0]?.finish_reason != null) finishes.push(chunk.choices[0].finish_reason)
      if (chunk.usage != null) usage = chunk.usage
      t.equal(chunk.model, model)
    }
    t.equal(text, `from ${vendor}`, `${vendor}: streamed`)
    t.same(finishes, ['stop'])
    t.same(usage, { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42 }, 'usage in the last chunk')

    const requests = seen.slice(before)
    t.equal(requests.length, 2, `${vendor}: one vendor request per call`)
    for (const [i, request] of requests.entries()) {
      t.equal(request.headers.get('authorization'), `Bearer ${KEYS[vendor]}`)
      const body = await request.json() as Record<string, unknown>
      t.equal(body.model, entry(model).upstreamModel)
      const userField = VENDORS[vendor].userField
      if (userField === 'metadata.user_id') t.same(body.metadata, { user_id: userHash })
      else if (userField !== null) t.equal(body[userField], userHash)
      if (vendor === 'anthropic') {
        t.equal(body.system, `CANARY-SYSTEM-${vendor}`, 'the caller\'s system prompt, no other')
        t.same(body.messages, [{ role: 'user', content: `CANARY-USER-${vendor}` }])
        if (i === 0) t.match(body, { temperature: 0.5, max_tokens: 300, stop_sequences: ['END'] })
        else t.equal(body.max_tokens, 4096, 'the service\'s default reply limit')
      } else {
        t.same(body.messages, messages, 'the messages as given')
        if (i === 0) t.match(body, { temperature: 0.5, stop: ['END'], [vendor === 'openai' ? 'max_completion_tokens' : 'max_tokens']: 300 })
        if (i === 1) t.same(body.stream_options, { include_usage: true })
      }
      const text = JSON.stringify(body)
      for (const secret of [userId, token, ...Object.values(KEYS)]) t.notOk(text.includes(secret), `${vendor}: no id or key in the body`)
    }
  }

  const rows = await ledger(app, userId)
  t.equal(rows.length, 12, 'one ledger row per call')
  for (const row of rows) {
    const model = entry(row.model as string)
    t.match(row, { feature: 'openai-compatible', units_in: '40', units_out: '2', units: '42', estimated: false, session_id: null })
    t.equal(Number(row.cost_micro_usd), costMicroUsd(model, 40, 2), `${model.id}: the list price of the vendor's counts`)
  }
  const reserved = await app.store.query<{ n: number }>('SELECT count(*)::int AS n FROM quota_reservations WHERE user_id = $1', [userId])
  t.equal(reserved.rows[0]?.n, 0, 'every reservation settled')

  const dump = await dumpAllTables(store)
  for (const vendor of Object.keys(MODEL_OF)) {
    for (const canary of [`CANARY-SYSTEM-${vendor}`, `CANARY-USER-${vendor}`, `from ${vendor}`]) {
      t.notOk(logs.text.includes(canary), `${canary} is in no log line`)
      t.notOk(dump.includes(canary), `${canary} is in no table`)
    }
  }
})

t.test('tools: a call proposed, answered and passed on in each vendor\'s format, JSON and streamed', async (t) => {
  const weather = { type: 'function' as const, function: { name: 'get_weather', description: 'The weather of a city.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }
  let openaiTurn = 0
  const { seen } = interceptNetwork(t,
    http.post(`${VENDORS.openai.defaultBaseUrl}/chat/completions`, async ({ request }) => {
      const body = await jsonOf(request)
      openaiTurn++
      if (body.stream === true) return sseResponse(streamChunks(['Checking. '], [{ settingId: 'x', value: 1, reason: 'r' }], { prompt_tokens: 60, completion_tokens: 12 }))
      return HttpResponse.json(openaiTurn === 1 ? toolCompletion('get_weather', { city: 'Oslo' }) : completion('It is sunny in Oslo.', [], { prompt_tokens: 80, completion_tokens: 7 }))
    }),
    http.post(ANTHROPIC_URL, async ({ request }) => {
      const body = await jsonOf(request)
      if (body.stream === true) return anthropicStream(anthropicEvents(['Let me look.'], { tool: { name: 'get_weather', input: { city: 'Bergen' } }, usage: { input: 70, output: 15 } }))
      return HttpResponse.json(anthropicMessage('', { tool: { name: 'get_weather', input: { city: 'Bergen' } }, usage: { input_tokens: 70, output_tokens: 15 } }))
    }),
    // The other Chat Completions vendors: a tool call whole (JSON) or in pieces (streamed), with the vendor's own id.
    ...(['qwen', 'deepseek', 'xai', 'gemini'] as const).map((vendor) => http.post(`${VENDORS[vendor].defaultBaseUrl}/chat/completions`, async ({ request }) => {
      const body = await jsonOf(request)
      if (body.stream === true) return sseResponse(JSON.parse(JSON.stringify(streamChunks([], [{ settingId: vendor, value: 1, reason: 'r' }])).replaceAll('call_1', `call_${vendor}`)) as unknown[])
      return HttpResponse.json(JSON.parse(JSON.stringify(toolCompletion('get_weather', { city: vendor })).replaceAll('call_w1', `call_${vendor}`)))
    })))
  const { app, base } = await serve(t, LIVE)
  const { token } = await userOn(app, 'pro')
  const client = new OpenAI({ apiKey: token, baseURL: base, maxRetries: 0, fetch: direct })
  const vendorBodies = () => seen

  const first = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools: [weather], tool_choice: 'auto' })
  const call = first.choices[0]?.message.tool_calls?.[0]
  t.equal(first.choices[0]?.finish_reason, 'tool_calls')
  t.equal(first.choices[0]?.message.content, null, 'no text beside the call')
  t.match(call, { id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } })
  const asked = await vendorBodies().at(-1)?.json() as Record<string, unknown>
  t.same(asked.tools, [weather], 'the tool definition as given')
  t.equal(asked.tool_choice, 'auto')

  const second = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    tools: [weather],
    messages: [
      { role: 'user', content: 'Weather in Oslo?' },
      { role: 'assistant', content: null, tool_calls: [call as OpenAI.ChatCompletionMessageFunctionToolCall] },
      { role: 'tool', tool_call_id: 'call_w1', content: '{"sky":"clear"}' }
    ]
  })
  t.equal(second.choices[0]?.message.content, 'It is sunny in Oslo.')
  const answered = await vendorBodies().at(-1)?.json() as { messages: unknown[], tool_choice: unknown }
  t.same(answered.messages, [
    { role: 'user', content: 'Weather in Oslo?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'call_w1', content: '{"sky":"clear"}' }
  ], 'the tool round in the Chat Completions format')
  t.equal(answered.tool_choice, 'auto', 'auto when the caller set none')

  // Streamed: the SDK's own helper puts the calls back together.
  const streamed = await client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Suggest.' }], tools: [{ type: 'function', function: { name: 'suggest_settings', parameters: { type: 'object' } } }] }).finalChatCompletion()
  t.equal(streamed.choices[0]?.message.content, 'Checking. ')
  t.match(streamed.choices[0]?.message.tool_calls?.[0], { id: 'call_1', function: { name: 'suggest_settings' } })
  t.same(JSON.parse(streamed.choices[0]?.message.tool_calls?.[0]?.type === 'function' ? streamed.choices[0].message.tool_calls[0].function.arguments : ''), { suggestions: [{ settingId: 'x', value: 1, reason: 'r' }] })
  t.equal(streamed.choices[0]?.finish_reason, 'tool_calls')

  // Anthropic: the same round as tool_use and tool_result blocks; tool_choice required is `any`.
  const claude = await client.chat.completions.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Weather in Bergen?' }], tools: [weather], tool_choice: 'required' })
  t.match(claude.choices[0]?.message.tool_calls?.[0], { id: 'toolu_01', function: { name: 'get_weather', arguments: '{"city":"Bergen"}' } })
  t.same((await vendorBodies().at(-1)?.json() as { tool_choice: unknown }).tool_choice, { type: 'any' })
  await client.chat.completions.create({
    model: 'claude-haiku-4-5',
    tools: [weather],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
    messages: [
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: 'Weather in Bergen?' },
      { role: 'assistant', content: 'Let me look.', tool_calls: [{ id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Bergen"}' } }] },
      { role: 'tool', tool_call_id: 'toolu_01', content: [{ type: 'text', text: 'rain' }] },
      { role: 'user', content: 'And tomorrow?' }
    ]
  })
  const blocks = await vendorBodies().at(-1)?.json() as Record<string, unknown>
  t.equal(blocks.system, 'Be brief.', 'a developer message is a system text')
  t.same(blocks.tool_choice, { type: 'tool', name: 'get_weather' })
  t.same(blocks.messages, [
    { role: 'user', content: 'Weather in Bergen?' },
    { role: 'assistant', content: [{ type: 'text', text: 'Let me look.' }, { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Bergen' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: 'rain' }, { type: 'text', text: 'And tomorrow?' }] }
  ], 'tool_use, then the result and the next question in one user turn')

  const streamedClaude = await client.chat.completions.stream({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Bergen?' }], tools: [weather], stream_options: { include_usage: true } }).finalChatCompletion()
  t.equal(streamedClaude.choices[0]?.message.content, 'Let me look.')
  t.match(streamedClaude.choices[0]?.message.tool_calls?.[0], { id: 'toolu_01', function: { name: 'get_weather', arguments: '{"city":"Bergen"}' } })
  t.same(streamedClaude.usage, { prompt_tokens: 70, completion_tokens: 15, total_tokens: 85 }, 'usage when asked for')

  for (const vendor of ['qwen', 'deepseek', 'xai', 'gemini'] as const) {
    const json = await client.chat.completions.create({ model: MODEL_OF[vendor], messages: [{ role: 'user', content: 'Weather?' }], tools: [weather] })
    t.match(json.choices[0], { finish_reason: 'tool_calls', message: { tool_calls: [{ id: `call_${vendor}`, function: { name: 'get_weather', arguments: JSON.stringify({ city: vendor }) } }] } }, `${vendor}: a tool call, JSON`)
    t.same((await vendorBodies().at(-1)?.json() as { tools: unknown }).tools, [weather], `${vendor}: the tool as given`)
    const streamed = await client.chat.completions.stream({ model: MODEL_OF[vendor], messages: [{ role: 'user', content: 'Suggest.' }], tools: [weather] }).finalChatCompletion()
    t.match(streamed.choices[0]?.message.tool_calls?.[0], { id: `call_${vendor}`, function: { name: 'suggest_settings', arguments: /"settingId":"/ } }, `${vendor}: a tool call, streamed`)
  }
})

t.test('structured output on a Chat Completions vendor; a fallback that cannot honour the request is skipped', async (t) => {
  const { seen } = interceptNetwork(t,
    http.post(`${VENDORS.openai.defaultBaseUrl}/chat/completions`, () => openaiError(500, 'boom')),
    http.post(ANTHROPIC_URL, () => { throw new Error('Anthropic takes no json_schema: never tried') }),
    http.post(`${VENDORS.qwen.defaultBaseUrl}/chat/completions`, () => HttpResponse.json(completion('{"ok":true}', [], { prompt_tokens: 30, completion_tokens: 4 }))))
  const { app, base } = await serve(t, LIVE)
  const { userId, token } = await userOn(app, 'pro')
  const client = new OpenAI({ apiKey: token, baseURL: base, maxRetries: 0, fetch: direct })
  const format = { type: 'json_schema' as const, json_schema: { name: 'answer', strict: false, schema: { type: 'object', properties: { ok: { type: 'boolean' } } } } }
  const { data, response } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'ok?' }], response_format: format }).withResponse()
  t.equal(data.model, 'qwen-plus', 'the answer says which model served')
  t.equal(response.headers.get('ai-provider'), 'qwen')
  t.equal(data.choices[0]?.message.content, '{"ok":true}')
  const vendorCalls = seen
  t.same(vendorCalls.map((r) => new URL(r.url).host), ['api.openai.com', 'api.openai.com', 'api.openai.com', 'dashscope-intl.aliyuncs.com'], 'OpenAI retried, Anthropic skipped, Qwen served')
  t.same((await vendorCalls.at(-1)?.json() as { response_format: unknown }).response_format, format, 'the format as given')
  t.match(await ledger(app, userId), [{ model: 'qwen-plus', provider: 'qwen', units_in: '30', units_out: '4' }])
})

t.test('errors reach the SDK in OpenAI\'s shape with our codes, statuses and request id', async (t) => {
  let fail: 'down' | 'cut' = 'down'
  interceptNetwork(t,
    http.post(`${VENDORS.openai.defaultBaseUrl}/chat/completions`, async ({ request }) => {
      const body = await jsonOf(request)
      if (fail === 'cut' && body.stream === true) return sseResponse(streamChunks(['One. ', 'Two. ']), { cutAfter: 2 })
      return openaiError(503, 'overloaded')
    }),
    ...['claude-haiku-4-5', 'qwen-plus', 'deepseek-chat'].map((model) => {
      const vendor = entry(model).vendor
      return http.post(vendor === 'anthropic' ? ANTHROPIC_URL : `${VENDORS[vendor].defaultBaseUrl}/chat/completions`, () => HttpResponse.error())
    }))
  const { app, base } = await serve(t, { PLANS_FILE, OPENAI_API_KEY: KEYS.openai, ANTHROPIC_API_KEY: KEYS.anthropic, QWEN_API_KEY: KEYS.qwen, DEEPSEEK_API_KEY: KEYS.deepseek })
  const { userId, token } = await userOn(app, 'small')
  const client = new OpenAI({ apiKey: token, baseURL: base, maxRetries: 0, fetch: direct })
  const caught = async (work: () => Promise<unknown>) => {
    try {
      await work()
    } catch (err) {
      return err as APIError
    }
    throw new Error('no error')
  }

  const unknown = await caught(() => client.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'hi' }] }))
  t.ok(unknown instanceof OpenAI.BadRequestError)
  t.match(unknown, { status: 400, code: 'VALIDATION_ERROR', param: 'model', type: 'invalid_request_error' })
  t.match(unknown.requestID, /^[0-9a-f-]{36}$/, 'the request id header reaches the SDK')

  const forged = await caught(() => new OpenAI({ apiKey: 'not-a-token', baseURL: base, maxRetries: 0, fetch: direct }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }))
  t.ok(forged instanceof OpenAI.AuthenticationError)
  t.match(forged, { status: 401, code: 'UNAUTHENTICATED', type: 'authentication_error' })

  const down = await caught(() => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100 }))
  t.ok(down instanceof OpenAI.InternalServerError)
  t.match(down, { status: 503, type: 'server_error' })
  t.match(down.code, /^PROVIDER_(UNAVAILABLE|ERROR)$/)
  t.same(await ledger(app, userId), [], 'a call no vendor answered charges nothing')

  fail = 'cut'
  const cut = await caught(async () => {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'count' }], stream: true, max_completion_tokens: 100 })
    for await (const chunk of stream) t.ok(chunk.choices.length > 0)
  })
  t.ok(cut instanceof APIError, 'an error event in the stream is thrown by the SDK')
  t.match(cut, { code: 'PROVIDER_ERROR', type: 'server_error' })
  t.match(await ledger(app, userId), [{ model: 'gpt-4o-mini', estimated: true }], 'a stream cut short is charged what was sent and generated')

  const over = await caught(() => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }))
  t.match(over, { status: 402, code: 'QUOTA_EXCEEDED', type: 'insufficient_quota' }, 'a reply limit of 4,096 tokens does not fit 3,000')

  const none = await userOn(app, 'chat')
  const refused = await caught(() => new OpenAI({ apiKey: none.token, baseURL: base, maxRetries: 0, fetch: direct }).models.list())
  t.ok(refused instanceof OpenAI.PermissionDeniedError)
  t.match(refused, { status: 403, code: 'NOT_ENTITLED', type: 'permission_error' })

  const slow = await userOn(app, 'slow')
  const slowClient = new OpenAI({ apiKey: slow.token, baseURL: base, maxRetries: 0, fetch: direct })
  await slowClient.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch(() => undefined)
  const limited = await caught(() => slowClient.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }))
  t.ok(limited instanceof OpenAI.RateLimitError)
  t.match(limited, { status: 429, code: 'RATE_LIMITED', type: 'rate_limit_error' })
  t.ok(Number(limited.headers?.get('retry-after')) > 0, 'Retry-After comes along')
})

t.test('credits: a billed plan pays the list price with its markup; a test-mode token gets the sandbox', async (t) => {
  interceptNetwork(t, ...vendorHandlers())
  const { app, base } = await serve(t, LIVE)
  const billed = await userOn(app, 'billed')
  const client = new OpenAI({ apiKey: billed.token, baseURL: base, maxRetries: 0, fetch: direct })
  await client.chat.completions.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }] })
  const [row] = await ledger(app, billed.userId)
  const cost = costMicroUsd(entry('claude-haiku-4-5'), 40, 2)
  t.match(row, { feature: 'openai-compatible', cost_micro_usd: String(cost), charged_micro_usd: String(withMarkup(cost, 40)) })
  const balance = (await app.inject({ url: '/v1/billing/balance', headers: { authorization: `Bearer ${billed.token}` } })).json<{ balanceMicroUsd: number }>()
  t.equal(balance.balanceMicroUsd, 5_000_000 - withMarkup(cost, 40), 'the balance paid for it, nothing held any more')

  const tester = await userOn(app, 'pro', 'test')
  const sandbox = new OpenAI({ apiKey: tester.token, baseURL: base, maxRetries: 0, fetch: direct })
  const { data, response } = await sandbox.chat.completions.create({ model: 'gpt-4.1', messages: [{ role: 'user', content: 'two words' }] }).withResponse()
  t.equal(response.headers.get('ai-provider'), 'sandbox')
  t.match(data.choices[0]?.message.content, /^Test mode \(sandbox, no AI model was called\), standing in for gpt-4\.1: your message has 2 words/)
  const forced = await sandbox.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'pick', parameters: { type: 'object' } } }], tool_choice: { type: 'function', function: { name: 'pick' } }, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } } })
  t.match(forced.choices[0], { finish_reason: 'tool_calls', message: { tool_calls: [{ function: { name: 'pick', arguments: '{}' } }] } }, 'the sandbox calls a tool the caller insists on')
  t.match(JSON.parse(forced.choices[0]?.message.content ?? ''), { sandbox: /^Test mode/ }, 'and answers JSON when asked for structured output')
  t.match(await ledger(app, tester.userId), [{ provider: 'sandbox', mode: 'test' }, { provider: 'sandbox' }])
})

t.test('the AI SDK\'s OpenAI-compatible provider: generateText and streamText with usage, a tool round, errors with our code', async (t) => {
  const { server } = interceptNetwork(t, ...vendorHandlers())
  const { app, base } = await serve(t, LIVE)
  const { userId, token } = await userOn(app, 'pro')
  const portal = createOpenAICompatible({ name: 'portal', baseURL: base, apiKey: token, includeUsage: true, fetch: direct })

  for (const model of ['gpt-4o-mini', 'claude-haiku-4-5']) {
    const generated = await generateText({ model: portal(model), prompt: 'CANARY-AISDK say hi', maxRetries: 0 })
    t.equal(generated.text, `from ${entry(model).vendor}`)
    t.match(generated.usage, { inputTokens: 40, outputTokens: 2 })
    const streamed = streamText({ model: portal(model), prompt: 'CANARY-AISDK say hi', maxRetries: 0 })
    let text = ''
    for await (const piece of streamed.textStream) text += piece
    t.equal(text, `from ${entry(model).vendor}`, `${model}: streamed`)
    t.match(await streamed.usage, { inputTokens: 40, outputTokens: 2 })
  }

  // A tool round as the AI SDK writes it: the call comes back, the SDK runs it and sends its result.
  const weather = tool({
    description: 'The weather of a city.',
    inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }),
    execute: async ({ city }) => ({ city, sky: 'clear' })
  })
  const rounds: Array<Record<string, unknown>> = []
  server.use(http.post(`${VENDORS.openai.defaultBaseUrl}/chat/completions`, async ({ request }) => {
    const body = await request.json() as Record<string, unknown>
    rounds.push(body)
    return HttpResponse.json(rounds.length === 1 ? toolCompletion('weather', { city: 'Oslo' }) : completion('Clear skies in Oslo.', [], { prompt_tokens: 80, completion_tokens: 5 }))
  }))
  const looped = await generateText({ model: portal('gpt-4o-mini'), prompt: 'Weather in Oslo?', tools: { weather }, stopWhen: stepCountIs(2), maxRetries: 0 })
  t.equal(looped.text, 'Clear skies in Oslo.')
  t.match(rounds[1]?.messages, [{ role: 'user' }, { role: 'assistant', tool_calls: [{ id: 'call_w1', function: { name: 'weather' } }] }, { role: 'tool', tool_call_id: 'call_w1' }], 'the SDK\'s tool round passed on as given')
  t.match(JSON.parse((rounds[1]?.messages as Array<{ content: string }>)[2]?.content ?? ''), { city: 'Oslo', sky: 'clear' })

  const failed = await generateText({ model: portal('gpt-9'), prompt: 'hi', maxRetries: 0 }).then(() => null, (err: unknown) => err as { statusCode: number, responseBody: string })
  t.equal(failed?.statusCode, 400)
  t.match(JSON.parse(failed?.responseBody ?? '{}'), { error: { code: 'VALIDATION_ERROR', param: 'model' } })
  t.equal((await ledger(app, userId)).length, 6, 'every call that reached a vendor metered')
})
