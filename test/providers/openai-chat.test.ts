import { http, HttpResponse } from 'msw'
import pino from 'pino'
import t from 'tap'
import type { ChatCall } from '../../providers/chat.js'
import { APIError } from 'openai'
import { createOpenAIChat, mapOpenAIError, openaiMessage, openaiStatusError } from '../../providers/openai-chat.js'
import { ProviderError } from '../../providers/provider-error.js'
import { LogCapture } from '../helper.js'
import { interceptNetwork } from '../network.js'
import { completion, OPENAI_URL, openaiError, sseResponse, streamChunks } from '../openai-fake.js'

const fastRetry = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 50 }

function chat (opts: { timeoutMs?: number, firstByteTimeoutMs?: number } = {}) {
  const logs = new LogCapture()
  const provider = createOpenAIChat({
    apiKey: 'sk-unit',
    baseURL: 'https://api.openai.com/v1',
    model: 'gpt-4o-mini',
    timeoutMs: opts.timeoutMs ?? 5000,
    firstByteTimeoutMs: opts.firstByteTimeoutMs,
    retry: fastRetry,
    log: pino({ level: 'debug' }, logs)
  })
  return { provider, logs }
}

const call = (signal = new AbortController().signal): ChatCall => ({
  messages: [{ role: 'user', content: 'hi' }],
  tools: [{ name: 'suggest_settings', description: 'd', parameters: { type: 'object' } }],
  user: 'hash',
  maxOutputTokens: 100,
  signal
})

async function drain (iterable: AsyncIterable<unknown>) {
  const out: unknown[] = []
  for await (const e of iterable) out.push(e)
  return out
}

t.test('refusals of the key or the model are logged for the operator and not retried', async (t) => {
  let status = 401
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => openaiError(status, 'Incorrect API key provided: sk-unit')))
  const { provider, logs } = chat()
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_UNAVAILABLE' })
  t.match(logs.entries, [{ level: 50, status: 401, msg: /OPENAI_API_KEY/ }])
  status = 404
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /HTTP 404/ })
  t.match(logs.entries.filter((e) => /does not know the model/.test(String(e.msg))), [{ level: 50, status: 404, vendor: 'openai', model: 'gpt-4o-mini' }])
  status = 400
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /HTTP 400/ })
  t.equal(seen.length, 3, 'one call each')
  t.notOk(logs.text.includes('Incorrect API key'), 'the provider\'s message is not logged')
})

t.test('connection errors, 408 and 429 without Retry-After are retried with backoff', async (t) => {
  let mode = 'network'
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => {
    if (mode === 'network') return HttpResponse.error()
    if (mode === '408') return openaiError(408, 'timeout')
    return openaiError(429, 'slow down')
  }))
  const { provider } = chat()
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_UNAVAILABLE', message: /cannot be reached/ })
  t.equal(seen.length, 3)
  mode = '408'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR' })
  t.equal(seen.length, 6)
  mode = '429'
  const err = await provider.complete(call()).catch((e: unknown) => e)
  t.match(err, { code: 'PROVIDER_UNAVAILABLE', headers: {} })
  t.equal(seen.length, 9)
})

t.test('a Retry-After longer than the policy allows fails at once, passing the delay on', async (t) => {
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => openaiError(429, 'slow down', { 'retry-after': '30' })))
  const { provider } = chat()
  const err = await provider.complete(call()).catch((e: unknown) => e)
  t.match(err, { code: 'PROVIDER_UNAVAILABLE', headers: { 'retry-after': '30' } })
  t.equal(seen.length, 1)
})

t.test('unreadable or empty answers are PROVIDER_ERROR; missing usage is null', async (t) => {
  let mode = 'garbage'
  interceptNetwork(t, http.post(OPENAI_URL, () => {
    if (mode === 'garbage') return new HttpResponse('<html>oops</html>', { headers: { 'content-type': 'application/json' } })
    if (mode === 'empty') return HttpResponse.json({ ...completion('x'), choices: [] })
    if (mode === 'html') return new HttpResponse('<html>502 Bad Gateway</html>', { headers: { 'content-type': 'text/html' } })
    if (mode === 'no-type') return new HttpResponse(null, { status: 200 })
    if (mode === 'no-message') return HttpResponse.json({ ...completion('x'), choices: [{ index: 0, finish_reason: 'stop' }] })
    if (mode === 'tool-only') {
      const body = completion('', [{ settingId: 'display.theme', value: 'dark', reason: 'r' }])
      return HttpResponse.json({ ...body, choices: [{ ...body.choices[0], message: { ...body.choices[0]?.message, content: null } }] })
    }
    const body = completion('Hello')
    const { usage: _usage, ...rest } = body
    const custom = { ...rest.choices[0], message: { ...rest.choices[0]?.message, tool_calls: [{ id: 'c', type: 'custom', custom: { name: 'x', input: 'y' } }] } }
    return HttpResponse.json({ ...rest, choices: [custom] })
  }))
  const { provider } = chat()
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /cannot be read/ })
  mode = 'empty'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /no answer/ })
  mode = 'html'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /cannot be read/ }, 'a 200 with an HTML page from a proxy')
  mode = 'no-type'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /cannot be read/ }, 'an empty 200 without a content type')
  mode = 'no-message'
  await t.rejects(provider.complete(call()), { code: 'PROVIDER_ERROR', message: /no answer/ })
  mode = 'tool-only'
  t.match(await provider.complete(call()), { text: '', toolArguments: [/display\.theme/] })
  mode = 'no-usage'
  t.match(await provider.complete(call()), { text: 'Hello', toolArguments: [], usage: null })
})

t.test('streams: the whole-call deadline, and a stop by the caller', async (t) => {
  interceptNetwork(t, http.post(OPENAI_URL, () => sseResponse(streamChunks(['a', 'b', 'c']), { stallAfter: 2 })))
  const { provider } = chat({ timeoutMs: 400, firstByteTimeoutMs: 10_000 })
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_TIMEOUT', message: /did not finish/ })

  const controller = new AbortController()
  controller.abort()
  await t.rejects(drain(provider.stream(call(controller.signal))), { code: 'PROVIDER_ERROR', message: /cancelled/ })
})

t.test('streams: one read to its end is not aborted upstream; one its reader leaves early is', async (t) => {
  const signals: AbortSignal[] = []
  interceptNetwork(t, http.post(OPENAI_URL, ({ request }) => {
    signals.push(request.signal)
    return sseResponse(streamChunks(['a', 'b', 'c']))
  }))
  const { provider } = chat()
  t.match(await drain(provider.stream(call())), [{ type: 'delta', text: 'a' }, { type: 'delta', text: 'b' }, { type: 'delta', text: 'c' }, { type: 'end' }])
  t.equal(signals[0]?.aborted, false, 'read whole: nothing to abort')
  const left = provider.stream(call())
  t.match((await left.next()).value, { type: 'delta', text: 'a' })
  await left.return(undefined)
  t.equal(signals[1]?.aborted, true, 'left after the first delta: the request is aborted')
})

t.test('tool rounds, tool_choice, temperature, stop and a non-strict schema in the Chat Completions format', async (t) => {
  t.same(openaiMessage({ role: 'assistant', content: '', toolCalls: [{ id: 'call_a', name: 'f', arguments: '{}' }] }),
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'f', arguments: '{}' } }] }, 'no text: content null')
  t.same(openaiMessage({ role: 'assistant', content: 'Looking.', toolCalls: [] }), { role: 'assistant', content: 'Looking.' }, 'no calls: a text turn')
  t.match(openaiMessage({ role: 'assistant', content: 'Looking.', toolCalls: [{ id: 'call_a', name: 'f', arguments: '{}' }] }), { content: 'Looking.', tool_calls: [{ id: 'call_a' }] }, 'text and calls')
  t.same(openaiMessage({ role: 'tool', toolCallId: 'call_a', content: '[]' }), { role: 'tool', tool_call_id: 'call_a', content: '[]' })
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => HttpResponse.json(completion('ok'))))
  const { provider } = chat()
  await provider.complete({ ...call(), toolChoice: { name: 'suggest_settings' }, temperature: 0, stop: ['END'], responseFormat: { name: 'r', schema: { type: 'object' }, strict: false } })
  const body = await seen[0]?.json() as Record<string, unknown>
  t.match(body, { tool_choice: { type: 'function', function: { name: 'suggest_settings' } }, temperature: 0, stop: ['END'], response_format: { type: 'json_schema', json_schema: { name: 'r', strict: false } } })
})

t.test('mapOpenAIError keeps a ProviderError as it is, and reads the SDK\'s errors (streams, moderation)', async (t) => {
  const err = new ProviderError('PROVIDER_TIMEOUT', 'x')
  const silent = pino({ level: 'silent' })
  t.equal(mapOpenAIError(err, null, silent), err)
  t.match(mapOpenAIError(new APIError(429, { code: 'insufficient_quota', type: 'insufficient_quota', message: 'No credit.' }, undefined, new Headers()), null, silent),
    { code: 'PROVIDER_UNAVAILABLE', retry: { retry: false } }, 'a refusal by its code')
  t.match(mapOpenAIError(new APIError(503, { code: 503, message: 'Overloaded.' }, undefined, new Headers()), null, silent),
    { code: 'PROVIDER_ERROR', retry: { retry: true } }, 'a 503 whose code is a number (no string code to read): retried')
})

t.test('a failed answer of the JSON path becomes the SDK\'s error, whatever its body', async (t) => {
  const headers = new Headers({ 'retry-after': '2' })
  t.match(openaiStatusError(401, JSON.stringify({ error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }), headers),
    { status: 401, code: 'invalid_api_key', type: 'invalid_request_error', message: '401 Incorrect API key provided.', headers }, 'OpenAI\'s error object')
  t.match(openaiStatusError(400, JSON.stringify([{ error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT' } }]), headers),
    { status: 400, message: /^400 .*API key not valid/ }, 'Gemini\'s array is the error itself, so its message can be read')
  t.match(openaiStatusError(400, JSON.stringify({ code: 'Arrearage', message: 'Access denied, please make sure your account is in good standing.' }), headers),
    { code: 'Arrearage', message: '400 Access denied, please make sure your account is in good standing.' }, 'an error without the `error` wrapper (Qwen)')
  t.match(openaiStatusError(502, '<html>Bad gateway</html>', headers), { status: 502, code: undefined, message: '502 <html>Bad gateway</html>' }, 'a body that is not JSON is the message')
  t.match(openaiStatusError(503, '', headers), { status: 503, message: '503 status code (no body)' })
  t.match(openaiStatusError(500, 'null', headers), { status: 500, message: '500 null' }, 'JSON null, read as the SDK reads it')
})

t.test('moderation failures are provider errors (the message is then not sent on)', async (t) => {
  let mode = 'down'
  interceptNetwork(t, http.post('https://api.openai.com/v1/moderations', () => mode === 'down' ? openaiError(500, 'down') : HttpResponse.error()))
  const { provider } = chat()
  await t.rejects(provider.flagged(['text'], new AbortController().signal), { code: 'PROVIDER_ERROR' })
  mode = 'network'
  await t.rejects(provider.flagged(['text'], new AbortController().signal), { code: 'PROVIDER_UNAVAILABLE', message: /cannot be reached/ }, 'the SDK\'s connection error')
})

t.test('streams over the global fetch: a connection error is retried, then PROVIDER_UNAVAILABLE; a failed answer is read as the JSON path reads it', async (t) => {
  let mode = 'network'
  const { seen } = interceptNetwork(t, http.post(OPENAI_URL, () => mode === 'network' ? HttpResponse.error() : openaiError(400, 'Bad request: messages')))
  const { provider } = chat()
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_UNAVAILABLE', message: /cannot be reached/ })
  t.equal(seen.length, 3, 'retried before the first chunk')
  t.equal(seen[0]?.headers.get('accept'), 'text/event-stream')
  t.match(await (seen[0] as Request).json(), { stream: true, stream_options: { include_usage: true } })
  mode = '400'
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_ERROR', message: /HTTP 400/ })
  t.equal(seen.length, 4, 'a refusal is not retried')
})

t.test('streams: nothing within the first-byte limit is PROVIDER_TIMEOUT; tool-call pieces without arguments are fine', async (t) => {
  let mode = 'silent'
  interceptNetwork(t, http.post(OPENAI_URL, () => {
    if (mode === 'silent') return sseResponse(streamChunks(['x']), { stallAfter: 0 })
    const chunks = streamChunks(['Hi'], [{ settingId: 'display.theme', value: 'dark', reason: 'r' }]) as Array<Record<string, unknown>>
    if (mode === 'no-id') return sseResponse(JSON.parse(JSON.stringify(chunks).replaceAll('"id":"call_1",', '')) as unknown[])
    const bare = { ...chunks[1], choices: [{ index: 0, delta: { tool_calls: [{ index: 0, type: 'function' }] }, finish_reason: null }] }
    return sseResponse([...chunks.slice(0, -2), bare, ...chunks.slice(-2)])
  }))
  const { provider } = chat({ timeoutMs: 5000, firstByteTimeoutMs: 150 })
  await t.rejects(drain(provider.stream(call())), { code: 'PROVIDER_TIMEOUT', message: /sent nothing/ })
  mode = 'bare'
  const events = await drain(provider.stream(call())) as Array<{ type: string, arguments?: string }>
  t.match(JSON.parse(events.find((e) => e.type === 'tool')?.arguments ?? ''), { suggestions: [{ settingId: 'display.theme' }] })
  mode = 'no-id'
  const unnamed = await drain(provider.stream(call())) as Array<{ type: string, id?: string }>
  t.equal(unnamed.find((e) => e.type === 'tool')?.id, 'call_0', 'a call the vendor named no id for gets one')
})
