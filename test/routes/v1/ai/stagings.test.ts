import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { delay, http, HttpResponse } from 'msw'
import sharp from 'sharp'
import t, { type Test } from 'tap'
import { AppError } from '../../../../plugins/errors.js'
import { adminHeaders, build, dumpAllTables, mint, multipart, newUserId, pngHeader } from '../../../helper.js'
import { interceptNetwork } from '../../../network.js'
import { completion } from '../../../openai-fake.js'

const EDITS_URL = 'https://api.openai.com/v1/images/edits'
const CHAT_URL = 'https://api.openai.com/v1/chat/completions'
const OPENAI_KEY = 'sk-canary-staging-key-9d2f'
const CANARY = 'CANARY-PROPERTY-7Q3Z Harbour Lane'

const PLANS_FILE = join(mkdtempSync(join(tmpdir(), 'staging-plans-')), 'plans.json')
const staging = (limit: number) => ({ 'virtual-staging': { quota: { limit, period: 'month' }, rateLimitPerMinute: 1000 } })
writeFileSync(PLANS_FILE, JSON.stringify({
  plans: {
    // Polling every 50 ms reads more than the default 120 a minute.
    pro: { name: 'Pro', features: staging(100), rateLimitPerMinute: 100_000 },
    three: { name: 'Three', features: staging(3), rateLimitPerMinute: 100_000 },
    billed: { name: 'Billed', features: staging(100), credits: { monthlyFreeCents: 500, markupPercent: 40 }, rateLimitPerMinute: 100_000 },
    none: { name: 'None', features: { chat: { quota: { limit: 1000, period: 'month' }, rateLimitPerMinute: 100 } } }
  },
  prices: {
    sandbox: { perCall: 0 },
    'openai/gpt-image-1.5': { perInputUnit: 5, perOutputUnit: 10, perImageInputUnit: 8, perImageOutputUnit: 32 },
    'openai/gpt-4o-mini': { perInputUnit: 0.15, perOutputUnit: 0.6 }
  }
}))
const LIVE = { PLANS_FILE, OPENAI_API_KEY: OPENAI_KEY, WEBHOOK_ALLOW_PRIVATE: 'true' }

/** A photo-like JPEG with EXIF and GPS (and a canary in its metadata), 1200×800. */
async function roomPhoto (width = 1200, height = 800) {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="62%" fill="#e9e4dc"/><rect y="62%" width="100%" height="38%" fill="#b08d6a"/><rect x="${width / 3}" y="${height / 8}" width="${width / 4}" height="${height / 3}" fill="#cfe3f5"/></svg>`
  return sharp(Buffer.from(svg)).jpeg({ quality: 90 }).withMetadata({
    exif: { IFD0: { Copyright: 'CANARY-EXIF-OWNER' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '52/1 31/1 0/1', GPSLongitudeRef: 'E', GPSLongitude: '13/1 24/1 0/1' } }
  }).toBuffer()
}
const PHOTO = await roomPhoto()
/** What OpenAI answers: a JPEG of the edit size, base64. */
const STAGED_B64 = (await sharp({ create: { width: 1536, height: 1024, channels: 3, background: '#a08060' } }).jpeg().toBuffer()).toString('base64')

/** The documented Images answer: `data[].b64_json` and `usage` with text and image input tokens apart. */
const imagesAnswer = (usage = { text: 300, image: 1200, output: 6000 }) => ({
  created: 1_796_000_000,
  background: 'opaque',
  data: [{ b64_json: STAGED_B64 }],
  output_format: 'jpeg',
  quality: 'high',
  size: '1536x1024',
  usage: { input_tokens: usage.text + usage.image, input_tokens_details: { text_tokens: usage.text, image_tokens: usage.image }, output_tokens: usage.output, total_tokens: usage.text + usage.image + usage.output }
})

/** A Chat Completions answer whose content is the structured output. */
const visionAnswer = (value: unknown) => completion(JSON.stringify(value), [], { prompt_tokens: 1000, completion_tokens: 20 })

async function userOn (app: FastifyInstance, plan: string, mode: 'live' | 'test') {
  const userId = newUserId('staging')
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan } })
  const { key } = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode } })).json() as { key: string }
  return { userId, headers: { authorization: `Bearer ${(await mint(app, key)).token}` } }
}

type Headers = Record<string, string>

function submit (app: FastifyInstance, headers: Headers, fields: Record<string, string> = { style: 'modern_luxury' }, image: Buffer | null = PHOTO, extra: Headers = {}) {
  const body = multipart([...Object.entries(fields).map(([name, value]) => ({ name, value })), ...(image === null ? [] : [{ name: 'image', value: image, filename: 'room.jpg', type: 'image/jpeg' }])])
  return app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: { ...headers, ...extra, 'content-type': body.contentType }, payload: body.payload })
}

function submitBatch (app: FastifyInstance, headers: Headers, images: Buffer[], fields: Record<string, string> = { style: 'scandinavian' }) {
  const body = multipart([...Object.entries(fields).map(([name, value]) => ({ name, value })), ...images.map((value, i) => ({ name: 'images', value, filename: `room-${i}.jpg`, type: 'image/jpeg' }))])
  return app.inject({ method: 'POST', url: '/v1/ai/stagings/batches', headers: { ...headers, 'content-type': body.contentType }, payload: body.payload })
}

interface StagingBody { id: string, status: string, progress: number, roomType: string | null, roomTypeDetected: boolean, result: { stagedImageUrl: string, fileId: string, width: number, height: number, qualityScore: number | null, architecturalIntegrity: boolean | null } | null, error: { code: string, message: string } | null }

/** Polls a staging until it ends; returns it and every progress value seen. */
async function settled (app: FastifyInstance, headers: Headers, id: string) {
  const progress: number[] = []
  for (;;) {
    const res = await app.inject({ url: `/v1/ai/stagings/${id}`, headers })
    if (res.statusCode !== 200) throw new Error(`polling ${id}: ${res.statusCode} ${res.body}`)
    const body = res.json() as StagingBody
    progress.push(body.progress)
    if (body.status === 'completed' || body.status === 'failed') return { body, progress }
    await sleep(50)
  }
}

/**
 * The job deletes its files (the upload; the result of a staging deleted meanwhile) just after it records the outcome:
 * the rows of `sql` once no file of those kinds is left, or as they are after 5 s.
 */
async function filesWhenDone (app: FastifyInstance, sql: string, params: unknown[], kinds = ['upload']) {
  for (let i = 0; ; i++) {
    const { rows } = await app.store.query<{ kind: string }>(sql, params)
    if (i === 100 || !rows.some((r) => kinds.includes(r.kind))) return rows
    await sleep(50)
  }
}

async function quota (app: FastifyInstance, userId: string) {
  const { rows } = await app.store.query<{ used: string, reserved: string }>('SELECT used, reserved FROM quota_usage WHERE user_id = $1 AND feature = \'virtual-staging\'', [userId])
  return rows.map((r) => ({ used: Number(r.used), reserved: Number(r.reserved) }))
}
const ledger = async (app: FastifyInstance, userId: string) =>
  (await app.store.query<Record<string, unknown>>('SELECT provider, model, units, units_in, units_out, cost_micro_usd, charged_micro_usd, billed FROM usage_ledger WHERE user_id = $1', [userId])).rows

interface Script { rooms?: unknown[], checks?: unknown[], edits?: Array<() => Promise<Response> | Response> }

/** An OpenAI fake: the vision answers in order per check, the edits' answers in order (`load` sets the next ones); every request kept. */
function fakeOpenAI (t: Test, first: Script = {}) {
  const edits: FormData[] = []
  const visions: Array<Record<string, unknown>> = []
  let rooms: unknown[] = []
  let checks: unknown[] = []
  let answers: Script['edits'] & object = []
  const load = (script: Script) => {
    edits.length = 0
    visions.length = 0
    rooms = [...(script.rooms ?? [])]
    checks = [...(script.checks ?? [])]
    answers = [...(script.edits ?? [])]
  }
  load(first)
  interceptNetwork(t,
    http.post(EDITS_URL, async ({ request }) => {
      if (request.headers.get('authorization') !== `Bearer ${OPENAI_KEY}`) return HttpResponse.json({ error: { message: 'bad key', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, { status: 401 })
      edits.push(await request.formData())
      const next = answers.shift()
      return next === undefined ? HttpResponse.json(imagesAnswer()) : next()
    }),
    http.post(CHAT_URL, async ({ request }) => {
      const body = await request.json() as Record<string, unknown> & { response_format: { json_schema: { name: string } } }
      visions.push(body)
      const name = body.response_format.json_schema.name
      const value = name === 'room_check' ? rooms.shift() ?? { isRoom: true, roomType: 'living_room' } : checks.shift() ?? { architecturalIntegrity: true, qualityScore: 0.87 }
      // A function answers as it likes (content that is not the schema's, no usage).
      return typeof value === 'function' ? (value as () => Response)() : HttpResponse.json(visionAnswer(value))
    }))
  return { edits, visions, load }
}

t.test('test mode: submit → 202 with Location, progress moves forward, a signed link to a visibly staged JPEG, the upload gone', async (t) => {
  const { app, logs, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const res = await submit(app, me.headers, { style: 'modern_luxury', propertyName: CANARY })
  t.equal(res.statusCode, 202, res.body)
  const queued = res.json() as StagingBody & { propertyName: string, qualityMode: string }
  t.match(queued, { id: /^stg_[0-9A-Za-z]{16}$/, status: 'queued', progress: 0, style: 'modern_luxury', roomType: null, qualityMode: 'premium', propertyName: CANARY, result: null, error: null })
  t.equal(res.headers.location, `/v1/ai/stagings/${queued.id}`)
  t.equal(res.headers['x-quota-remaining'], '99')

  const { body, progress } = await settled(app, me.headers, queued.id)
  t.equal(body.status, 'completed', JSON.stringify(body.error))
  t.same(progress, [...progress].sort((a, b) => a - b), 'progress never goes back')
  t.equal(progress.at(-1), 1)
  t.match(body, { roomType: 'living_room', roomTypeDetected: true, result: { width: 1536, height: 1024, qualityScore: 0.9, architecturalIntegrity: true } })
  t.match(body, { startedAt: String, completedAt: String, processingTimeMs: Number })

  const link = body.result?.stagedImageUrl as string
  t.match(link, /^\/v1\/ai\/files\/[0-9a-f-]{36}\?expires=\d+&signature=/)
  const image = await app.inject({ url: link })
  t.equal(image.statusCode, 200)
  t.equal(image.headers['content-type'], 'image/jpeg')
  const staged = await sharp(image.rawPayload).stats()
  const original = await sharp(await sharp(PHOTO).resize(1536, 1024, { fit: 'cover' }).toBuffer()).stats()
  t.ok(Math.abs(staged.channels[0]!.mean - original.channels[0]!.mean) + Math.abs(staged.channels[2]!.mean - original.channels[2]!.mean) > 5, 'the sandbox visibly changed the photo')
  t.notOk(image.rawPayload.includes('CANARY-EXIF-OWNER'), 'no EXIF in the result')

  t.same(await filesWhenDone(app, 'SELECT kind FROM files WHERE user_id = $1', [me.userId]), [{ kind: 'result' }], 'the upload is deleted when its job ends; the result stays')
  t.same(await quota(app, me.userId), [{ used: 1, reserved: 0 }])
  t.match(await ledger(app, me.userId), [{ provider: 'sandbox', units: '1', cost_micro_usd: '0' }])

  // The property name is sealed: nowhere in plain text, in no log line.
  t.notOk((await dumpAllTables(store)).includes('CANARY-PROPERTY'), 'no plaintext property name in any table')
  t.notOk(logs.text.includes('CANARY-PROPERTY'), 'no property name in the logs')
  t.notOk(logs.text.includes('CANARY-EXIF'), 'no photo metadata in the logs')
})

t.test('Idempotency-Key: a repeat within 24 h returns the first staging and queues nothing; other content is 409; an old key is free again', async (t) => {
  const { app, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const key = { 'idempotency-key': 'listing-42-photo-1' }
  const first = await submit(app, me.headers, { style: 'scandinavian' }, PHOTO, key)
  t.equal(first.statusCode, 202)
  const again = await submit(app, me.headers, { style: 'scandinavian' }, PHOTO, key)
  t.equal(again.statusCode, 202)
  t.equal(again.json().id, first.json().id)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.headers.location, first.headers.location)
  const other = await submit(app, me.headers, { style: 'industrial_loft' }, PHOTO, key)
  t.equal(other.statusCode, 409)
  t.equal(other.json().error.code, 'CONFLICT')
  const stranger = await userOn(app, 'pro', 'test')
  t.equal((await submit(app, stranger.headers, { style: 'scandinavian' }, PHOTO, key)).statusCode, 202, 'keys are per user')
  t.equal((await store.query('SELECT id FROM stagings WHERE user_id = $1', [me.userId])).rows.length, 1, 'one staging for the repeats')
  t.same((await quota(app, me.userId)).reduce((n, q) => n + q.used + q.reserved, 0), 1, 'one staging of quota')

  await store.query('UPDATE stagings SET created_at = now() - interval \'25 hours\' WHERE user_id = $1', [me.userId])
  const later = await submit(app, me.headers, { style: 'industrial_loft' }, PHOTO, key)
  t.equal(later.statusCode, 202)
  t.not(later.json().id, first.json().id, 'after 24 h the key starts a new staging')
  t.equal((await submit(app, me.headers, {}, PHOTO, { 'idempotency-key': 'é' })).json().error.code, 'VALIDATION_ERROR')
})

t.test('bad input: clear errors in the envelope, nothing stored, no quota used', async (t) => {
  const { app, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const expect = async (res: Awaited<ReturnType<typeof submit>>, status: number, code: string, path?: string) => {
    t.equal(res.statusCode, status, res.body)
    t.equal(res.json().error.code, code)
    if (path !== undefined) t.equal(res.json().error.details.fields[0].path, path)
  }
  await expect(await submit(app, me.headers, { style: 'modern_luxury' }, Buffer.from('%PDF-1.7 not a photo')), 415, 'UNSUPPORTED_MEDIA_TYPE')
  await expect(await submit(app, me.headers, { style: 'gothic_castle' }), 400, 'VALIDATION_ERROR', '/style')
  await expect(await submit(app, me.headers, {}), 400, 'VALIDATION_ERROR', '/style')
  await expect(await submit(app, me.headers, { style: 'modern_luxury', roomType: 'garage' }), 400, 'VALIDATION_ERROR', '/roomType')
  await expect(await submit(app, me.headers, { style: 'modern_luxury', qualityMode: 'ultra' }), 400, 'VALIDATION_ERROR', '/qualityMode')
  await expect(await submit(app, me.headers, { style: 'modern_luxury', propertyName: 'x'.repeat(201) }), 400, 'VALIDATION_ERROR', '/propertyName')
  await expect(await submit(app, me.headers, { style: 'modern_luxury', propertyName: 'a\u0000b' }), 400, 'VALIDATION_ERROR', '/propertyName')
  await expect(await submit(app, me.headers, { style: 'modern_luxury', colour: 'red' }), 400, 'VALIDATION_ERROR', '/colour')
  await expect(await submit(app, me.headers, { style: 'modern_luxury' }, null), 400, 'VALIDATION_ERROR', '/image')
  await expect(await app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: me.headers, payload: { style: 'modern_luxury' } }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  // A decompression bomb: a tiny PNG that claims 100,000 × 100,000 pixels.
  const bomb = pngHeader(100_000, 100_000)
  await expect(await submit(app, me.headers, { style: 'modern_luxury' }, bomb), 422, 'IMAGE_TOO_LARGE')
  const tooMany = await submitBatch(app, me.headers, Array.from({ length: 11 }, () => PHOTO))
  await expect(tooMany, 400, 'VALIDATION_ERROR', '/images')
  t.match(tooMany.json().error.details.fields[0].message, /at most 10/)
  await expect(await submitBatch(app, me.headers, []), 400, 'VALIDATION_ERROR', '/images')
  const badSecond = await submitBatch(app, me.headers, [PHOTO, Buffer.from('GIF89a not ours')])
  await expect(badSecond, 415, 'UNSUPPORTED_MEDIA_TYPE')
  t.match(badSecond.json().error.message, /^Image 2: /)
  t.same((await store.query('SELECT id FROM files WHERE user_id = $1', [me.userId])).rows, [], 'a refused batch leaves no upload behind')
  t.same(await quota(app, me.userId), [], 'no quota touched')
  const none = await userOn(app, 'none', 'test')
  await expect(await submit(app, none.headers), 403, 'NOT_ENTITLED')
})

t.test('another user\'s staging, batch and files are 404 on every route; DELETE removes the files now', async (t) => {
  const { app, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const other = await userOn(app, 'pro', 'test')
  const id = (await submit(app, me.headers)).json().id as string
  const { body } = await settled(app, me.headers, id)
  const batch = (await submitBatch(app, me.headers, [PHOTO])).json() as { id: string }
  for (const url of [`/v1/ai/stagings/${id}`, `/v1/ai/stagings/batches/${batch.id}`, `/v1/ai/files/${body.result?.fileId as string}`]) {
    t.equal((await app.inject({ url, headers: other.headers })).statusCode, 404, url)
  }
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${id}`, headers: other.headers })).statusCode, 404)
  t.same((await app.inject({ url: '/v1/ai/stagings', headers: other.headers })).json(), { data: [], nextCursor: null })
  t.equal((await app.inject({ url: '/v1/ai/stagings/nope', headers: me.headers })).statusCode, 400)

  t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${id}`, headers: me.headers })).statusCode, 204)
  t.equal((await app.inject({ url: `/v1/ai/stagings/${id}`, headers: me.headers })).statusCode, 404)
  t.equal((await app.inject({ url: body.result?.stagedImageUrl as string })).statusCode, 404, 'the signed link no longer reads anything')
  t.same((await store.query('SELECT id FROM files WHERE id = $1', [body.result?.fileId])).rows, [])
  t.match(await ledger(app, me.userId), [{ units: '1' }], 'the ledger keeps its row')
})

t.test('list: newest first, cursor pages, filters by status and batch', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const single = (await submit(app, me.headers)).json().id as string
  const batch = (await submitBatch(app, me.headers, [PHOTO, PHOTO])).json() as { id: string, stagings: Array<{ id: string }> }
  const first = (await app.inject({ url: '/v1/ai/stagings?limit=2', headers: me.headers })).json() as { data: StagingBody[], nextCursor: string }
  t.equal(first.data.length, 2)
  const second = (await app.inject({ url: `/v1/ai/stagings?limit=2&cursor=${first.nextCursor}`, headers: me.headers })).json() as { data: StagingBody[], nextCursor: null }
  t.same([...first.data, ...second.data].map((s) => s.id).sort(), [single, ...batch.stagings.map((s) => s.id)].sort())
  t.equal(second.nextCursor, null)
  const inBatch = (await app.inject({ url: `/v1/ai/stagings?batchId=${batch.id}`, headers: me.headers })).json() as { data: StagingBody[] }
  t.same(inBatch.data.map((s) => s.id).sort(), batch.stagings.map((s) => s.id).sort())
  for (const s of [single, ...batch.stagings.map((b) => b.id)]) await settled(app, me.headers, s)
  t.equal(((await app.inject({ url: '/v1/ai/stagings?status=completed', headers: me.headers })).json() as { data: unknown[] }).data.length, 3)
  t.equal(((await app.inject({ url: '/v1/ai/stagings?status=failed', headers: me.headers })).json() as { data: unknown[] }).data.length, 0)
  t.equal((await app.inject({ url: '/v1/ai/stagings?cursor=bm90LW91cnM', headers: me.headers })).statusCode, 400)
})

t.test('a batch: all reserved at once, counts per status, batch.completed once the last ends', async (t) => {
  const { app } = await build(t, { env: { ...LIVE } })
  const hook = await receiver(t)
  const me = await userOn(app, 'pro', 'test')
  await app.inject({ method: 'POST', url: '/v1/webhooks', headers: me.headers, payload: { url: hook.url, events: ['staging.completed', 'staging.failed', 'batch.completed'] } })
  const res = await submitBatch(app, me.headers, [PHOTO, PHOTO, PHOTO], { style: 'scandinavian', qualityMode: 'standard', roomType: 'bedroom', propertyName: CANARY })
  t.equal(res.statusCode, 202, res.body)
  const batch = res.json() as { id: string, totalImages: number, status: string, stagings: Array<{ id: string }>, estimatedCompletionAt: string }
  t.match(batch, { id: /^bat_/, totalImages: 3, status: 'queued', counts: { queued: 3, processing: 0, completed: 0, failed: 0 } })
  t.equal(res.headers.location, `/v1/ai/stagings/batches/${batch.id}`)
  t.ok(Date.parse(batch.estimatedCompletionAt) > Date.now() - 1000)
  for (const s of batch.stagings) {
    const { body } = await settled(app, me.headers, s.id)
    t.match(body, { status: 'completed', roomType: 'bedroom', roomTypeDetected: false, result: { qualityScore: null, architecturalIntegrity: null } })
  }
  const done = (await app.inject({ url: `/v1/ai/stagings/batches/${batch.id}`, headers: me.headers })).json()
  t.match(done, { status: 'completed', counts: { queued: 0, processing: 0, completed: 3, failed: 0 }, completedAt: String })
  for (let i = 0; i < 200 && hook.received.length < 4; i++) await sleep(50)
  const events = hook.received.map((r) => JSON.parse(r.body) as { type: string, data: Record<string, unknown> })
  t.same(events.map((e) => e.type).sort(), ['batch.completed', 'staging.completed', 'staging.completed', 'staging.completed'])
  t.match(events.find((e) => e.type === 'batch.completed')?.data, { batchId: batch.id, completed: 3, failed: 0 })
  t.notOk(hook.received.some((r) => r.body.includes('CANARY') || r.body.includes('signature=')), 'webhooks carry ids and statuses, never content or links')
})

async function receiver (t: Test) {
  const { createServer } = await import('node:http')
  const received: Array<{ body: string }> = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => { received.push({ body }); res.end() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks`, received }
}

t.test('live, premium: the documented Images edit request, vision checks with a JSON schema, cost from usage priced apart, credits settled', async (t) => {
  // Before the app: the SDK takes the fetch it will use when its client is made.
  const fake = fakeOpenAI(t, {})
  const { app, logs, store } = await build(t, { env: LIVE })
  const me = await userOn(app, 'billed', 'live')
  const res = await submit(app, me.headers, { style: 'modern_luxury', propertyName: CANARY })
  t.equal(res.statusCode, 202, res.body)
  const { body } = await settled(app, me.headers, res.json().id as string)
  t.equal(body.status, 'completed', JSON.stringify(body.error))
  t.match(body, { roomType: 'living_room', roomTypeDetected: true, result: { width: 1536, height: 1024, qualityScore: 0.87, architecturalIntegrity: true } })

  t.equal(fake.edits.length, 1)
  const form = fake.edits[0] as FormData
  t.same([...new Set(form.keys())].sort(), ['image', 'input_fidelity', 'model', 'n', 'output_format', 'prompt', 'quality', 'safety_identifier', 'size'], 'exactly the declared fields')
  t.match(Object.fromEntries([...form.entries()].filter(([k]) => k !== 'image')), { model: 'gpt-image-1.5', n: '1', quality: 'high', size: '1536x1024', output_format: 'jpeg', input_fidelity: 'high', safety_identifier: /^[0-9a-f]{64}$/ })
  t.not(form.get('safety_identifier'), me.userId)
  const prompt = String(form.get('prompt'))
  t.match(prompt, /living room/)
  t.match(prompt, /Keep the architecture exactly as it is/)
  t.notOk(prompt.includes('CANARY'), 'the property name is never sent')
  const sent = Buffer.from(await (form.get('image') as File).arrayBuffer())
  const meta = await sharp(sent).metadata()
  t.equal(meta.exif, undefined, 'no EXIF leaves the server')
  t.notOk(sent.includes('CANARY-EXIF-OWNER'))

  t.equal(fake.visions.length, 2, 'the room check and the integrity check')
  for (const v of fake.visions) {
    t.same(Object.keys(v).sort(), ['max_completion_tokens', 'messages', 'model', 'response_format', 'safety_identifier', 'store'])
    t.match(v, { model: 'gpt-4o-mini', store: false, response_format: { type: 'json_schema', json_schema: { strict: true } } })
    t.notOk(JSON.stringify(v).includes('CANARY'))
  }
  t.equal(((fake.visions[1] as { messages: Array<{ content: unknown[] }> }).messages[0]?.content.length), 3, 'text, the photo and the staged image')

  // Edit: 300 text × 5 + 1,200 image-in × 8 + 6,000 image-out × 32; two vision calls: 2 × (1,000 × 0.15 + 20 × 0.6).
  const cost = 300 * 5 + 1200 * 8 + 6000 * 32 + 2 * (1000 * 0.15 + 20 * 0.6)
  t.match(await ledger(app, me.userId), [{ provider: 'openai', model: 'gpt-image-1.5', units: '1', units_in: String(1500 + 2000), units_out: String(6000 + 40), cost_micro_usd: String(cost), charged_micro_usd: String(Math.round(cost * 1.4)), billed: true }])
  const account = (await store.query<{ reserved_micro_usd: string }>('SELECT reserved_micro_usd FROM credit_months WHERE user_id = $1', [me.userId])).rows
  t.same(account.map((a) => Number(a.reserved_micro_usd)), [0], 'nothing stays held')
  t.notOk(logs.text.includes(OPENAI_KEY), 'the key is in no log line')
  t.notOk(logs.text.includes('CANARY'), 'no content in the logs')
  t.notOk((await dumpAllTables(store)).includes('CANARY'), 'no plaintext content in any table')
})

t.test('live outcomes: integrity retried once with a stricter prompt; twice failed, not interior, refused, failing: each a job error code, the reservation released', async (t) => {
  const fake = fakeOpenAI(t)
  const { app } = await build(t, { env: LIVE })
  const me = await userOn(app, 'billed', 'live')
  const run = async (script: Script, fields: Record<string, string> = { style: 'classic_elegance' }) => {
    fake.load(script)
    const res = await submit(app, me.headers, fields)
    t.equal(res.statusCode, 202, res.body)
    return { ...(await settled(app, me.headers, res.json().id as string)), fake }
  }
  const retried = await run({ checks: [{ architecturalIntegrity: false, qualityScore: 0.4 }, { architecturalIntegrity: true, qualityScore: 0.8 }] })
  t.equal(retried.body.status, 'completed')
  t.equal(retried.fake.edits.length, 2)
  t.match(String(retried.fake.edits[1]?.get('prompt')), /^.*STRICT: a previous attempt changed the room itself/)
  t.notMatch(String(retried.fake.edits[0]?.get('prompt')), /STRICT/)
  t.equal(retried.body.result?.qualityScore, 0.8)

  const before = await quota(app, me.userId)
  const failures: Array<[Script, string, Record<string, string>?]> = [
    [{ checks: [{ architecturalIntegrity: false, qualityScore: 0.3 }, { architecturalIntegrity: false, qualityScore: 0.2 }] }, 'ARCHITECTURAL_INTEGRITY_FAILED'],
    [{ rooms: [{ isRoom: false, roomType: 'outdoor' }] }, 'NOT_INTERIOR_IMAGE'],
    [{ edits: [() => HttpResponse.json({ error: { message: 'Your request was rejected by the safety system.', type: 'image_generation_user_error', param: '', code: 'moderation_blocked' } }, { status: 400 })] }, 'CONTENT_REJECTED'],
    [{ edits: [() => HttpResponse.json({ error: { message: 'The server had an error', type: 'server_error', param: null, code: null } }, { status: 500 })] }, 'PROVIDER_ERROR', { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' }],
    [{ edits: [() => HttpResponse.json({ created: 1, data: [] })] }, 'PROVIDER_ERROR', { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' }],
    [{ edits: [() => HttpResponse.error()] }, 'PROVIDER_UNAVAILABLE', { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' }]
  ]
  for (const [script, code, fields] of failures) {
    const { body, fake } = await run(script, fields)
    t.equal(body.status, 'failed', code)
    t.match(body.error, { code, message: String }, code)
    t.equal(body.result, null)
    if (code === 'NOT_INTERIOR_IMAGE') t.equal(fake.edits.length, 0, 'a photo that is not a room is never edited')
  }
  const after = await quota(app, me.userId)
  t.same(after, before, 'every failure gave its reservation back')
  t.same(await filesWhenDone(app, 'SELECT kind FROM files WHERE user_id = $1 AND kind = \'upload\'', [me.userId]), [], 'no upload outlives its job')
  t.equal((await ledger(app, me.userId)).length, 1, 'only the completed staging is charged')
  const credits = (await app.store.query<{ reserved_micro_usd: string }>('SELECT reserved_micro_usd FROM credit_months WHERE user_id = $1', [me.userId])).rows
  t.same(credits.map((c) => Number(c.reserved_micro_usd)), [0], 'no credits stay held')
})

t.test('live: a provider slower than STAGING_TIMEOUT_MS fails the job with PROVIDER_TIMEOUT and releases the quota', async (t) => {
  fakeOpenAI(t, { edits: [async () => { await delay(5_000); return HttpResponse.json(imagesAnswer()) }] })
  const { app } = await build(t, { env: { ...LIVE, STAGING_TIMEOUT_MS: '800' } })
  const me = await userOn(app, 'pro', 'live')
  const res = await submit(app, me.headers, { style: 'scandinavian', roomType: 'kitchen', qualityMode: 'standard' })
  const { body } = await settled(app, me.headers, res.json().id as string)
  t.match(body, { status: 'failed', error: { code: 'PROVIDER_TIMEOUT' } })
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }])
})

t.test('a worker that died: after the provider call the job fails JOB_INTERRUPTED (never charged twice), before it the staging runs', async (t) => {
  const fake = fakeOpenAI(t, {})
  const { app, store } = await build(t, { env: LIVE })
  const me = await userOn(app, 'pro', 'live')
  // Two stagings left as a dead worker leaves them: processing, one after its edit started and one before.
  await app.jobs.stop()
  const after = (await submit(app, me.headers, { style: 'scandinavian', roomType: 'kitchen', qualityMode: 'standard' })).json().id as string
  const before = (await submit(app, me.headers, { style: 'scandinavian', roomType: 'kitchen', qualityMode: 'standard' })).json().id as string
  await store.query('UPDATE stagings SET status = \'processing\', started_at = now(), progress = 0.3, provider_started_at = now() WHERE id = $1', [after])
  await store.query('UPDATE stagings SET status = \'processing\', started_at = now(), progress = 0.05 WHERE id = $1', [before])
  const log = app.log
  await app.stagings.run(after, new AbortController().signal, log)
  await app.stagings.run(before, new AbortController().signal, log)
  const interrupted = (await app.inject({ url: `/v1/ai/stagings/${after}`, headers: me.headers })).json() as StagingBody
  t.match(interrupted, { status: 'failed', error: { code: 'JOB_INTERRUPTED' } })
  t.match(interrupted.error?.message, /not charged/)
  const ran = (await app.inject({ url: `/v1/ai/stagings/${before}`, headers: me.headers })).json() as StagingBody
  t.equal(ran.status, 'completed')
  t.equal(fake.edits.length, 1, 'the interrupted one was not sent again')
  t.same(await quota(app, me.userId), [{ used: 1, reserved: 0 }], 'charged once, the interrupted one released')
  // A completed staging run again (a retry after its attempt had committed) changes nothing.
  await app.stagings.run(before, new AbortController().signal, log)
  t.equal((await ledger(app, me.userId)).length, 1, 'one ledger row whatever the retries')
  t.same(await app.stagings.run('stg_0000000000000000', new AbortController().signal, log), { skipped: 'deleted' })
})

t.test('live without OPENAI_API_KEY: a live submit is PROVIDER_NOT_CONFIGURED; one queued before the key was taken away fails so', async (t) => {
  const before = await build(t, { env: LIVE })
  await before.app.jobs.stop()
  const early = await userOn(before.app, 'pro', 'live')
  const queued = (await submit(before.app, early.headers)).json().id as string
  await before.app.close()
  const { app } = await build(t, { env: { PLANS_FILE } })
  t.match((await settled(app, early.headers, queued)).body, { status: 'failed', error: { code: 'PROVIDER_NOT_CONFIGURED' } })
  t.same(await quota(app, early.userId), [{ used: 0, reserved: 0 }])
  const live = await userOn(app, 'pro', 'live')
  const res = await submit(app, live.headers)
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'PROVIDER_NOT_CONFIGURED')
  t.same(await quota(app, live.userId), [])
})

t.test('quota: three concurrent submits past a quota of three are refused with QUOTA_EXCEEDED; a batch is all or none', async (t) => {
  const { app, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'three', 'test')
  const results = await Promise.all(Array.from({ length: 9 }, () => submit(app, me.headers)))
  t.same(results.map((r) => r.statusCode).sort(), [202, 202, 202, 402, 402, 402, 402, 402, 402])
  const other = await userOn(app, 'three', 'test')
  await submit(app, other.headers)
  const batch = await submitBatch(app, other.headers, [PHOTO, PHOTO, PHOTO])
  t.equal(batch.statusCode, 402)
  t.equal(batch.json().error.code, 'QUOTA_EXCEEDED')
  t.equal((await store.query('SELECT id FROM stagings WHERE user_id = $1', [other.userId])).rows.length, 1)
  const orphans = await store.query(`SELECT f.id FROM files f WHERE f.user_id = $1 AND f.kind = 'upload'
    AND NOT EXISTS (SELECT 1 FROM stagings s WHERE s.upload_file_id = f.id)`, [other.userId])
  t.same(orphans.rows, [], 'the refused batch left no upload behind')
})

t.test('a user\'s data: stagings exported (property name in clear, to its owner) and deleted with their files', async (t) => {
  const { app, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const id = (await submit(app, me.headers, { style: 'modern_luxury', propertyName: CANARY })).json().id as string
  await settled(app, me.headers, id)
  const exported = ((await app.inject({ url: '/v1/ai/me/data', headers: me.headers })).json() as { sections: { stagings: Array<{ id: string, propertyName: string, resultFileId: string }> } }).sections
  t.match(exported.stagings, [{ id, propertyName: CANARY, resultFileId: String }])
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers: me.headers })).statusCode, 200)
  t.same((await store.query('SELECT id FROM stagings WHERE user_id = $1', [me.userId])).rows, [])
  t.same((await store.query('SELECT id FROM files WHERE user_id = $1', [me.userId])).rows, [])
})

t.test('test mode: a portrait photo is a bedroom at 1024×1536, a square one 1024×1024', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const portrait = (await submit(app, me.headers, { style: 'scandinavian', qualityMode: 'standard' }, await roomPhoto(800, 1200))).json().id as string
  t.match((await settled(app, me.headers, portrait)).body, { status: 'completed', roomType: 'bedroom', result: { width: 1024, height: 1536 } })
  const square = (await submit(app, me.headers, { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' }, await roomPhoto(900, 900))).json().id as string
  t.match((await settled(app, me.headers, square)).body, { status: 'completed', result: { width: 1024, height: 1024 } })
})

t.test('test mode: a sandbox slower than STAGING_TIMEOUT_MS fails with PROVIDER_TIMEOUT', async (t) => {
  const slow = await build(t, { env: { PLANS_FILE, STAGING_TIMEOUT_MS: '100' } })
  const you = await userOn(slow.app, 'pro', 'test')
  const id = (await submit(slow.app, you.headers)).json().id as string
  t.match((await settled(slow.app, you.headers, id)).body, { status: 'failed', error: { code: 'PROVIDER_TIMEOUT' } })
})

t.test('multipart limits: too large, two photos, too many fields, a file in another field, a cut body, a property name past the field limit', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const code = (res: Awaited<ReturnType<typeof submit>>) => [res.statusCode, res.json().error.code, res.json().error.details?.fields?.[0]?.path]
  const huge = Buffer.concat([PHOTO.subarray(0, 3), Buffer.alloc(13 * 1024 * 1024, 7)])
  t.same(code(await submit(app, me.headers, { style: 'modern_luxury' }, huge)), [413, 'PAYLOAD_TOO_LARGE', undefined])
  const two = multipart([{ name: 'style', value: 'modern_luxury' }, { name: 'image', value: PHOTO, filename: 'a.jpg' }, { name: 'image', value: PHOTO, filename: 'b.jpg' }])
  const twoRes = await app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: { ...me.headers, 'content-type': two.contentType }, payload: two.payload })
  t.same(code(twoRes), [400, 'VALIDATION_ERROR', '/image'])
  t.match(twoRes.json().error.details.fields[0].message, /one image/)
  const many = multipart([...Array.from({ length: 6 }, () => ({ name: 'style', value: 'modern_luxury' })), { name: 'image', value: PHOTO, filename: 'a.jpg' }])
  t.same(code(await app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: { ...me.headers, 'content-type': many.contentType }, payload: many.payload })), [400, 'VALIDATION_ERROR', '/'])
  const other = multipart([{ name: 'style', value: 'modern_luxury' }, { name: 'photo', value: PHOTO, filename: 'a.jpg' }])
  t.same(code(await app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: { ...me.headers, 'content-type': other.contentType }, payload: other.payload })), [400, 'VALIDATION_ERROR', '/photo'])
  const whole = multipart([{ name: 'style', value: 'modern_luxury' }, { name: 'image', value: PHOTO, filename: 'a.jpg' }])
  const cut = await app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: { ...me.headers, 'content-type': whole.contentType }, payload: whole.payload.subarray(0, 200) })
  t.same(code(cut), [400, 'VALIDATION_ERROR', undefined])
  t.same(code(await submit(app, me.headers, { style: 'modern_luxury', propertyName: 'y'.repeat(1000) })), [400, 'VALIDATION_ERROR', '/propertyName'])
  t.same(code(await app.inject({ method: 'POST', url: '/v1/ai/stagings/batches', headers: me.headers, payload: { style: 'x' } })), [415, 'UNSUPPORTED_MEDIA_TYPE', undefined])
  t.same(await quota(app, me.userId), [])
})

t.test('batches honour Idempotency-Key; concurrent repeats make one staging; a failed insert gives everything back', async (t) => {
  const { app, store } = await build(t, { env: { PLANS_FILE } })
  const me = await userOn(app, 'pro', 'test')
  const body = multipart([{ name: 'style', value: 'scandinavian' }, { name: 'images', value: PHOTO, filename: 'a.jpg' }])
  const post = () => app.inject({ method: 'POST', url: '/v1/ai/stagings/batches', headers: { ...me.headers, 'idempotency-key': 'batch-1', 'content-type': body.contentType }, payload: body.payload })
  const first = await post()
  t.equal(first.statusCode, 202)
  const again = await post()
  t.equal(again.json().id, first.json().id)
  t.equal(again.headers['idempotent-replayed'], 'true')

  const concurrent = await Promise.all(Array.from({ length: 4 }, () => submit(app, me.headers, { style: 'scandinavian' }, PHOTO, { 'idempotency-key': 'same-photo' })))
  const accepted = concurrent.filter((r) => r.statusCode === 202)
  t.ok(accepted.length >= 1)
  t.equal(new Set(accepted.map((r) => r.json().id)).size, 1, 'every 202 names the one staging')
  t.ok(concurrent.every((r) => r.statusCode === 202 || r.json().error.code === 'CONFLICT'), 'the others are told to retry (CONFLICT)')

  // The store refusing the staging after its reservation: the quota and the upload are given back.
  const before = await quota(app, me.userId)
  const insert = app.stagings.insert
  const insertBatch = app.stagings.insertBatch
  let fault: Error = Object.assign(new Error('duplicate key value'), { code: '23505' })
  app.stagings.insert = async () => { throw fault }
  app.stagings.insertBatch = async () => { throw fault }
  t.teardown(() => { app.stagings.insert = insert; app.stagings.insertBatch = insertBatch })
  const raced = await submit(app, me.headers, { style: 'industrial_loft' }, PHOTO, { 'idempotency-key': 'raced' })
  t.equal(raced.statusCode, 409)
  t.match(raced.json().error.message, /being processed/)
  t.equal((await submitBatch(app, me.headers, [PHOTO, PHOTO])).statusCode, 409)
  fault = new Error('connection lost')
  t.equal((await submitBatch(app, me.headers, [PHOTO, PHOTO])).statusCode, 500)
  t.equal((await submit(app, me.headers)).statusCode, 500)
  t.same(await quota(app, me.userId), before, 'no quota kept by the failed submits')
  const orphans = await store.query(`SELECT f.id FROM files f WHERE f.user_id = $1 AND f.kind = 'upload'
    AND NOT EXISTS (SELECT 1 FROM stagings s WHERE s.upload_file_id = f.id)`, [me.userId])
  t.equal(orphans.rows.length, 0, 'no upload left behind without its staging')
})

t.test('live answers off the happy path: PNG in, no usage (estimated), output token details, vision answers that cannot be read, a non-image result', async (t) => {
  const fake = fakeOpenAI(t)
  const { app } = await build(t, { env: LIVE })
  const me = await userOn(app, 'pro', 'live')
  const png = await sharp(PHOTO).png().toBuffer()
  const pngB64 = (await sharp({ create: { width: 1536, height: 1024, channels: 3, background: '#806040' } }).png().toBuffer()).toString('base64')
  fake.load({ edits: [() => HttpResponse.json({ created: 1, data: [{ b64_json: pngB64 }] })], rooms: [() => HttpResponse.json({ ...visionAnswer({ isRoom: true, roomType: 'dining_room' }), usage: undefined })] })
  const noUsage = (await submit(app, me.headers, { style: 'scandinavian', qualityMode: 'standard' }, png)).json().id as string
  t.match((await settled(app, me.headers, noUsage)).body, { status: 'completed', roomType: 'dining_room' })
  t.equal((fake.edits[0]?.get('image') as File).name, 'room.png')
  const estimated = (await app.store.query<{ estimated: boolean, units_out: string }>('SELECT estimated, units_out FROM usage_ledger WHERE user_id = $1', [me.userId])).rows
  t.match(estimated, [{ estimated: true, units_out: String(8000 + 300) }], 'the bounds are charged when the answer has no usage')

  const detailed = { ...imagesAnswer(), usage: { ...imagesAnswer().usage, output_tokens: 6100, output_tokens_details: { text_tokens: 100, image_tokens: 6000 } } }
  fake.load({ edits: [() => HttpResponse.json(detailed)] })
  const split = (await submit(app, me.headers, { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' })).json().id as string
  t.equal((await settled(app, me.headers, split)).body.status, 'completed')

  const unreadable: Script[] = [
    { rooms: [() => HttpResponse.json(completion('not json at all'))] },
    { rooms: [() => HttpResponse.json(completion(JSON.stringify({ isRoom: 'yes', roomType: 'castle' })))] },
    { rooms: [() => HttpResponse.json(completion(JSON.stringify(null)))] },
    { rooms: [() => { const refused = completion(''); refused.choices[0]!.message = { ...refused.choices[0]!.message, content: null as never, refusal: 'I cannot help with that.' as never }; return HttpResponse.json(refused) }] },
    { rooms: [() => HttpResponse.json({ error: { message: 'The server had an error', type: 'server_error', param: null, code: null } }, { status: 500 })] },
    { edits: [() => HttpResponse.json({ created: 1, data: [{ b64_json: Buffer.from('not an image').toString('base64') }] })] }
  ]
  for (const script of unreadable) {
    fake.load(script)
    const id = (await submit(app, me.headers, { style: 'scandinavian', qualityMode: 'standard' })).json().id as string
    t.match((await settled(app, me.headers, id)).body, { status: 'failed', error: { code: 'PROVIDER_ERROR' } })
  }
  fake.load({ checks: [() => HttpResponse.json(completion(JSON.stringify({ architecturalIntegrity: true, qualityScore: 7 })))] })
  const badScore = (await submit(app, me.headers, { style: 'scandinavian', roomType: 'kitchen' })).json().id as string
  t.match((await settled(app, me.headers, badScore)).body, { status: 'failed', error: { code: 'PROVIDER_ERROR' } })
})

t.test('live, STAGING_MODEL=gpt-image-1-mini: no input_fidelity (the model takes only low), medium quality in standard mode', async (t) => {
  const fake = fakeOpenAI(t)
  const mini = await build(t, { env: { ...LIVE, STAGING_MODEL: 'gpt-image-1-mini' } })
  const you = await userOn(mini.app, 'pro', 'live')
  const id = (await submit(mini.app, you.headers, { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' })).json().id as string
  t.equal((await settled(mini.app, you.headers, id)).body.status, 'completed')
  t.equal(fake.edits[0]?.get('model'), 'gpt-image-1-mini')
  t.equal(fake.edits[0]?.get('input_fidelity'), null, 'the mini model takes no input_fidelity')
  t.equal(fake.edits[0]?.get('quality'), 'medium')
})

t.test('a slow edit: progress creeps forward while the model works; deleting the staging meanwhile keeps nothing but the ledger row', async (t) => {
  let release: () => void = () => {}
  const gate = () => new Promise<void>((resolve) => { release = resolve })
  const fake = fakeOpenAI(t)
  const { app, store } = await build(t, { env: LIVE })
  const me = await userOn(app, 'pro', 'live')
  const waitFor = async (id: string, check: (b: StagingBody) => boolean) => {
    for (;;) {
      const res = await app.inject({ url: `/v1/ai/stagings/${id}`, headers: me.headers })
      if (res.statusCode !== 200 || check(res.json() as StagingBody)) return
      await sleep(100)
    }
  }
  for (const answer of [() => HttpResponse.json(imagesAnswer()), () => HttpResponse.json({ error: { message: 'overloaded', type: 'server_error', param: null, code: null } }, { status: 500 })]) {
    let entered = false
    fake.load({ edits: [async () => { entered = true; await gate(); return answer() }] })
    const id = (await submit(app, me.headers, { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' })).json().id as string
    await waitFor(id, (b) => entered && b.progress > 0.26)
    t.ok(entered, 'the progress moved while the edit ran')
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${id}`, headers: me.headers })).statusCode, 204)
    release()
    for (let i = 0; i < 100; i++) {
      const { rows } = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM quota_usage WHERE user_id = $1 AND reserved > 0', [me.userId])
      if (rows[0]?.n === 0) break
      await sleep(100)
    }
  }
  t.same(await filesWhenDone(app, 'SELECT kind FROM files WHERE user_id = $1', [me.userId], ['upload', 'result']), [], 'no file kept for the deleted stagings')
  t.same((await ledger(app, me.userId)).map((r) => r.units), ['1'], 'the edit that answered is on the ledger; the failed one is not')
  t.same(await quota(app, me.userId), [{ used: 1, reserved: 0 }])
})

t.test('deleting a staging before its edit: the reservation and credits come back at once, the model is never called; a batch whose last open staging goes is complete', async (t) => {
  const fake = fakeOpenAI(t)
  const { app, store } = await build(t, { env: LIVE })
  const me = await userOn(app, 'billed', 'live')
  t.equal((await app.inject({ method: 'POST', url: '/v1/webhooks', headers: me.headers, payload: { url: 'http://127.0.0.1:9/hooks', events: ['batch.completed'] } })).statusCode, 201)
  const held = async () => (await store.query<{ reserved_micro_usd: string }>('SELECT reserved_micro_usd FROM credit_months WHERE user_id = $1', [me.userId])).rows.map((r) => Number(r.reserved_micro_usd))
  await app.jobs.stop()

  // Queued: no job will ever settle it, so the deletion gives everything back.
  const queued = (await submit(app, me.headers, { style: 'scandinavian', roomType: 'kitchen' })).json().id as string
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 1 }])
  t.ok((await held())[0] as number > 0, 'credits held at submit')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${queued}`, headers: me.headers })).statusCode, 204)
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }], 'the quota came back with the deletion')
  t.same(await held(), [0], 'so did the credits')
  t.same(await app.stagings.run(queued, new AbortController().signal, app.log), { skipped: 'deleted' })

  // Deleted just as its job starts: the job finds nothing to start.
  const starting = (await submit(app, me.headers, { style: 'scandinavian', roomType: 'kitchen' })).json().id as string
  const query = store.query.bind(store)
  store.query = (async (sql: string, params?: unknown[]) => {
    if (sql.includes('SET status = \'processing\'')) {
      store.query = query
      t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${starting}`, headers: me.headers })).statusCode, 204)
    }
    return query(sql, params)
  }) as typeof store.query
  t.same(await app.stagings.run(starting, new AbortController().signal, app.log), { skipped: 'deleted' })
  t.equal(store.query, query, 'the deletion ran between the read and the start')
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }])

  // Deleted while the room check runs (no roomType): the job stops before the image model.
  const running = (await submit(app, me.headers, { style: 'scandinavian' })).json().id as string
  fake.load({
    rooms: [async () => {
      t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${running}`, headers: me.headers })).statusCode, 204)
      return HttpResponse.json(visionAnswer({ isRoom: true, roomType: 'bedroom' }))
    }]
  })
  t.same(await app.stagings.run(running, new AbortController().signal, app.log), { status: 'deleted' })
  t.equal(fake.edits.length, 0, 'the image model was not called')
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }])
  t.same(await held(), [0])
  t.same(await ledger(app, me.userId), [], 'nothing charged')
  t.same((await store.query('SELECT id FROM files WHERE user_id = $1', [me.userId])).rows, [], 'no file kept')

  // A batch of two: one fails, the other is deleted while queued: the batch is complete.
  const batch = (await submitBatch(app, me.headers, [PHOTO, PHOTO])).json() as { id: string, stagings: Array<{ id: string }> }
  const [first, second] = batch.stagings.map((b) => b.id) as [string, string]
  fake.load({ rooms: [{ isRoom: false, roomType: 'outdoor' }] })
  await app.stagings.run(first, new AbortController().signal, app.log)
  t.match((await app.inject({ url: `/v1/ai/stagings/batches/${batch.id}`, headers: me.headers })).json(), { status: 'processing', completedAt: null })
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${second}`, headers: me.headers })).statusCode, 204)
  t.match((await app.inject({ url: `/v1/ai/stagings/batches/${batch.id}`, headers: me.headers })).json(), { status: 'completed', counts: { failed: 1, queued: 0 }, completedAt: String })
  const deliveries = (await store.query<{ payload: unknown }>('SELECT payload FROM webhook_deliveries WHERE user_id = $1 AND event_type = \'batch.completed\'', [me.userId])).rows
  t.match(deliveries.map((d) => typeof d.payload === 'string' ? JSON.parse(d.payload) as unknown : d.payload), [{ data: { batchId: batch.id, completed: 0, failed: 1 } }], 'batch.completed queued once')
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }], 'nothing stays reserved')
})

t.test('the job after faults: a shutdown mid-edit, a database fault after the edit, a style taken out, an upload gone, a result too large', async (t) => {
  const fake = fakeOpenAI(t)
  const { app, store } = await build(t, { env: LIVE })
  const me = await userOn(app, 'pro', 'live')
  await app.jobs.stop()
  const queued = async (fields: Record<string, string> = { style: 'scandinavian', qualityMode: 'standard', roomType: 'kitchen' }) => (await submit(app, me.headers, fields)).json().id as string
  const read = async (id: string) => (await app.inject({ url: `/v1/ai/stagings/${id}`, headers: me.headers })).json() as StagingBody
  const files = async (kind: string) => (await store.query('SELECT id FROM files WHERE user_id = $1 AND kind = $2', [me.userId, kind])).rows.length

  // The instance stops while the model works: the attempt ends without a verdict; the next one does not call it again.
  const stopping = new AbortController()
  fake.load({ edits: [async () => { stopping.abort(); await delay(200); return HttpResponse.json(imagesAnswer()) }] })
  const shut = await queued()
  await t.rejects(app.stagings.run(shut, stopping.signal, app.log))
  t.match(await read(shut), { status: 'processing' })
  await app.stagings.run(shut, new AbortController().signal, app.log)
  t.match(await read(shut), { status: 'failed', error: { code: 'JOB_INTERRUPTED' } })
  t.equal(fake.edits.length, 1)

  // The database fails while the staging is completed: the result is not kept, the attempt fails, the retry decides.
  fake.load({})
  const emit = app.webhooks.emit
  app.webhooks.emit = async () => { throw new Error('connection terminated') }
  const fault = await queued()
  await t.rejects(app.stagings.run(fault, new AbortController().signal, app.log), /connection terminated/)
  app.webhooks.emit = emit
  t.equal(await files('result'), 0, 'the saved result was deleted')
  await app.stagings.run(fault, new AbortController().signal, app.log)
  t.match(await read(fault), { status: 'failed', error: { code: 'JOB_INTERRUPTED' } })

  const gone = await queued()
  await store.query('UPDATE stagings SET style = \'retired_style\' WHERE id = $1', [gone])
  await app.stagings.run(gone, new AbortController().signal, app.log)
  t.match(await read(gone), { status: 'failed', error: { code: 'STYLE_UNAVAILABLE' } })

  const lost = await queued()
  const upload = (await store.query<{ upload_file_id: string }>('SELECT upload_file_id FROM stagings WHERE id = $1', [lost])).rows[0]?.upload_file_id as string
  await app.files.delete(upload, me.userId)
  await store.query('UPDATE stagings SET upload_file_id = NULL WHERE id = $1', [lost])
  await app.stagings.run(lost, new AbortController().signal, app.log)
  t.match(await read(lost), { status: 'failed', error: { code: 'STORAGE_UNAVAILABLE' } })

  const save = app.files.save
  app.files.save = async (input) => input.kind === 'result' ? Promise.reject(new AppError('PAYLOAD_TOO_LARGE', 'too large')) : save(input)
  const big = await queued()
  await app.stagings.run(big, new AbortController().signal, app.log)
  app.files.save = save
  t.match(await read(big), { status: 'failed', error: { code: 'PROVIDER_ERROR' } })

  // A failed staging whose upload could not be deleted then: the next attempt deletes it.
  const left = await queued()
  await store.query('UPDATE stagings SET status = \'failed\', error_code = \'PROVIDER_ERROR\' WHERE id = $1', [left])
  await app.stagings.run(left, new AbortController().signal, app.log)
  t.equal(await files('upload'), 0, 'no upload outlives its job')
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 1 }], 'only the staging marked failed by hand still holds its reservation')

  // A batch under way reads as processing.
  const batch = (await submitBatch(app, me.headers, [PHOTO, PHOTO])).json() as { id: string, stagings: Array<{ id: string }> }
  await store.query('UPDATE stagings SET status = \'processing\' WHERE id = $1', [batch.stagings[0]?.id])
  t.match((await app.inject({ url: `/v1/ai/stagings/batches/${batch.id}`, headers: me.headers })).json(), { status: 'processing', counts: { queued: 1, processing: 1 } })
})

t.test('startup: an image model without a price in the plans file is said in the log', async (t) => {
  const plans = join(mkdtempSync(join(tmpdir(), 'staging-noprice-')), 'plans.json')
  writeFileSync(plans, JSON.stringify({ plans: { pro: { name: 'Pro', features: staging(10) } } }))
  const { logs } = await build(t, { env: { PLANS_FILE: plans, OPENAI_API_KEY: OPENAI_KEY } })
  t.equal(logs.find('STAGING_MODEL has no openai/<model> entry in the plans file\'s prices: stagings are recorded at cost 0').length, 1)
})
