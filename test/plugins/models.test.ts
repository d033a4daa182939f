import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { http, HttpResponse } from 'msw'
import pino from 'pino'
import t from 'tap'
import defaultRouting from '../../defaults/routing.json' with { type: 'json' }
import { ConfigError } from '../../plugins/config.js'
import { classifyTask, createModels, loadModels, loadRouting, vendorProviders, type ModelEntry } from '../../plugins/models.js'
import type { ChatCall } from '../../providers/chat.js'
import { createSandboxModels } from '../../providers/sandbox-chat.js'
import { VENDORS } from '../../providers/vendors.js'
import type { VendorId } from '../../schemas/models.js'
import { anthropicEvents, anthropicStream, ANTHROPIC_URL } from '../anthropic-fake.js'
import { build, LogCapture, mint, testConfig, userWithKey } from '../helper.js'
import { interceptNetwork } from '../network.js'
import { completion, openaiError, sseResponse, streamChunks } from '../openai-fake.js'

const dir = mkdtempSync(join(tmpdir(), 'models-test-'))
const file = (name: string, content: unknown) => {
  const path = join(dir, name)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}
const catalog = loadModels()
const model = (id: string) => catalog.find((m) => m.id === id) as ModelEntry

function problems (fn: () => unknown): string[] {
  try { fn() } catch (err) { if (err instanceof ConfigError) return err.problems; throw err }
  return []
}

t.test('the bundled catalog and routing load; prices become whole micro-USD', async (t) => {
  t.ok(catalog.length >= 12)
  t.same(new Set(catalog.map((m) => m.vendor)), new Set(['openai', 'anthropic', 'qwen', 'deepseek', 'xai', 'gemini']))
  t.match(model('gpt-4o-mini'), { inputMicroUsdPer1M: 150_000, outputMicroUsdPer1M: 600_000 })
  t.ok(loadRouting(undefined, catalog).plans.pro?.premium)
})

t.test('a broken catalog or routing file fails startup listing every problem', async (t) => {
  t.match(problems(() => loadModels(file('bad.json', '{nope'))), [/MODELS_FILE cannot be read as JSON/])
  t.match(problems(() => loadModels(file('shape.json', { pricesAsOf: '2026-01-01', models: [{ id: 'X Y' }] }))), [/MODELS_FILE \/models\/0/])
  const base = catalog[0] as ModelEntry
  const { inputMicroUsdPer1M: _i, outputMicroUsdPer1M: _o, ...entry } = base
  t.same(problems(() => loadModels(file('logic.json', {
    pricesAsOf: '2026-01-01',
    models: [entry, { ...entry }, { ...entry, id: 'tiny', maxOutputTokens: 999_999, contextTokens: 2048 }, { ...entry, id: 'fine', inputCostPer1M: 0.0000001 }]
  }))), [
    `MODELS_FILE /models/1 (${entry.id}): the id is used twice.`,
    'MODELS_FILE /models/2 (tiny): maxOutputTokens is above contextTokens.',
    'MODELS_FILE /models/3 (fine): a price has more than 6 decimals (prices are whole micro-USD per million tokens).'
  ])
  t.match(problems(() => loadRouting(file('r-shape.json', { default: {} }), catalog)), [/ROUTING_FILE/])
  const routes = { summary: 'gpt-4o-mini', reasoning: 'gpt-4o-mini', creative: 'gpt-4o-mini', code: 'gpt-4o-mini', general: 'gpt-4o-mini' }
  t.same(problems(() => loadRouting(file('r-logic.json', {
    default: { premium: false, routes: { ...routes, code: 'gpt-4.1', general: 'nope' } },
    plans: { gold: { premium: true, routes } },
    fallbacks: { ghost: [], 'gpt-4o-mini': ['gpt-4o-mini', 'missing', 'qwen-plus', 'qwen-plus'] }
  }), catalog)), [
    'ROUTING_FILE /default/routes/code: gpt-4.1 is premium, and this plan has no premium models.',
    'ROUTING_FILE /default/routes/general: no model nope in the catalog.',
    'ROUTING_FILE /fallbacks/ghost: no such model in the catalog.',
    'ROUTING_FILE /fallbacks/gpt-4o-mini/0: gpt-4o-mini is already in the chain.',
    'ROUTING_FILE /fallbacks/gpt-4o-mini/1: no model missing in the catalog.',
    'ROUTING_FILE /fallbacks/gpt-4o-mini/3: qwen-plus is already in the chain.'
  ])
})

t.test('the app does not start on a broken routing file', async (t) => {
  await t.rejects(build(t, { env: { ROUTING_FILE: file('r-empty.json', {}) } }), ConfigError)
})

t.test('the local classifier picks a task class from the message alone', async (t) => {
  t.equal(classifyTask('Can you summarize this chapter in key points?'), 'summary')
  t.equal(classifyTask('Why does this bug crash my TypeScript function? ```const x = () => {}```'), 'code')
  t.equal(classifyTask('Write a short poem about the sea'), 'creative')
  t.equal(classifyTask('Solve step by step: what is the probability of two sixes?'), 'reasoning')
  t.equal(classifyTask('Hello, how are you today?'), 'general')
})

/** The live providers of the named vendors, the real SDK clients, against msw. */
function models (vendors: VendorId[], breaker = { failures: 2, cooldownMs: 200 }) {
  const env: Record<string, string> = {}
  for (const v of vendors) env[`${v.toUpperCase()}_API_KEY`] = `key-${v}`
  const logs = new LogCapture()
  const log = pino({ level: 'debug' }, logs)
  const m = createModels({ models: catalog, routing: defaultRouting, providers: vendorProviders(testConfig(env), log), sandbox: createSandboxModels(), breaker, log })
  t.teardown(() => m.close())
  return { m, logs }
}

const callFor = (signal = new AbortController().signal) => (entry: ModelEntry): ChatCall => ({
  messages: [{ role: 'user', content: 'hi' }], tools: [], model: entry.upstreamModel, user: 'hash', maxOutputTokens: 50, signal
})
/** Every vendor failure before a first byte the models report, as `model:code`. */
const failures: string[] = []
const observe = async (entry: ModelEntry, code: string) => { failures.push(`${entry.id}:${code}`) }
const url = (v: VendorId) => `${VENDORS[v].defaultBaseUrl}/chat/completions`

t.test('routing: an explicit model is checked against the plan and the keys; otherwise the task class picks one', async (t) => {
  const { m } = models(['openai', 'qwen'])
  t.throws(() => m.route({ plan: 'free', mode: 'live', model: 'claude-sonnet-4-5', text: 'x' }), { code: 'NOT_ENTITLED', details: { model: 'claude-sonnet-4-5' } })
  t.throws(() => m.route({ plan: 'free', mode: 'live', model: 'nope', text: 'x' }), { code: 'VALIDATION_ERROR' })
  t.throws(() => models(['anthropic']).m.route({ plan: 'free', mode: 'live', model: 'grok-3-mini', text: 'x' }), { code: 'PROVIDER_NOT_CONFIGURED' }, 'no xAI key and no configured fallback')
  const routed = m.route({ plan: 'free', mode: 'live', text: 'Please summarize this' })
  t.match(routed, { task: 'summary', model: { id: 'gpt-4o-mini' } })
  t.same(routed.chain.map((x) => x.id), ['gpt-4o-mini', 'qwen-plus'], 'fallbacks without a key are left out')
  const viaFallback = m.route({ plan: 'free', mode: 'live', model: 'claude-haiku-4-5', text: 'x' })
  t.same(viaFallback.chain.map((x) => x.id), ['gpt-4o-mini', 'qwen-plus'], 'a model without its vendor key is served by its fallbacks')
  t.same(m.route({ plan: 'pro', mode: 'test', model: 'grok-4', text: 'x' }).chain.map((x) => x.id)[0], 'grok-4', 'test mode needs no key')
  t.match(m.list('free', 'live').find((x) => x.id === 'gpt-4.1'), { accessible: false, reason: 'premium' })
  t.match(m.list('free', 'live').find((x) => x.id === 'grok-3-mini'), { accessible: false, reason: 'vendor-not-configured' })
  t.match(m.list('free', 'test').find((x) => x.id === 'grok-3-mini'), { accessible: true })
  t.notOk('reason' in (m.list('free', 'live').find((x) => x.id === 'gpt-4o-mini') as object))
})

t.test('fallback before the first byte: a failing vendor hands the call to the next model of the chain', async (t) => {
  const { seen } = interceptNetwork(t,
    http.post(url('openai'), () => openaiError(500, 'down')),
    http.post(ANTHROPIC_URL, () => anthropicStream(anthropicEvents(['From Claude'])))
  )
  const { m, logs } = models(['openai', 'anthropic'])
  const route = m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  failures.length = 0
  const opened = await m.stream(route, 'live', callFor(), observe)
  t.same(failures, ['gpt-4o-mini:PROVIDER_ERROR'], 'the failure is reported, then the fallback serves')
  t.equal(opened.model.id, 'claude-haiku-4-5')
  t.equal(opened.provider.name, 'anthropic')
  t.equal(opened.call.model, 'claude-haiku-4-5', 'the call made for the model that served')
  t.match(opened.first, { value: { type: 'delta', text: 'From Claude' } })
  t.equal(seen.filter((r) => r.url.includes('openai')).length, 3, 'the first vendor had its retries')
  t.match(logs.find('model call failed before its first byte'), [{ vendor: 'openai', model: 'gpt-4o-mini', code: 'PROVIDER_ERROR', fallback: 'claude-haiku-4-5' }])
})

t.test('the breaker opens after repeated failures, skips the vendor, and closes after the cooldown', async (t) => {
  let openaiDown = true
  const { seen } = interceptNetwork(t,
    http.post(url('openai'), () => openaiDown ? HttpResponse.error() : HttpResponse.json(completion('back'))),
    http.post(url('qwen'), () => HttpResponse.json(completion('from qwen')))
  )
  const { m } = models(['openai', 'qwen'], { failures: 2, cooldownMs: 300 })
  const route = () => m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  for (let i = 0; i < 2; i++) t.equal((await m.complete(route(), 'live', callFor(), observe)).model.id, 'qwen-plus')
  t.equal(m.health().openai?.breaker, 'open')
  t.match(m.list('free', 'live').find((x) => x.id === 'gpt-4o-mini'), { accessible: false, reason: 'vendor-unavailable' })
  const calls = seen.length
  const served = await m.complete(route(), 'live', callFor(), observe)
  t.equal(served.model.id, 'qwen-plus')
  t.equal(seen.length, calls + 1, 'the open vendor is not called')
  t.same(route().chain.map((x) => x.id), ['qwen-plus'], 'an open vendor leaves the chain')
  openaiDown = false
  await new Promise((resolve) => setTimeout(resolve, 350))
  t.equal(m.health().openai?.breaker, 'half-open')
  t.equal((await m.complete(route(), 'live', callFor(), observe)).model.id, 'gpt-4o-mini', 'one call tries it again and it serves')
  t.equal(m.health().openai?.breaker, 'closed')
})

t.test('a no-credit answer takes the vendor out at once for the cooldown; with no vendor left the client gets 503', async (t) => {
  interceptNetwork(t,
    http.post(url('openai'), () => HttpResponse.json({ error: { message: 'You exceeded your current quota', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }, { status: 429 })),
    http.post(url('deepseek'), () => HttpResponse.json({ error: { message: 'Insufficient Balance', type: 'unknown_error', param: null, code: 'invalid_request_error' } }, { status: 402 }))
  )
  const { m, logs } = models(['openai', 'deepseek'], { failures: 5, cooldownMs: 60_000 })
  const route = m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  t.same(route.chain.map((x) => x.id), ['gpt-4o-mini', 'deepseek-chat'])
  await t.rejects(m.stream(route, 'live', callFor(), observe), { code: 'PROVIDER_UNAVAILABLE', refusal: 'no-credit' })
  t.same(m.health().openai, { configured: true, breaker: 'open' }, 'one refusal is enough')
  t.equal(m.health().deepseek?.breaker, 'open')
  t.match(logs.entries.filter((e) => e.level === 50), [{ vendor: 'openai', refusal: 'no-credit' }, { vendor: 'deepseek', refusal: 'no-credit' }])
  const err = await m.complete(m.route({ plan: 'free', mode: 'live', model: 'deepseek-chat', text: 'x' }), 'live', callFor(), observe).catch((e: unknown) => e)
  t.match(err, { code: 'PROVIDER_UNAVAILABLE', message: /No model vendor can serve/, headers: { 'retry-after': '60' } })
})

t.test('a client that leaves ends the chain: no fallback, nothing counted against the vendor', async (t) => {
  const controller = new AbortController()
  interceptNetwork(t,
    http.post(url('openai'), async () => { controller.abort(); await new Promise((resolve) => setTimeout(resolve, 50)); return HttpResponse.json(completion('late')) }),
    http.post(url('qwen'), () => { throw new Error('must not be called') })
  )
  const { m } = models(['openai', 'qwen'], { failures: 1, cooldownMs: 60_000 })
  await t.rejects(m.complete(m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' }), 'live', callFor(controller.signal), observe), { message: /cancelled/ })
  t.equal(m.health().openai?.breaker, 'closed')
})

t.test('an error that is not a provider\'s is not hidden by a fallback', async (t) => {
  const { m } = models(['openai', 'qwen'])
  const route = m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  await t.rejects(m.complete(route, 'live', () => { throw new TypeError('bug') }, observe), TypeError)

  // A provider failing with something that is not a ProviderError (a fault of ours): thrown as it is, no fallback.
  const broken = { name: 'openai', model: '', stream: async function * () { yield * [] }, complete: async () => { throw new RangeError('fault') } }
  const qwen = { ...broken, name: 'qwen', complete: async () => { throw new Error('never reached') } }
  const direct = createModels({ models: catalog, routing: defaultRouting, providers: { openai: broken, qwen }, sandbox: createSandboxModels(), breaker: { failures: 5, cooldownMs: 1000 }, log: pino({ level: 'silent' }) })
  t.teardown(() => direct.close())
  await t.rejects(direct.complete(direct.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' }), 'live', callFor(), observe), RangeError)
})

t.test('the sandbox models stop when their caller has left', async (t) => {
  const controller = new AbortController()
  controller.abort()
  await t.rejects(createSandboxModels().complete(callFor(controller.signal)(model('gpt-4o-mini'))), { message: /cancelled/ })
})

t.test('test mode: the sandbox serves every model and says which one it stands for', async (t) => {
  const { m } = models([])
  const done = await m.complete(m.route({ plan: 'pro', mode: 'test', model: 'grok-4', text: 'x' }), 'test', callFor(), observe)
  t.equal(done.provider.name, 'sandbox')
  t.match(done.result.text, /standing in for grok-4/)
  const opened = await m.stream(m.route({ plan: 'free', mode: 'test', text: 'hello there' }), 'test', callFor(), observe)
  t.equal(opened.model.id, 'gpt-4o-mini')
  t.match(opened.first, { value: { type: 'delta' } })
})

t.test('GET /v1/ai/models: the catalog for the caller\'s plan; readiness shows the vendors and their breakers', async (t) => {
  const { app } = await build(t, { env: { OPENAI_API_KEY: 'sk-x', ANTHROPIC_API_KEY: 'sk-ant-x' } })
  const free = await userWithKey(app, { plan: 'free', mode: 'live' })
  const res = await app.inject({ url: '/v1/ai/models', headers: { authorization: `Bearer ${(await mint(app, free.key)).token}` } })
  t.equal(res.statusCode, 200)
  const body = res.json() as { data: Array<{ id: string, accessible: boolean, reason?: string }>, routing: { premium: boolean, routes: Record<string, string> } }
  t.match(body.data.find((x) => x.id === 'gpt-4o-mini'), { accessible: true, inputCostPer1M: 0.15 })
  t.match(body.data.find((x) => x.id === 'claude-sonnet-4-5'), { accessible: false, reason: 'premium' })
  t.match(body.data.find((x) => x.id === 'deepseek-chat'), { accessible: false, reason: 'vendor-not-configured' })
  t.same(body.routing, { premium: false, routes: defaultRouting.default.routes })
  t.notOk(res.body.includes('upstreamModel'), 'vendor model names are not part of the answer')
  const pro = await userWithKey(app, { plan: 'pro', mode: 'test' })
  const proBody = (await app.inject({ url: '/v1/ai/models', headers: { authorization: `Bearer ${(await mint(app, pro.key)).token}` } })).json() as typeof body
  t.ok(proBody.data.every((x) => x.accessible), 'test mode, premium plan: everything')
  t.equal(proBody.routing.premium, true)
  t.equal((await app.inject({ url: '/v1/ai/models' })).statusCode, 401)
  const ready = (await app.inject({ url: '/health/ready' })).json() as { checks: Record<string, { vendors?: Record<string, unknown> }> }
  t.same(ready.checks.models?.vendors?.anthropic, { configured: true, breaker: 'closed' })
  t.same(ready.checks.models?.vendors?.xai, { configured: false, breaker: 'closed' })
})

t.test('a call that fails after the first byte is the caller\'s to end: the stream goes on from the vendor that served', async (t) => {
  interceptNetwork(t, http.post(ANTHROPIC_URL, () => anthropicStream(anthropicEvents(['a', 'b']), { cutAfter: 5 })), http.post(url('openai'), () => sseResponse(streamChunks(['x']))))
  const { m } = models(['anthropic', 'openai'])
  const opened = await m.stream(m.route({ plan: 'free', mode: 'live', model: 'claude-haiku-4-5', text: 'x' }), 'live', callFor(), observe)
  const rest: unknown[] = []
  await t.rejects((async () => { for (let n = await opened.events.next(); n.done !== true; n = await opened.events.next()) rest.push(n.value) })(), { code: /PROVIDER_/ })
  t.equal(opened.model.id, 'claude-haiku-4-5', 'no fallback after the first byte')
})

t.test('half-open: one call tries the vendor again, the others wait for it', async (t) => {
  let openaiDown = true
  interceptNetwork(t,
    http.post(url('openai'), async () => {
      if (openaiDown) return HttpResponse.error()
      await new Promise((resolve) => setTimeout(resolve, 200))
      return HttpResponse.json(completion('back'))
    }),
    http.post(url('qwen'), () => HttpResponse.json(completion('from qwen')))
  )
  const { m } = models(['openai', 'qwen'], { failures: 1, cooldownMs: 100 })
  const route = () => m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  t.equal((await m.complete(route(), 'live', callFor(), observe)).model.id, 'qwen-plus')
  openaiDown = false
  await new Promise((resolve) => setTimeout(resolve, 150))
  const trial = m.complete(route(), 'live', callFor(), observe)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(m.health().openai?.breaker, 'half-open', 'the trial call is under way')
  t.equal((await m.complete(route(), 'live', callFor(), observe)).model.id, 'gpt-4o-mini', 'a call meanwhile waits for the trial, then is served by the vendor again')
  t.equal((await trial).model.id, 'gpt-4o-mini')
  t.equal(m.health().openai?.breaker, 'closed')
})

t.test('two calls refused at once take the vendor out once; a model without a fallback chain has only itself', async (t) => {
  interceptNetwork(t, http.post(url('openai'), () => HttpResponse.json({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, { status: 401 })))
  const env = { OPENAI_API_KEY: 'key-openai' }
  const log = pino({ level: 'silent' })
  const m = createModels({ models: catalog, routing: { ...defaultRouting, fallbacks: {} }, providers: vendorProviders(testConfig(env), log), sandbox: createSandboxModels(), breaker: { failures: 5, cooldownMs: 60_000 }, log })
  t.teardown(() => m.close())
  const route = m.route({ plan: 'free', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  t.same(route.chain.map((x) => x.id), ['gpt-4o-mini'])
  const results = await Promise.allSettled([m.complete(route, 'live', callFor(), observe), m.complete(route, 'live', callFor(), observe)])
  t.same(results.map((r) => r.status), ['rejected', 'rejected'])
  t.equal(m.health().openai?.breaker, 'open')
})

t.test('the catalog\'s sandbox stops when its caller leaves', async (t) => {
  const sandbox = createSandboxModels()
  const controller = new AbortController()
  controller.abort()
  const aborted: ChatCall = { messages: [{ role: 'user', content: 'hi' }], tools: [], user: 'h', maxOutputTokens: 10, signal: controller.signal }
  await t.rejects(sandbox.complete(aborted), { message: /cancelled/ })
  await t.rejects(sandbox.stream(aborted).next(), { message: /cancelled/ })
  t.match((await sandbox.complete({ ...aborted, signal: new AbortController().signal })).text, /standing in for the routed model/)
})

t.test('a vendor whose breaker opens during a call is skipped for the rest of its chain', async (t) => {
  const { seen } = interceptNetwork(t, http.post(url('openai'), () => HttpResponse.error()), http.post(url('qwen'), () => HttpResponse.json(completion('from qwen'))))
  const log = pino({ level: 'silent' })
  const routing = { ...defaultRouting, fallbacks: { 'gpt-4o-mini': ['gpt-4.1', 'qwen-plus'] } }
  const m = createModels({ models: catalog, routing, providers: vendorProviders(testConfig({ OPENAI_API_KEY: 'k', QWEN_API_KEY: 'k' }), log), sandbox: createSandboxModels(), breaker: { failures: 1, cooldownMs: 60_000 }, log })
  t.teardown(() => m.close())
  const route = m.route({ plan: 'pro', mode: 'live', model: 'gpt-4o-mini', text: 'x' })
  t.same(route.chain.map((x) => x.id), ['gpt-4o-mini', 'gpt-4.1', 'qwen-plus'])
  t.equal((await m.complete(route, 'live', callFor(), observe)).model.id, 'qwen-plus')
  t.equal(seen.filter((r) => r.url.includes('openai')).length, 3, 'gpt-4.1 was not tried: its vendor had just been taken out')
})
