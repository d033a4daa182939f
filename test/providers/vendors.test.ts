import { http, HttpResponse } from 'msw'
import pino from 'pino'
import t from 'tap'
import type { ChatCall } from '../../providers/chat.js'
import { createOpenAIChat } from '../../providers/openai-chat.js'
import { VENDORS, vendorError, vendorRefusal } from '../../providers/vendors.js'
import type { VendorId } from '../../schemas/models.js'
import { LogCapture } from '../helper.js'
import { interceptNetwork } from '../network.js'
import { completion, sseResponse, streamChunks } from '../openai-fake.js'

const fastRetry = { attempts: 2, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 50 }
const urlOf = (vendor: VendorId) => `${VENDORS[vendor].defaultBaseUrl}/chat/completions`

function provider (vendor: VendorId) {
  const logs = new LogCapture()
  const chat = createOpenAIChat({ vendor, apiKey: `key-of-${vendor}`, baseURL: VENDORS[vendor].defaultBaseUrl, model: 'default-model', timeoutMs: 5000, retry: fastRetry, log: pino({ level: 'debug' }, logs) })
  return { chat, logs }
}

const call = (model: string): ChatCall => ({
  messages: [{ role: 'user', content: 'hello' }],
  tools: [],
  model,
  user: 'hash-of-user',
  maxOutputTokens: 64,
  signal: new AbortController().signal
})

t.test('compatible vendors get the Chat Completions body without OpenAI-only fields; xAI alone gets the user hash', async (t) => {
  const { seen } = interceptNetwork(t, ...(['qwen', 'deepseek', 'xai', 'gemini'] as const).map((v) =>
    http.post(urlOf(v), () => HttpResponse.json(completion(`from ${v}`, [], { prompt_tokens: 12, completion_tokens: 3 })))))
  for (const vendor of ['qwen', 'deepseek', 'xai', 'gemini'] as const) {
    const { chat } = provider(vendor)
    t.equal(chat.name, vendor)
    t.same(await chat.complete(call(`${vendor}-model`)), { text: `from ${vendor}`, toolArguments: [], toolCalls: [], finishReason: 'stop', usage: { inputTokens: 12, outputTokens: 3 } })
  }
  const bodies = await Promise.all(seen.map(async (r) => r.json() as Promise<Record<string, unknown>>))
  for (const [i, vendor] of (['qwen', 'deepseek', 'xai', 'gemini'] as const).entries()) {
    const body = bodies[i] as Record<string, unknown>
    t.equal(body.model, `${vendor}-model`)
    t.equal(body.max_tokens, 64)
    t.notOk('store' in body || 'safety_identifier' in body || 'max_completion_tokens' in body || 'tools' in body, `${vendor}: no OpenAI-only fields, no empty tools`)
    t.equal(body.user, vendor === 'xai' ? 'hash-of-user' : undefined, `${vendor}: user field`)
    t.equal(seen[i]?.headers.get('authorization'), `Bearer key-of-${vendor}`)
  }
})

t.test('a compatible vendor streams with the usage on its last chunk', async (t) => {
  interceptNetwork(t, http.post(urlOf('deepseek'), () => sseResponse(streamChunks(['Hi', ' there'], [], { prompt_tokens: 20, completion_tokens: 2 }))))
  const { chat } = provider('deepseek')
  const events: unknown[] = []
  for await (const e of chat.stream(call('deepseek-chat'))) events.push(e)
  t.same(events, [{ type: 'delta', text: 'Hi' }, { type: 'delta', text: ' there' }, { type: 'end', finishReason: 'stop', usage: { inputTokens: 20, outputTokens: 2 } }])
})

/** Each vendor's documented no-credit or refused-key answer, as its API sends it. */
const refusals: Array<{ vendor: VendorId, status: number, body: unknown, refusal: 'no-credit' | 'key-refused' }> = [
  { vendor: 'openai', status: 429, body: { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }, refusal: 'no-credit' },
  { vendor: 'openai', status: 401, body: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, refusal: 'key-refused' },
  { vendor: 'deepseek', status: 402, body: { error: { message: 'Insufficient Balance', type: 'unknown_error', param: null, code: 'invalid_request_error' } }, refusal: 'no-credit' },
  { vendor: 'deepseek', status: 401, body: { error: { message: 'Authentication Fails, Your api key is invalid', type: 'authentication_error', param: null, code: 'invalid_request_error' } }, refusal: 'key-refused' },
  { vendor: 'qwen', status: 400, body: { error: { code: 'Arrearage', param: null, message: 'Access denied, please make sure your account is in good standing.', type: 'Arrearage' } }, refusal: 'no-credit' },
  { vendor: 'qwen', status: 401, body: { error: { code: 'invalid_api_key', param: null, message: 'Incorrect API key provided.', type: 'invalid_request_error' } }, refusal: 'key-refused' },
  { vendor: 'xai', status: 400, body: { code: 'Client specified an invalid argument', error: 'Incorrect API key provided: xa***. You can obtain an API key from https://console.x.ai.' }, refusal: 'key-refused' },
  { vendor: 'xai', status: 403, body: { code: 'The caller does not have permission to execute the specified operation', error: 'Your newly created team doesn\'t have any credits yet.' }, refusal: 'no-credit' },
  { vendor: 'gemini', status: 400, body: [{ error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT' } }], refusal: 'key-refused' },
  { vendor: 'gemini', status: 400, body: [{ error: { code: 400, message: 'Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.', status: 'FAILED_PRECONDITION' } }], refusal: 'no-credit' },
  { vendor: 'gemini', status: 403, body: [{ error: { code: 403, message: 'Permission denied on resource project.', status: 'PERMISSION_DENIED' } }], refusal: 'key-refused' }
]

t.test('every vendor\'s documented no-credit and refused-key answers are final, logged at error level, never retried', async (t) => {
  let current = refusals[0] as (typeof refusals)[number]
  const { seen } = interceptNetwork(t, ...(['openai', 'qwen', 'deepseek', 'xai', 'gemini'] as const).map((v) =>
    http.post(urlOf(v), () => HttpResponse.json(current.body as never, { status: current.status }))))
  for (const case_ of refusals) {
    current = case_
    const before = seen.length
    const { chat, logs } = provider(case_.vendor)
    await t.rejects(chat.complete(call('m')), { code: 'PROVIDER_UNAVAILABLE', refusal: case_.refusal }, `${case_.vendor} ${case_.status}`)
    t.equal(seen.length, before + 1, 'not retried')
    t.match(logs.entries.filter((e) => e.level === 50), [{ vendor: case_.vendor, status: case_.status, refusal: case_.refusal }])
    t.notOk(/credit|api key not valid|balance|quota|standing/i.test(logs.entries.map((e) => e.status).join()), 'no vendor message in the log fields')
    t.notOk(logs.text.includes(`key-of-${case_.vendor}`), 'the key is not logged')
  }
})

t.test('ordinary answers are not refusals: rate limits, bad requests, overloads', async (t) => {
  t.equal(vendorRefusal('openai', { status: 429, code: 'rate_limit_exceeded', message: 'Rate limit reached' }), null)
  t.equal(vendorRefusal('xai', { status: 429, message: 'Too many requests' }), null)
  t.equal(vendorRefusal('xai', { status: 429, message: 'Your team has used all available credits or reached its monthly spending limit' }), 'no-credit')
  t.equal(vendorRefusal('anthropic', { status: 400, type: 'invalid_request_error', message: 'max_tokens: field required' }), null)
  t.equal(vendorRefusal('anthropic', { status: 400, type: 'billing_error', message: 'x' }), 'no-credit')
  t.equal(vendorRefusal('qwen', { status: 400, code: 'InvalidParameter', message: 'Range of input length should be [1, 30720]' }), null)
  t.equal(vendorRefusal('gemini', { status: 400, message: 'Invalid JSON payload' }), null)
  t.equal(vendorRefusal('deepseek', { status: 400, message: 'Invalid Format' }), null)
  t.equal(vendorRefusal('deepseek', { status: 503, message: 'Server Overloaded' }), null)
})

t.test('vendorError maps stops and transport failures', async (t) => {
  const log = pino({ level: 'silent' })
  t.match(vendorError('qwen', { kind: 'stopped', reason: 'deadline' }, log), { code: 'PROVIDER_TIMEOUT', message: /did not finish/ })
  t.match(vendorError('qwen', { kind: 'timeout' }, log), { code: 'PROVIDER_TIMEOUT' })
  t.match(vendorError('qwen', { kind: 'http', answer: { status: 409, message: 'x' } }, log), { code: 'PROVIDER_ERROR', retry: { retry: true } })
})
