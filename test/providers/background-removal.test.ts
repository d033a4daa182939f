import { getEventListeners } from 'node:events'
import { delay, http, HttpResponse } from 'msw'
import pino from 'pino'
import t from 'tap'
import { createHttpCaller, createRembg, createRemoveBg, readCapped } from '../../providers/background-removal.js'
import { ProviderError } from '../../providers/provider-error.js'
import { interceptNetwork } from '../network.js'

const URL = 'http://rembg.internal:7000/api/remove'
const request = () => ({ url: URL, form: new FormData() })
const classify = () => new ProviderError('PROVIDER_ERROR', 'refused')
const log = pino({ level: 'silent' })
// AbortSignal.timeout() does not hold the event loop open (a server's socket does); this test has no server.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(keepAlive))

t.test('a result over the size limit, a stalled provider and a cancelled call', async (t) => {
  let mode = 'big'
  interceptNetwork(t, http.post(URL, async () => {
    if (mode === 'big') return new HttpResponse(new Uint8Array(2048), { headers: { 'content-type': 'image/png' } })
    await delay('infinite')
    return new HttpResponse(null)
  }))
  const call = createHttpCaller({ provider: 'rembg', timeoutMs: 150, log, maxResultBytes: 1024 })
  await t.rejects(call(request, classify, new AbortController().signal), { code: 'PROVIDER_ERROR', message: /larger than 1024 bytes/ })
  mode = 'stall'
  await t.rejects(call(request, classify, new AbortController().signal), { code: 'PROVIDER_TIMEOUT' })
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 20)
  await t.rejects(createHttpCaller({ provider: 'rembg', timeoutMs: 5000, log })(request, classify, controller.signal), { code: 'PROVIDER_ERROR', message: /cancelled/ })
})

t.test('reading a result leaves no listener on the signal, whether it ends, is too large or is cut (the soak found them kept the chunks alive)', async (t) => {
  const signal = new AbortController().signal
  t.same(await readCapped(new Response(new Uint8Array([1, 2, 3])), 1024, signal, 'rembg'), Buffer.from([1, 2, 3]))
  t.equal(getEventListeners(signal, 'abort').length, 0, 'after a whole body')
  await t.rejects(readCapped(new Response(new Uint8Array(2048)), 1024, signal, 'rembg'), { code: 'PROVIDER_ERROR' })
  t.equal(getEventListeners(signal, 'abort').length, 0, 'after a body over the limit')
  const controller = new AbortController()
  const reading = readCapped(new Response(new ReadableStream({ start (c) { c.enqueue(new Uint8Array(10)) } })), 1024, controller.signal, 'rembg')
  controller.abort(new Error('cut'))
  await t.rejects(reading, { message: 'cut' })
  t.equal(getEventListeners(controller.signal, 'abort').length, 0, 'after a cut read')
})

t.test('a result is read whole whatever its Content-Length says', async (t) => {
  const signal = new AbortController().signal
  const body = (...chunks: number[][]) => new ReadableStream({ start (c) { for (const chunk of chunks) c.enqueue(new Uint8Array(chunk)); c.close() } })
  const read = (length: string | null, ...chunks: number[][]) =>
    readCapped(new Response(body(...chunks), { headers: length === null ? {} : { 'content-length': length } }), 1024, signal, 'rembg')
  t.same(await read('3', [1], [2, 3]), Buffer.from([1, 2, 3]), 'as declared, in one buffer')
  t.same(await read('2', [1], [2, 3]), Buffer.from([1, 2, 3]), 'more than declared')
  t.same(await read('10', [1, 2, 3]), Buffer.from([1, 2, 3]), 'fewer than declared')
  t.same(await read(null, [1], [2, 3]), Buffer.from([1, 2, 3]), 'nothing declared')
  t.same(await read('99999', [1, 2, 3]), Buffer.from([1, 2, 3]), 'a declared size over the limit is not trusted')
  t.same(await read('x', [1, 2, 3]), Buffer.from([1, 2, 3]), 'an unreadable one neither')
})

t.test('a body that stalls after its headers is cut by the attempt timeout', async (t) => {
  interceptNetwork(t, http.post(URL, () => new HttpResponse(new ReadableStream({ start (c) { c.enqueue(new Uint8Array(10)) } }))))
  const call = createHttpCaller({ provider: 'rembg', timeoutMs: 150, log })
  await t.rejects(call(request, classify, new AbortController().signal), { code: 'PROVIDER_TIMEOUT' })
})

t.test('rembg answers: 5xx retried then PROVIDER_ERROR, 4xx final, 429 without Retry-After retried', async (t) => {
  let status = 500
  const { seen } = interceptNetwork(t, http.post(URL, () => new HttpResponse('no', { status })))
  const rembg = createRembg({ url: 'http://rembg.internal:7000/', timeoutMs: 1000, log, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 100 } })
  const image = { blob: new Blob(['x'], { type: 'image/png' }), type: 'png' as const, width: 1, height: 1 }
  const signal = new AbortController().signal
  await t.rejects(rembg.remove(image, { output: 'cutout', signal }), { code: 'PROVIDER_ERROR', message: /HTTP 500/ })
  t.equal(seen.length, 2)
  status = 400
  await t.rejects(rembg.remove(image, { output: 'cutout', signal }), { code: 'PROVIDER_ERROR', message: /refused the request \(HTTP 400\)/ })
  t.equal(seen.length, 3)
  status = 429
  await t.rejects(rembg.remove(image, { output: 'cutout', signal }), { code: 'PROVIDER_UNAVAILABLE', headers: {} })
  t.equal(seen.length, 5)
})

t.test('remove.bg error bodies that are not its JSON, or carry no error code, are plain provider errors', async (t) => {
  let mode = 'html'
  interceptNetwork(t, http.post('https://api.remove.bg/v1.0/removebg', () => mode === 'html'
    ? new HttpResponse('<html>Bad gateway</html>', { status: 400 })
    : HttpResponse.json({ errors: [] }, { status: 400 })))
  const removebg = createRemoveBg({ apiKey: 'k', baseUrl: 'https://api.remove.bg', timeoutMs: 1000, log })
  const image = { blob: new Blob(['x'], { type: 'image/jpeg' }), type: 'jpeg' as const, width: 1, height: 1 }
  await t.rejects(removebg.remove(image, { output: 'mask', signal: new AbortController().signal }), { code: 'PROVIDER_ERROR', message: /HTTP 400/ })
  mode = 'empty'
  await t.rejects(removebg.remove(image, { output: 'cutout', signal: new AbortController().signal }), { code: 'PROVIDER_ERROR', message: /HTTP 400/ })
})
