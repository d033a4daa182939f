import { http } from 'msw'
import pino from 'pino'
import t from 'tap'
import { anthropicRequest, createAnthropicChat, mapAnthropicError, toAnthropicFinish } from '../../providers/anthropic-chat.js'
import type { ChatCall } from '../../providers/chat.js'
import { ProviderError } from '../../providers/provider-error.js'
import { anthropicError, anthropicEvents, anthropicMessage, anthropicStream, ANTHROPIC_URL } from '../anthropic-fake.js'
import { LogCapture } from '../helper.js'
import { interceptNetwork } from '../network.js'

const fastRetry = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 50 }
const tool = { name: 'create_task', description: 'd', parameters: { type: 'object', properties: { title: { type: 'string' } } } }

function chat (opts: { timeoutMs?: number, firstByteTimeoutMs?: number } = {}) {
  const logs = new LogCapture()
  const provider = createAnthropicChat({
    apiKey: 'sk-ant-unit',
    baseURL: 'https://api.anthropic.com',
    model: 'claude-haiku-4-5',
    timeoutMs: opts.timeoutMs ?? 5000,
    firstByteTimeoutMs: opts.firstByteTimeoutMs,
    retry: fastRetry,
    log: pino({ level: 'debug' }, logs)
  })
  return { provider, logs }
}

const call = (overrides: Partial<ChatCall> = {}): ChatCall => ({
  messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }],
  tools: [],
  user: 'hash-of-user',
  maxOutputTokens: 100,
  signal: new AbortController().signal,
  ...overrides
})

async function drain (iterable: AsyncIterable<unknown>) {
  const out: unknown[] = []
  for await (const e of iterable) out.push(e)
  return out
}

t.test('the request: Messages API fields, system apart, the keyed user hash as metadata.user_id, the SDK headers', async (t) => {
  const { seen } = interceptNetwork(t, http.post(ANTHROPIC_URL, () => Response.json(anthropicMessage('Hello there'))))
  const { provider } = chat()
  const result = await provider.complete(call({ model: 'claude-sonnet-4-5', tools: [tool] }))
  t.same(result, { text: 'Hello there', toolArguments: [], toolCalls: [], finishReason: 'stop', usage: { inputTokens: 320, outputTokens: 25 } })
  const sent = await seen[0]?.json() as Record<string, unknown>
  t.same(sent, {
    model: 'claude-sonnet-4-5',
    max_tokens: 100,
    stream: false,
    system: 'Be brief.',
    messages: [{ role: 'user', content: 'hi' }],
    tools: [{ name: 'create_task', description: 'd', input_schema: tool.parameters }],
    metadata: { user_id: 'hash-of-user' }
  })
  t.equal(seen[0]?.headers.get('authorization'), 'Bearer sk-ant-unit', 'the key, as this SDK version sends it')
  t.ok(seen[0]?.headers.get('anthropic-version'), 'the API version header is sent')
})

t.test('turns are made to alternate, starting with the user; no system text → no system field', async (t) => {
  const request = anthropicRequest(call({
    messages: [{ role: 'assistant', content: 'Earlier answer' }, { role: 'user', content: 'a' }, { role: 'user', content: 'b' }]
  }), 'claude-haiku-4-5')
  t.same(request.messages, [
    { role: 'user', content: '(conversation continues)' },
    { role: 'assistant', content: 'Earlier answer' },
    { role: 'user', content: 'a\n\nb' }
  ])
  t.notOk('system' in request)
  t.equal(request.model, 'claude-haiku-4-5', 'the provider\'s model when the call names none')
})

t.test('tool rounds as tool_use and tool_result blocks; tool_choice, temperature and stop in the Messages API\'s words', async (t) => {
  const request = anthropicRequest(call({
    messages: [
      { role: 'user', content: 'Plan my day' },
      { role: 'assistant', content: '', toolCalls: [{ id: 'toolu_a', name: 'list_events', arguments: '' }, { id: 'toolu_b', name: 'create_task', arguments: '{"title":"x"}' }] },
      { role: 'tool', toolCallId: 'toolu_a', content: '[]' },
      { role: 'tool', toolCallId: 'toolu_b', content: 'done' }
    ],
    tools: [tool],
    toolChoice: 'none',
    temperature: 0.2,
    stop: ['END']
  }), 'claude-haiku-4-5')
  t.same(request.messages, [
    { role: 'user', content: 'Plan my day' },
    { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_a', name: 'list_events', input: {} }, { type: 'tool_use', id: 'toolu_b', name: 'create_task', input: { title: 'x' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_a', content: '[]' }, { type: 'tool_result', tool_use_id: 'toolu_b', content: 'done' }] }
  ], 'no empty text block; the answers of one round in one user turn')
  t.match(request, { tool_choice: { type: 'none' }, temperature: 0.2, stop_sequences: ['END'] })
  t.same(anthropicRequest(call({ tools: [tool], toolChoice: 'auto' }), 'm').tool_choice, { type: 'auto' })
  t.same(anthropicRequest(call({ tools: [tool], toolChoice: { name: 'create_task' } }), 'm').tool_choice, { type: 'tool', name: 'create_task' })
  t.notOk('tool_choice' in anthropicRequest(call({ tools: [tool] }), 'm'), 'no choice: the vendor\'s default')
  t.notOk('tool_choice' in anthropicRequest(call({ toolChoice: 'required' }), 'm'), 'no tools: no choice either')
})

t.test('a streamed reply: text deltas, a tool call assembled from its JSON pieces, cumulative usage, stop reason', async (t) => {
  interceptNetwork(t, http.post(ANTHROPIC_URL, () => anthropicStream(anthropicEvents(['Hel', 'lo'], { tool: { name: 'create_task', input: { title: 'Call Ana' } }, usage: { input: 410, output: 37 } }))))
  const { provider } = chat()
  const events = await drain(provider.stream(call({ tools: [tool] })))
  t.same(events, [
    { type: 'delta', text: 'Hel' },
    { type: 'delta', text: 'lo' },
    { type: 'tool', id: 'toolu_01', name: 'create_task', arguments: '{"title":"Call Ana"}' },
    { type: 'end', finishReason: 'stop', usage: { inputTokens: 410, outputTokens: 37 } }
  ])
})

t.test('stop reasons in the contract\'s words; a whole reply with a tool call', async (t) => {
  t.equal(toAnthropicFinish('max_tokens'), 'length')
  t.equal(toAnthropicFinish('model_context_window_exceeded'), 'length')
  t.equal(toAnthropicFinish('refusal'), 'content_filter')
  t.equal(toAnthropicFinish('tool_use'), 'stop')
  t.equal(toAnthropicFinish(null), 'stop')
  let mode = 'tool'
  interceptNetwork(t, http.post(ANTHROPIC_URL, () => {
    if (mode === 'tool') return Response.json(anthropicMessage('', { tool: { name: 'create_task', input: { title: 'x' } }, stopReason: 'max_tokens' }))
    if (mode === 'empty-tool') return anthropicStream(anthropicEvents([], { tool: { name: 'create_task', input: {} } }).map((e) => e.type === 'content_block_delta' ? { ...e, delta: { type: 'input_json_delta', partial_json: '' } } : e))
    if (mode === 'no-content') return Response.json({ id: 'msg_1', type: 'message', role: 'assistant' })
    return new Response('<html>bad gateway</html>', { headers: { 'content-type': 'application/json' } })
  }))
  const { provider } = chat()
  t.match(await provider.complete(call()), { text: '', toolArguments: ['{"title":"x"}'], toolCalls: [{ id: 'toolu_01', name: 'create_task', arguments: '{"title":"x"}' }], finishReason: 'length' })
  mode = 'empty-tool'
  const events = await drain(provider.stream(call())) as Array<{ type: string, arguments?: string }>
  t.equal(events.find((e) => e.type === 'tool')?.arguments, '{}', 'a tool call without arguments is an empty object')
  mode = 'garbage'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /cannot be read/ })
  mode = 'no-content'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /cannot be read/ }, 'JSON that is not a message')
})

t.test('529 overloaded and 500 are retried; 429 passes Retry-After on', async (t) => {
  let status = 529
  const { seen } = interceptNetwork(t, http.post(ANTHROPIC_URL, () => status === 429
    ? anthropicError(429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit', { 'retry-after': '40' })
    : anthropicError(status, status === 529 ? 'overloaded_error' : 'api_error', 'Overloaded')))
  const { provider } = chat()
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /HTTP 529/ })
  t.equal(seen.length, 3, 'three attempts')
  status = 429
  const err = await provider.complete(call()).catch((e: unknown) => e)
  t.match(err, { code: 'PROVIDER_UNAVAILABLE', headers: { 'retry-after': '40' } })
  t.equal(seen.length, 4, 'a Retry-After beyond the policy is not waited for')
})

t.test('no-credit and refused-key answers are final, logged at error level naming the vendor, never with its message', async (t) => {
  let answer = () => anthropicError(400, 'invalid_request_error', 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.')
  const { seen } = interceptNetwork(t, http.post(ANTHROPIC_URL, () => answer()))
  const { provider, logs } = chat()
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_UNAVAILABLE', refusal: 'no-credit' })
  answer = () => anthropicError(402, 'billing_error', 'Payment required')
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_UNAVAILABLE', refusal: 'no-credit' })
  answer = () => anthropicError(401, 'authentication_error', 'invalid x-api-key')
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_UNAVAILABLE', refusal: 'key-refused' })
  t.equal(seen.length, 3, 'one call each, never retried')
  t.match(logs.entries.filter((e) => e.level === 50), [
    { vendor: 'anthropic', refusal: 'no-credit', msg: /Anthropic.*out of credit/ },
    { vendor: 'anthropic', refusal: 'no-credit' },
    { vendor: 'anthropic', refusal: 'key-refused', msg: /ANTHROPIC_API_KEY/ }
  ])
  t.notOk(/credit balance|x-api-key|sk-ant-unit/.test(logs.text), 'neither the vendor\'s message nor the key is logged')
  answer = () => anthropicError(404, 'not_found_error', 'model: claude-nope')
  await t.rejects(provider.complete(call({ model: 'claude-nope' })), { code: 'PROVIDER_ERROR', message: /HTTP 404/ })
  t.match(logs.entries.at(-1), { level: 50, vendor: 'anthropic', model: 'claude-nope' })
})

t.test('an error event in the middle of a stream, a cut stream, a stream without its end, a stall', async (t) => {
  let mode = 'error-event'
  interceptNetwork(t, http.post(ANTHROPIC_URL, () => {
    const events = anthropicEvents(['one ', 'two'])
    if (mode === 'error-event') return anthropicStream([...events.slice(0, 4), { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } as never])
    if (mode === 'api-error-event') return anthropicStream([...events.slice(0, 4), { type: 'error', error: { type: 'api_error', message: 'Internal' } } as never])
    if (mode === 'cut') return anthropicStream(events, { cutAfter: 4 })
    if (mode === 'no-end') return anthropicStream(events.filter((e) => e.type !== 'message_delta'))
    if (mode === 'no-start') return anthropicStream(events.filter((e) => e.type !== 'message_start'))
    return anthropicStream(events, { stallAfter: 4 })
  }))
  const { provider } = chat({ timeoutMs: 5000, firstByteTimeoutMs: 150 })
  const seenDeltas: unknown[] = []
  const read = async () => { for await (const e of provider.stream(call())) seenDeltas.push(e) }
  await t.rejects(read(), { code: 'PROVIDER_ERROR', message: /HTTP 529/ })
  t.match(seenDeltas, [{ type: 'delta', text: 'one ' }], 'what came before the error event was delivered')
  mode = 'api-error-event'
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_ERROR', message: /HTTP 500/ })
  mode = 'cut'
  await t.rejects(drain(provider.stream(call())), { code: /PROVIDER_/ })
  mode = 'no-end'
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_ERROR', message: /before the reply was complete/ })
  mode = 'no-start'
  t.match((await drain(provider.stream(call()))).at(-1), { type: 'end', usage: null }, 'no message_start: no counts (the caller estimates)')
  mode = 'stall'
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_TIMEOUT', message: /sent nothing/ })
})

t.test('connection failures, timeouts and a stop by the caller', async (t) => {
  let mode = 'network'
  interceptNetwork(t, http.post(ANTHROPIC_URL, async () => {
    if (mode === 'network') return Response.error()
    await new Promise((resolve) => setTimeout(resolve, 2000))
    return Response.json(anthropicMessage('late'))
  }))
  const { provider } = chat({ timeoutMs: 300 })
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_UNAVAILABLE', message: /cannot be reached/ })
  mode = 'slow'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_TIMEOUT' })
  const controller = new AbortController()
  controller.abort()
  await t.rejects(provider.complete(call({ signal: controller.signal })), { code: 'PROVIDER_ERROR', message: /cancelled/ })
  await t.rejects(drain(provider.stream(call({ signal: controller.signal }))), { code: 'PROVIDER_ERROR', message: /cancelled/ })
})

t.test('mapAnthropicError keeps a ProviderError and reads anything else as unreadable', async (t) => {
  const log = pino({ level: 'silent' })
  const err = new ProviderError('PROVIDER_TIMEOUT', 'x')
  t.equal(mapAnthropicError(err, null, log), err)
  t.match(mapAnthropicError(new Error('odd'), null, log), { code: 'PROVIDER_ERROR', message: /cannot be read/ })
})

t.test('a call read whole is not aborted upstream; a stream its reader leaves early is', async (t) => {
  const signals: AbortSignal[] = []
  let stream = true
  interceptNetwork(t, http.post(ANTHROPIC_URL, ({ request }) => {
    signals.push(request.signal)
    return stream ? anthropicStream(anthropicEvents(['a', 'b', 'c'])) : Response.json(anthropicMessage('whole'))
  }))
  const { provider } = chat()
  t.match(await drain(provider.stream(call())), [{ type: 'delta', text: 'a' }, { type: 'delta', text: 'b' }, { type: 'delta', text: 'c' }, { type: 'end' }])
  t.equal(signals[0]?.aborted, false, 'a stream read to its end (the SDK keeps its request apart from our controller once answered)')
  const left = provider.stream(call())
  t.match((await left.next()).value, { type: 'delta', text: 'a' })
  await left.return(undefined)
  t.equal(signals[1]?.aborted, true, 'left after the first delta: the request is aborted')
  stream = false
  t.match(await provider.complete(call()), { text: 'whole' })
  t.equal(signals[2]?.aborted, false, 'an answer read whole')
})
