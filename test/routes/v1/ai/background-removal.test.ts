import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { http, HttpResponse } from 'msw'
import sharp from 'sharp'
import t, { type Test } from 'tap'
import { build, createTestStore, mint, multipart, pngHeader, TEST_SECRETS, JOBS_SCHEMA, userWithKey } from '../../../helper.js'
import { interceptNetwork } from '../../../network.js'
import { start } from '../../../server-process.js'

/** How far the server's RSS may grow under 20 concurrent 10 MB uploads (stated in docs/test-plan.md). */
const MEMORY_BUDGET_MB = 500

const REMOVEBG_URL = 'https://api.remove.bg/v1.0/removebg'
const REMBG = 'http://rembg.internal:7000'
const REMOVEBG_KEY = 'canary-removebg-key-5f1e'
const LIVE_ENV = { REMOVEBG_API_KEY: REMOVEBG_KEY }
const BOTH_ENV = { ...LIVE_ENV, BG_REMOVAL_PROVIDERS: 'removebg,rembg', REMBG_URL: REMBG }

async function tokenFor (app: FastifyInstance, mode: 'live' | 'test' = 'live', plan = 'pro') {
  const { userId, key } = await userWithKey(app, { plan, mode })
  return { userId, token: (await mint(app, key)).token }
}

function upload (app: FastifyInstance, token: string, image: Buffer, fields: Record<string, string> = {}, filename = 'layer.jpg') {
  const body = multipart([...Object.entries(fields).map(([name, value]) => ({ name, value })), { name: 'image', value: image, filename, type: 'image/jpeg' }])
  return app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': body.contentType }, payload: body.payload })
}

/** A photo-like JPEG: a red square on a light background, 400×300 stored, EXIF orientation 6 (shown 300×400), GPS and a canary. */
async function jpegWithGps () {
  const w = 400
  const h = 300
  const raw = Buffer.alloc(w * h * 3, 230)
  for (let y = 100; y < 200; y++) for (let x = 150; x < 250; x++) raw.set([200, 30, 30], (y * w + x) * 3)
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).jpeg().withMetadata({
    orientation: 6,
    exif: { IFD0: { Copyright: 'CANARY-EXIF-OWNER' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '52/1 31/1 0/1', GPSLongitudeRef: 'E', GPSLongitude: '13/1 24/1 0/1' } }
  }).toBuffer()
}

/** A transparent cut-out of the given size, as remove.bg and rembg answer. */
const cutout = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 4, background: { r: 200, g: 30, b: 30, alpha: 0.5 } } }).png().toBuffer()

async function counters (app: FastifyInstance, userId: string) {
  const { rows } = await app.store.query<{ used: string, reserved: string }>('SELECT used, reserved FROM quota_usage WHERE user_id = $1', [userId])
  return rows.map((r) => ({ used: Number(r.used), reserved: Number(r.reserved) }))
}

t.test('a JPEG with GPS EXIF: remove.bg receives no metadata; the PNG has the oriented dimensions', async (t) => {
  const received: Buffer[] = []
  const { seen } = interceptNetwork(t, http.post(REMOVEBG_URL, async ({ request }) => {
    const form = await request.formData()
    const file = form.get('image_file') as File
    received.push(Buffer.from(await file.arrayBuffer()))
    t.equal(form.get('size'), 'auto')
    t.equal(form.get('channels'), 'rgba')
    const meta = await sharp(received[0]).metadata()
    return new HttpResponse(await cutout(meta.width as number, meta.height as number), {
      headers: { 'content-type': 'image/png', 'x-width': String(meta.width), 'x-height': String(meta.height), 'x-credits-charged': '1' }
    })
  }))
  const { app, logs } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  const input = await jpegWithGps()
  t.ok(input.includes(Buffer.from('CANARY-EXIF-OWNER')), 'the test image carries EXIF')

  const res = await upload(app, token, input)
  t.equal(res.statusCode, 200, res.body.slice(0, 200))
  t.equal(res.headers['content-type'], 'image/png')
  t.equal(res.headers['ai-provider'], 'removebg')
  t.equal(res.headers['x-quota-remaining'], '499')
  const out = await sharp(res.rawPayload).metadata()
  t.same([out.format, out.width, out.height, out.hasAlpha], ['png', 300, 400, true], 'oriented: 300×400')

  t.equal((seen[0] as Request).headers.get('x-api-key'), REMOVEBG_KEY)
  const sent = received[0] as Buffer
  const sentMeta = await sharp(sent).metadata()
  t.equal(sentMeta.exif, undefined, 'no EXIF left')
  t.equal(sentMeta.xmp, undefined, 'no XMP')
  t.equal(sentMeta.orientation, undefined, 'orientation applied, not carried')
  t.same([sentMeta.width, sentMeta.height], [300, 400])
  t.notOk(sent.includes(Buffer.from('CANARY-EXIF-OWNER')))
  t.notOk(sent.includes(Buffer.from('Exif\0\0')), 'no EXIF segment at all (GPS lives in it)')

  const ledger = (await app.store.query('SELECT provider, units, cost_micro_usd FROM usage_ledger WHERE user_id = $1', [userId])).rows
  t.same(ledger, [{ provider: 'removebg', units: '1', cost_micro_usd: '200000' }])
  t.notOk(logs.text.includes(REMOVEBG_KEY))
  t.notOk(logs.text.includes('CANARY-EXIF-OWNER'))
})

t.test('bad images: a bomb, an oversized upload, a text file named .png, a truncated PNG', async (t) => {
  const { seen } = interceptNetwork(t)
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)

  const before = process.memoryUsage().rss
  const bomb = await upload(app, token, pngHeader(100_000, 100_000), {}, 'bomb.png')
  t.equal(bomb.statusCode, 422)
  t.match(bomb.json().error, { code: 'IMAGE_TOO_LARGE', details: { width: 100_000, height: 100_000, maxPixels: 25_000_000 } })
  t.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'refused from the header: no 40 GB decode, no large allocation')

  const big = await upload(app, token, Buffer.concat([pngHeader(10, 10), Buffer.alloc(13 * 1024 * 1024)]), {}, 'big.png')
  t.equal(big.statusCode, 413)
  t.match(big.json().error, { code: 'PAYLOAD_TOO_LARGE', message: 'The image is larger than 12 MB: pick a smaller file or scale it down.', details: { maxBytes: 12 * 1024 * 1024 } })

  const text = await upload(app, token, Buffer.from('just some text, not an image\n'), {}, 'photo.png')
  t.equal(text.statusCode, 415)
  t.equal(text.json().error.code, 'UNSUPPORTED_MEDIA_TYPE')

  const noise = Buffer.alloc(200 * 200 * 3)
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251
  const png = await sharp(noise, { raw: { width: 200, height: 200, channels: 3 } }).png().toBuffer()
  const truncated = await upload(app, token, png.subarray(0, Math.floor(png.length / 2)), {}, 'cut.png')
  t.equal(truncated.statusCode, 422)
  t.equal(truncated.json().error.code, 'INVALID_IMAGE')

  t.equal(seen.length, 0, 'nothing left the server')
  t.same(await counters(app, userId), [], 'no quota touched')
})

t.test('the request: wrong fields, a missing image, JSON instead of multipart', async (t) => {
  const { app } = await build(t)
  const { token } = await tokenFor(app, 'test')
  const image = await jpegWithGps()
  const badOutput = await upload(app, token, image, { output: 'outline' })
  t.equal(badOutput.statusCode, 400)
  t.match(badOutput.json().error.details.fields, [{ path: '/output', message: 'must be one of cutout, mask' }])
  const unknown = await upload(app, token, image, { prompt: 'x' })
  t.match(unknown.json().error.details.fields, [{ path: '/prompt' }])
  const other = multipart([{ name: 'file', value: image, filename: 'a.jpg' }])
  const wrongFile = await app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': other.contentType }, payload: other.payload })
  t.match(wrongFile.json().error.details.fields, [{ path: '/file' }])
  const none = multipart([{ name: 'output', value: 'mask' }])
  const missing = await app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': none.contentType }, payload: none.payload })
  t.match(missing.json().error.details.fields, [{ path: '/image', message: /required/ }])
  const full = multipart([{ name: 'image', value: image, filename: 'a.jpg', type: 'image/jpeg' }])
  const truncated = await app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': full.contentType }, payload: full.payload.subarray(0, 2000) })
  t.equal(truncated.statusCode, 400, 'a body that ends inside the file is refused, not a crash')
  t.match(truncated.json().error, { code: 'VALIDATION_ERROR', message: /malformed or ended before it was complete/ })
  const two = multipart([{ name: 'image', value: image, filename: 'a.jpg', type: 'image/jpeg' }, { name: 'image', value: image, filename: 'b.jpg', type: 'image/jpeg' }])
  const twoFiles = await app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': two.contentType }, payload: two.payload })
  t.equal(twoFiles.statusCode, 400, 'one image per call')
  t.match(twoFiles.json().error, { code: 'VALIDATION_ERROR', details: { fields: [{ path: '/', message: /too many parts/ }] } })
  const json = await app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}` }, payload: { image: 'x' } })
  t.equal(json.statusCode, 415)
  t.equal(json.json().error.code, 'UNSUPPORTED_MEDIA_TYPE')
})

t.test('remove.bg 429 then 200 → success after honouring Retry-After', async (t) => {
  let calls = 0
  interceptNetwork(t, http.post(REMOVEBG_URL, async () => ++calls === 1
    ? HttpResponse.json({ errors: [{ title: 'Rate limit exceeded', code: 'rate_limit_exceeded' }] }, { status: 429, headers: { 'retry-after': '1' } })
    : new HttpResponse(await cutout(300, 400), { headers: { 'content-type': 'image/png' } })))
  const { app } = await build(t, { env: LIVE_ENV })
  const { token } = await tokenFor(app)
  const res = await upload(app, token, await jpegWithGps())
  t.equal(res.statusCode, 200)
  t.equal(calls, 2)
})

t.test('remove.bg 402 (no credits) → falls back to rembg, with an operator log line', async (t) => {
  const rembgForms: FormData[] = []
  interceptNetwork(t,
    http.post(REMOVEBG_URL, () => HttpResponse.json({ errors: [{ title: 'Insufficient credits', code: 'insufficient_credits' }] }, { status: 402 })),
    http.post(`${REMBG}/api/remove`, async ({ request }) => {
      rembgForms.push(await request.formData())
      return new HttpResponse(await cutout(300, 400), { headers: { 'content-type': 'image/png' } })
    }))
  const { app, logs } = await build(t, { env: BOTH_ENV })
  const { userId, token } = await tokenFor(app)
  const res = await upload(app, token, await jpegWithGps(), { output: 'mask' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['ai-provider'], 'rembg')
  const mask = await sharp(res.rawPayload).metadata()
  t.same([mask.width, mask.height, mask.channels], [300, 400, 1], 'a single-channel mask')
  t.equal(rembgForms[0]?.get('om'), 'true')
  t.ok(rembgForms[0]?.get('file') instanceof File)
  t.match(logs.find('remove.bg refused the account (credits or REMOVEBG_API_KEY): it is skipped until fixed'), [{ status: 402, code: 'insufficient_credits' }])
  t.match((await app.store.query('SELECT provider FROM usage_ledger WHERE user_id = $1', [userId])).rows, [{ provider: 'rembg' }])
})

t.test('both providers down → PROVIDER_UNAVAILABLE with quota unchanged; no foreground → CONTENT_REJECTED without fallback', async (t) => {
  let mode = 'down'
  let rembgCalls = 0
  interceptNetwork(t,
    http.post(REMOVEBG_URL, () => mode === 'down'
      ? HttpResponse.error()
      : HttpResponse.json({ errors: [{ title: 'Could not identify foreground in image.', code: 'unknown_foreground' }] }, { status: 400 })),
    http.post(`${REMBG}/api/remove`, () => { rembgCalls++; return HttpResponse.error() }))
  const { app } = await build(t, { env: BOTH_ENV })
  const { userId, token } = await tokenFor(app)
  const down = await upload(app, token, await jpegWithGps())
  t.equal(down.statusCode, 503)
  t.equal(down.json().error.code, 'PROVIDER_UNAVAILABLE')
  t.equal(rembgCalls, 3, 'rembg was tried after remove.bg, each with the retry policy')
  t.same(await counters(app, userId), [{ used: 0, reserved: 0 }])

  mode = 'no-foreground'
  const rejected = await upload(app, token, await jpegWithGps())
  t.equal(rejected.statusCode, 422)
  t.equal(rejected.json().error.code, 'CONTENT_REJECTED')
  t.equal(rembgCalls, 3, 'no fallback on content the provider refused')
  t.same(await counters(app, userId), [{ used: 0, reserved: 0 }])
})

/** A promise and the function that resolves it (Promise.withResolvers is Node 22). */
function deferred () {
  let settle: () => void = () => {}
  const promise = new Promise<void>((resolve) => { settle = resolve })
  return { promise, resolve: () => settle() }
}

t.test('a call still at the provider when the shutdown stops in-flight calls → 503 "restarting", quota released, no fallback', async (t) => {
  let rembgCalls = 0
  const atProvider = deferred()
  interceptNetwork(t,
    http.post(REMOVEBG_URL, async ({ request }) => {
      atProvider.resolve()
      await new Promise((resolve) => request.signal.addEventListener('abort', resolve))
      return HttpResponse.error()
    }),
    http.post(`${REMBG}/api/remove`, () => { rembgCalls++; return HttpResponse.error() }))
  const { app } = await build(t, { env: BOTH_ENV })
  const { userId, token } = await tokenFor(app)
  const pending = upload(app, token, await jpegWithGps())
  await atProvider.promise
  app.readiness.stopInFlight()
  const res = await pending
  t.equal(res.statusCode, 503)
  t.match(res.json().error, { code: 'PROVIDER_UNAVAILABLE', message: 'The service is restarting: ask again in a moment.' })
  t.equal(rembgCalls, 0, 'a stopped call does not fall back')
  t.same(await counters(app, userId), [{ used: 0, reserved: 0 }])
})

t.test('BG_REMOVAL_MAX_IN_FLIGHT: calls beyond it wait their turn, then run', async (t) => {
  let calls = 0
  const released = deferred()
  const firstArrived = deferred()
  interceptNetwork(t, http.post(REMOVEBG_URL, async ({ request }) => {
    calls++
    firstArrived.resolve()
    await released.promise
    const image = (await request.formData()).get('image_file') as Blob
    const { width, height } = await sharp(Buffer.from(await image.arrayBuffer())).metadata()
    return new HttpResponse(await cutout(width, height), { headers: { 'content-type': 'image/png' } })
  }))
  const { app } = await build(t, { env: { ...LIVE_ENV, BG_REMOVAL_MAX_IN_FLIGHT: '1' } })
  const { token } = await tokenFor(app)
  const image = await jpegWithGps()
  const one = upload(app, token, image)
  await firstArrived.promise
  const two = upload(app, token, image)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(calls, 1, 'the second call waits while the first is at the provider')
  released.resolve()
  t.same([(await one).statusCode, (await two).statusCode], [200, 200])
  t.equal(calls, 2)
})

t.test('a call that gets no turn within BG_REMOVAL_TIMEOUT_MS → 503 PROVIDER_UNAVAILABLE with Retry-After, no quota used', async (t) => {
  const { app } = await build(t, { env: { BG_REMOVAL_MAX_IN_FLIGHT: '1', BG_REMOVAL_TIMEOUT_MS: '200' } })
  const { userId, token } = await tokenFor(app, 'test')
  // The instance's only turn is taken.
  const busy = deferred()
  const holder = app.imagesInFlight(() => busy.promise)
  const res = await upload(app, token, await jpegWithGps())
  t.equal(res.statusCode, 503)
  t.match(res.json().error, { code: 'PROVIDER_UNAVAILABLE', message: /busy/ })
  t.equal(res.headers['retry-after'], '5')
  t.same(await counters(app, userId), [])
  busy.resolve()
  await holder
  t.equal((await upload(app, token, await jpegWithGps())).statusCode, 200, 'the next call runs once the turn is free')
})

/** An app whose answers to calls marked `x-test-hold` wait, before their last write, for the test: a client still reading. */
async function holdingApp (t: Test, env: Record<string, string>) {
  const held: Array<() => void> = []
  const { app } = await build(t, {
    env,
    register: (app) => {
      app.addHook('onRequest', async (request, reply) => {
        if (request.headers['x-test-hold'] === undefined) return
        const raw = reply.raw
        const end = raw.end.bind(raw) as (...args: unknown[]) => void
        raw.end = ((...args: unknown[]) => {
          held.push(() => { end(...args) })
          return raw
        }) as typeof raw.end
      })
    }
  })
  return { app, held }
}

const until = async (ready: () => boolean) => { while (!ready()) await new Promise((resolve) => setTimeout(resolve, 10)) }

t.test('a call keeps its turn until its answer has gone out: a client still reading holds it', async (t) => {
  const { app, held } = await holdingApp(t, { BG_REMOVAL_MAX_IN_FLIGHT: '1', BG_REMOVAL_TIMEOUT_MS: '300' })
  const { token } = await tokenFor(app, 'test')
  const image = await jpegWithGps()
  const body = multipart([{ name: 'image', value: image, filename: 'layer.jpg', type: 'image/jpeg' }])
  const headers = { authorization: `Bearer ${token}`, 'content-type': body.contentType, 'x-test-hold': '1' }
  const first = app.inject({ method: 'POST', url: '/v1/ai/background-removal', payload: body.payload, headers })
  await until(() => held.length === 1)
  const waiting = await upload(app, token, image)
  t.equal(waiting.statusCode, 503, 'the result is made but not yet sent: the turn is still taken')
  t.equal(waiting.json().error.code, 'PROVIDER_UNAVAILABLE')
  held[0]?.()
  t.equal((await first).statusCode, 200)
  t.equal((await upload(app, token, image)).statusCode, 200, 'sent: the turn is free')
})

t.test('a client that leaves before its answer is sent frees the turn (over a real connection)', async (t) => {
  const { app, held } = await holdingApp(t, { BG_REMOVAL_MAX_IN_FLIGHT: '1' })
  const { token } = await tokenFor(app, 'test')
  const image = await jpegWithGps()
  const body = multipart([{ name: 'image', value: image, filename: 'layer.jpg', type: 'image/jpeg' }])
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const req = request(`${address}/v1/ai/background-removal`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': body.contentType, 'x-test-hold': '1' }
  })
  const closed = new Promise((resolve) => req.on('error', resolve))
  req.end(body.payload)
  // The answer is made and about to be written when the client goes.
  await until(() => held.length === 1)
  req.destroy()
  await closed
  // A turn that was never given back would make this call wait out the 45 s and get 503.
  t.equal((await upload(app, token, image)).statusCode, 200, 'the client went away: the turn is free')
})

t.test('a provider answer that is not an image → PROVIDER_ERROR, quota released', async (t) => {
  interceptNetwork(t, http.post(REMOVEBG_URL, () => new HttpResponse('<html>maintenance</html>', { headers: { 'content-type': 'image/png' } })))
  const { app } = await build(t, { env: LIVE_ENV })
  const { userId, token } = await tokenFor(app)
  const res = await upload(app, token, await jpegWithGps())
  t.equal(res.statusCode, 502)
  t.equal(res.json().error.code, 'PROVIDER_ERROR')
  t.same(await counters(app, userId), [{ used: 0, reserved: 0 }])
})

t.test('live calls without a provider → PROVIDER_NOT_CONFIGURED; test calls use the sandbox and never go out', async (t) => {
  const { seen } = interceptNetwork(t)
  const { app } = await build(t)
  const live = await tokenFor(app)
  const refused = await upload(app, live.token, await jpegWithGps())
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().error.code, 'PROVIDER_NOT_CONFIGURED')

  const test = await tokenFor(app, 'test')
  const res = await upload(app, test.token, await jpegWithGps(), { format: 'webp' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['ai-provider'], 'sandbox')
  t.equal(res.headers['content-type'], 'image/webp')
  const out = sharp(res.rawPayload)
  const meta = await out.metadata()
  t.same([meta.format, meta.width, meta.height, meta.hasAlpha], ['webp', 300, 400, true])
  // The flood fill made the light border transparent and kept the red square.
  const { data, info } = await out.raw().toBuffer({ resolveWithObject: true })
  const alphaAt = (x: number, y: number) => data[(y * info.width + x) * info.channels + 3]
  t.equal(alphaAt(5, 5), 0, 'background removed')
  t.equal(alphaAt(150, 200), 255, 'subject kept')
  const mask = await upload(app, test.token, await jpegWithGps(), { output: 'mask' })
  const maskMeta = await sharp(mask.rawPayload).metadata()
  t.same([maskMeta.width, maskMeta.height, maskMeta.channels], [300, 400, 1])
  t.equal(seen.length, 0)
})

/** Resident memory of a process now, in MB. */
function rssMb (pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Math.round(Number(match?.[1]) / 1024)
}

t.test('20 concurrent 10 MB uploads to the real server: every answer right, peak RSS within budget', async (t) => {
  // As deployed: PostgreSQL (the embedded PGlite alone holds a large WebAssembly heap), and tsx, a plain
  // transpiler, so the loader's own memory does not blur the figure.
  const { url, drop } = await createTestStore('postgres')
  t.teardown(drop)
  // The longest wait for a turn (45 s), so that a slow machine queues the 20 uploads rather than turning some away.
  const { child, address } = await start(t, { ...TEST_SECRETS, JOBS_SCHEMA, DATABASE_URL: url as string, BG_REMOVAL_TIMEOUT_MS: '45000' }, ['--import', 'tsx', 'server.ts'])
  const admin = { authorization: `Bearer ${TEST_SECRETS.ADMIN_TOKEN}`, 'content-type': 'application/json' }
  await fetch(`${address}/v1/admin/licenses/load-user`, { method: 'PUT', headers: admin, body: JSON.stringify({ plan: 'team', status: 'active' }) })
  const { key } = await (await fetch(`${address}/v1/admin/keys`, { method: 'POST', headers: admin, body: JSON.stringify({ userId: 'load-user', mode: 'test' }) })).json() as { key: string }
  const { token } = await (await fetch(`${address}/v1/ai/tokens`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })).json() as { token: string }

  // Incompressible pixels: a ~10 MB PNG of 1,880 × 1,800 with a flat top band for the flood fill.
  const raw = Buffer.alloc(1880 * 1800 * 3)
  for (let i = 0, x = 2463534242; i < raw.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; raw[i] = x & 0xff }
  for (let y = 0; y < 40; y++) raw.fill(0, y * 1880 * 3, (y + 1) * 1880 * 3)
  const png = await sharp(raw, { raw: { width: 1880, height: 1800, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer()
  t.ok(png.length > 10_000_000 && png.length < 12 * 1024 * 1024, `the upload is ${png.length} bytes`)
  const pid = child.pid as number
  const idle = rssMb(pid)
  let peak = idle
  const sampler = setInterval(() => { peak = Math.max(peak, rssMb(pid)) }, 10)

  const answers = await Promise.all(Array.from({ length: 20 }, async () => {
    const form = new FormData()
    form.append('image', new Blob([png], { type: 'image/png' }), 'big.png')
    const res = await fetch(`${address}/v1/ai/background-removal`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata()
    return `${res.status} ${meta.format} ${meta.width}x${meta.height} ${String(meta.hasAlpha)}`
  }))
  clearInterval(sampler)
  t.same([...new Set(answers)], ['200 png 1880x1800 true'], 'every response is correct')
  const grown = peak - idle
  t.comment(`server RSS: ${idle} MB before, ${peak} MB at the peak of the load (+${grown} MB)`)
  // Budget (docs/test-plan.md): at most BG_REMOVAL_MAX_IN_FLIGHT (6) calls under way, 2 of them decoding; the rest wait unread in their sockets.
  t.ok(grown <= MEMORY_BUDGET_MB, `server RSS grew ${grown} MB, within the ${MEMORY_BUDGET_MB} MB budget`)
})
