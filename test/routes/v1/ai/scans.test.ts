import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { delay, http, HttpResponse } from 'msw'
import t from 'tap'
import { build, dumpAllTables, mint, multipart, userWithKey } from '../../../helper.js'
import { docx, encryptedPdf, imageOnlyPdf, pdf, zipBomb } from '../../../fixtures/documents.js'
import { interceptNetwork } from '../../../network.js'
import { completion } from '../../../openai-fake.js'

const AI_SERVICE = 'http://risk-ai.internal:8000'
const CHAT_URL = 'https://api.openai.com/v1/chat/completions'
const OPENAI_KEY = 'sk-canary-scan-key-31c7'
const CANARY_TEXT = 'CANARY-TEXT-5R2W'
const CANARY_NAME = 'CANARY-NAME-8K1P'
const CANARY_RISK = 'CANARY-RISK-4M9T'

const PLANS_FILE = join(mkdtempSync(join(tmpdir(), 'scan-plans-')), 'plans.json')
const scans = (limit: number) => ({ 'risk-scan': { quota: { limit, period: 'month' }, rateLimitPerMinute: 1000 } })
writeFileSync(PLANS_FILE, JSON.stringify({
  plans: {
    pro: { name: 'Pro', features: scans(100), rateLimitPerMinute: 100_000 },
    two: { name: 'Two', features: scans(2), rateLimitPerMinute: 100_000 },
    billed: { name: 'Billed', features: scans(100), credits: { monthlyFreeCents: 500, markupPercent: 40 }, rateLimitPerMinute: 100_000 },
    none: { name: 'None', features: { chat: { quota: { limit: 1000, period: 'month' }, rateLimitPerMinute: 100 } } }
  },
  prices: {
    sandbox: { perCall: 0 },
    aiservice: { perCall: 2000 },
    'openai/gpt-4o-mini': { perInputUnit: 0.15, perOutputUnit: 0.6 }
  }
}))
const SERVICE_ONLY = { PLANS_FILE, AI_SERVICE_URL: AI_SERVICE, SCAN_PROVIDERS: 'aiservice' }
const LLM_ONLY = { PLANS_FILE, OPENAI_API_KEY: OPENAI_KEY, SCAN_PROVIDERS: 'llm' }
const BOTH = { PLANS_FILE, AI_SERVICE_URL: AI_SERVICE, OPENAI_API_KEY: OPENAI_KEY }

async function tokenFor (app: FastifyInstance, mode: 'live' | 'test' = 'live', plan = 'pro') {
  const { userId, key } = await userWithKey(app, { plan, mode })
  return { userId, token: (await mint(app, key)).token }
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` })

function upload (app: FastifyInstance, token: string, file: Buffer, filename = 'plan.pdf', fields: Record<string, string> = {}) {
  const body = multipart([...Object.entries(fields).map(([name, value]) => ({ name, value })), { name: 'file', value: file, filename, type: 'application/octet-stream' }])
  return app.inject({ method: 'POST', url: '/v1/ai/scans', headers: { ...auth(token), 'content-type': body.contentType }, payload: body.payload })
}

const scanText = (app: FastifyInstance, token: string, payload: unknown) =>
  app.inject({ method: 'POST', url: '/v1/ai/scans', headers: auth(token), payload: payload as Record<string, unknown> })

async function quota (app: FastifyInstance, userId: string) {
  const { rows } = await app.store.query<{ used: string, reserved: string }>('SELECT used, reserved FROM quota_usage WHERE user_id = $1', [userId])
  return rows.map((r) => ({ used: Number(r.used), reserved: Number(r.reserved) }))
}

async function ledger (app: FastifyInstance, userId: string) {
  const { rows } = await app.store.query<{ provider: string, model: string | null, units: string, units_in: string, units_out: string, cost_micro_usd: string, charged_micro_usd: string }>(
    'SELECT provider, model, units, units_in, units_out, cost_micro_usd, charged_micro_usd FROM usage_ledger WHERE user_id = $1 ORDER BY at', [userId])
  return rows.map((r) => ({ provider: r.provider, model: r.model, units: Number(r.units), in: Number(r.units_in), out: Number(r.units_out), cost: Number(r.cost_micro_usd), charged: Number(r.charged_micro_usd) }))
}

const PLAN_PAGES = ['Project Falcon: wind farm extension.', 'Delivery of the turbines may slip by a month.\nThe budget has no contingency.']

t.test('test mode: a PDF, a DOCX and text are scanned in the sandbox, kept, listed newest first, read and deleted; another user gets 404', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const me = await tokenFor(app, 'test')
  const other = await tokenFor(app, 'test')

  const fromPdf = await upload(app, me.token, await pdf(PLAN_PAGES), 'C:\\Users\\me\\Falcon plan.pdf')
  t.equal(fromPdf.statusCode, 201, fromPdf.body)
  t.equal(fromPdf.headers['ai-provider'], 'sandbox')
  t.equal(fromPdf.headers['x-quota-remaining'], '99')
  const scan = fromPdf.json()
  t.equal(fromPdf.headers.location, `/v1/ai/scans/${scan.id}`)
  t.match(scan, { id: /^scn_[0-9A-Za-z]{16}$/, filename: 'Falcon plan.pdf', source: 'model' })
  t.same(scan.data.map((r: { category: string }) => r.category), ['schedule', 'cost'], 'each risk sentence found, in order')
  t.equal(scan.data[0].context, 'Delivery of the turbines may slip by a month.', 'the context quotes the document')

  const fromDocx = await upload(app, me.token, await docx(['Only one supplier makes the blades: a shortage would stop the site.']), 'plan.docx')
  t.equal(fromDocx.statusCode, 201, fromDocx.body)
  t.same(fromDocx.json().data.map((r: { category: string }) => r.category), ['resources'])

  const fromText = await scanText(app, me.token, { text: 'The contract has a penalty clause for late completion.' })
  t.equal(fromText.statusCode, 201, fromText.body)
  t.equal(fromText.json().filename, null)

  const page1 = await app.inject({ url: '/v1/ai/scans?limit=2', headers: auth(me.token) })
  t.same(page1.json().data.map((s: { id: string }) => s.id), [fromText.json().id, fromDocx.json().id], 'newest first')
  const page2 = await app.inject({ url: `/v1/ai/scans?limit=2&cursor=${page1.json().nextCursor as string}`, headers: auth(me.token) })
  t.same(page2.json(), { data: [scan], nextCursor: null }, 'the last page holds the first scan, as it was answered')
  t.equal((await app.inject({ url: '/v1/ai/scans?cursor=bm9wZQ', headers: auth(me.token) })).statusCode, 400, 'a cursor not of this list')

  t.same((await app.inject({ url: `/v1/ai/scans/${scan.id as string}`, headers: auth(me.token) })).json(), scan)
  for (const request of [{ url: `/v1/ai/scans/${scan.id as string}` }, { method: 'DELETE' as const, url: `/v1/ai/scans/${scan.id as string}` }]) {
    const res = await app.inject({ ...request, headers: auth(other.token) })
    t.equal(res.statusCode, 404, `${request.method ?? 'GET'} of another user's scan`)
    t.equal(res.json().error.code, 'NOT_FOUND')
  }
  t.same((await app.inject({ url: '/v1/ai/scans', headers: auth(other.token) })).json(), { data: [], nextCursor: null })

  t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/scans/${scan.id as string}`, headers: auth(me.token) })).statusCode, 204)
  t.equal((await app.inject({ url: `/v1/ai/scans/${scan.id as string}`, headers: auth(me.token) })).statusCode, 404, 'gone')
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/ai/scans/${scan.id as string}`, headers: auth(me.token) })).statusCode, 404, 'a second delete')

  t.same(await quota(app, me.userId), [{ used: 3, reserved: 0 }], 'one scan of quota per scan')
  t.same((await ledger(app, me.userId)).map((l) => [l.provider, l.units, l.cost]), [['sandbox', 1, 0], ['sandbox', 1, 0], ['sandbox', 1, 0]])
})

t.test('bad input: a clear error each, nothing charged', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const me = await tokenFor(app, 'test')
  const code = async (res: Promise<{ statusCode: number, json: () => { error: { code: string, details?: Record<string, unknown> } } }>) => {
    const r = await res
    const error = r.json().error
    return [r.statusCode, error.code, error.details?.reason ?? (error.details?.fields as Array<{ path: string }> | undefined)?.[0]?.path]
  }
  const fields = (parts: Array<{ name: string, value: Buffer | string, filename?: string }>) => {
    const body = multipart(parts)
    return app.inject({ method: 'POST', url: '/v1/ai/scans', headers: { ...auth(me.token), 'content-type': body.contentType }, payload: body.payload })
  }
  t.same(await code(upload(app, me.token, await encryptedPdf('locked'), 'x.pdf')), [422, 'UNPROCESSABLE_DOCUMENT', 'encrypted'])
  t.same(await code(upload(app, me.token, await imageOnlyPdf(), 'scan.pdf')), [422, 'UNPROCESSABLE_DOCUMENT', 'no-text'])
  t.same(await code(upload(app, me.token, await pdf(Array.from({ length: 201 }, (_, i) => `Page ${i + 1}`)), 'long.pdf')), [422, 'UNPROCESSABLE_DOCUMENT', 'too-many-pages'])
  t.same(await code(upload(app, me.token, await zipBomb(), 'bomb.docx')), [422, 'UNPROCESSABLE_DOCUMENT', 'zip-bomb'])
  t.same(await code(upload(app, me.token, Buffer.from('%PDF-1.4\ngarbage'), 'x.pdf')), [422, 'UNPROCESSABLE_DOCUMENT', 'broken'])
  t.same(await code(upload(app, me.token, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0]), 'x.png')), [415, 'UNSUPPORTED_MEDIA_TYPE', undefined])
  const tooBig = Buffer.alloc(10 * 1024 * 1024 + 1, 'a')
  t.same(await code(upload(app, me.token, tooBig, 'big.txt')), [413, 'PAYLOAD_TOO_LARGE', undefined], '10 MB + 1 byte')
  t.same(await code(fields([{ name: 'file', value: 'a risk', filename: 'a.txt' }, { name: 'text', value: 'and text' }])), [400, 'VALIDATION_ERROR', '/'], 'both')
  t.same(await code(fields([{ name: 'forceLlm', value: 'true' }])), [400, 'VALIDATION_ERROR', '/file'], 'neither')
  t.same(await code(fields([{ name: 'text', value: 'x' }, { name: 'forceLlm', value: 'yes' }])), [400, 'VALIDATION_ERROR', '/forceLlm'], 'a flag that is not a boolean')
  t.same(await code(fields([{ name: 'document', value: 'x', filename: 'a.txt' }])), [400, 'VALIDATION_ERROR', '/document'], 'another file field')
  t.same(await code(fields([{ name: 'title', value: 'x' }])), [400, 'VALIDATION_ERROR', '/title'], 'a field not of the request')
  t.same(await code(fields([{ name: 'text', value: 'x'.repeat(100_001) }])), [400, 'VALIDATION_ERROR', '/text'], '100,001 characters in a form')
  t.same(await code(fields([{ name: 'text', value: 'x'.repeat(400_001) }])), [400, 'VALIDATION_ERROR', '/text'], 'a form field past its byte limit')
  t.same(await code(fields([{ name: 'file', value: 'a', filename: 'a.txt' }, { name: 'file', value: 'b', filename: 'b.txt' }])), [400, 'VALIDATION_ERROR', '/file'], 'two files')
  t.same(await code(fields([{ name: 'text', value: 'a' }, { name: 'forceLlm', value: 'true' }, { name: 'forceLlm', value: 'false' }])), [400, 'VALIDATION_ERROR', '/'], 'too many fields')
  const unnamed = await fields([{ name: 'file', value: 'The crane may be late.', filename: '' }])
  t.equal(unnamed.statusCode, 201, unnamed.body)
  t.equal(unnamed.json().filename, null, 'a file without a name')
  const odd = await fields([{ name: 'file', value: 'The crane may be late.', filename: '../../etc/pa\u0007ss wd.md' }])
  t.equal(odd.json().filename, 'pass wd.md', 'the last segment, control characters removed')
  t.equal((await fields([{ name: 'text', value: 'é'.repeat(100_000) }])).statusCode, 201, '100,000 characters of two bytes each')
  t.same(await code(scanText(app, me.token, { text: 'x'.repeat(100_001) })), [400, 'VALIDATION_ERROR', '/text'], '100,001 characters in JSON')
  t.same(await code(scanText(app, me.token, { text: '   \n ' })), [400, 'VALIDATION_ERROR', '/text'], 'blank text')
  t.same(await code(scanText(app, me.token, { text: 42 })), [400, 'VALIDATION_ERROR', '/text'], 'text of the wrong type')
  t.same(await code(scanText(app, me.token, {})), [400, 'VALIDATION_ERROR', '/text'], 'an empty body')
  t.same(await code(app.inject({ method: 'POST', url: '/v1/ai/scans', headers: { ...auth(me.token), 'content-type': 'text/plain' }, payload: 'x' })), [415, 'UNSUPPORTED_MEDIA_TYPE', undefined])
  const truncated = multipart([{ name: 'file', value: await pdf(['x']), filename: 'a.pdf' }])
  t.same(await code(app.inject({ method: 'POST', url: '/v1/ai/scans', headers: { ...auth(me.token), 'content-type': truncated.contentType }, payload: truncated.payload.subarray(0, 200) })), [400, 'VALIDATION_ERROR', undefined], 'a body cut short')
  t.same(await quota(app, me.userId), [{ used: 3, reserved: 0 }], 'only the scans that were made are counted')
  t.equal((await app.inject({ url: '/health/live' })).statusCode, 200, 'the service still serves')
})

t.test('a document being read does not hold up the service: the health check answers first', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const me = await tokenFor(app, 'test')
  const heavy = await pdf(Array.from({ length: 200 }, (_, p) => Array.from({ length: 25 }, (_, l) => `Page ${p} line ${l}: the schedule may slip if the crane is late.`).join('\n')))
  const order: string[] = []
  const scan = upload(app, me.token, heavy, 'heavy.pdf').then((res) => { order.push('scan'); return res })
  // Health checks while the worker reads (each awaited: the main thread is free between them).
  while (order.length === 0) {
    const res = await app.inject({ url: '/health/live' })
    if (res.statusCode === 200 && !order.includes('health')) order.push('health')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.equal((await scan).statusCode, 201)
  t.same(order, ['health', 'scan'])
})

t.test('a document that takes too long to read is refused as too complex', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE, SCAN_EXTRACT_TIMEOUT_MS: '100' } })
  const me = await tokenFor(app, 'test')
  const res = await upload(app, me.token, await pdf(Array.from({ length: 200 }, (_, p) => `Page ${p}: the budget may overrun.`)), 'slow.pdf')
  t.equal(res.statusCode, 422)
  t.match(res.json().error, { code: 'UNPROCESSABLE_DOCUMENT', details: { reason: 'too-complex' } })
  t.same(await quota(app, me.userId), [], 'nothing reserved')
})

t.test('the risk AI service: the documented multipart request, its list kept; canaries nowhere in logs or tables', async (t) => {
  const received: Array<{ file: Buffer | null, name: string | null, type: string | null, text: string | null, forceLlm: string | null }> = []
  interceptNetwork(t, http.post(`${AI_SERVICE}/scan`, async ({ request }) => {
    const form = await request.formData()
    const file = form.get('file') as File | null
    received.push({ file: file === null ? null : Buffer.from(await file.arrayBuffer()), name: file?.name ?? null, type: file?.type ?? null, text: form.get('text') as string | null, forceLlm: form.get('force_llm') as string | null })
    return HttpResponse.json({ data: [{ risk: `Turbine delivery may slip ${CANARY_RISK}`, category: 'Schedule', context: 'Delivery of the turbines may slip.' }, { risk: `turbine delivery may slip ${CANARY_RISK}!`, category: 'schedule', context: 'dup' }], source: 'llm' })
  }))
  const { app, logs, store } = await build(t, { env: SERVICE_ONLY })
  const me = await tokenFor(app)
  const document = await pdf([`Delivery of the turbines may slip. ${CANARY_TEXT}`], { title: 'Secret title' })
  const res = await upload(app, me.token, document, `${CANARY_NAME}.pdf`, { forceLlm: 'true' })
  t.equal(res.statusCode, 201, res.body)
  t.equal(res.headers['ai-provider'], 'aiservice')
  t.equal(res.headers['ai-cost-micro-usd'], '2000')
  t.match(res.json(), { filename: `${CANARY_NAME}.pdf`, source: 'llm', data: [{ risk: `Turbine delivery may slip ${CANARY_RISK}`, category: 'schedule' }] })
  t.equal(res.json().data.length, 1, 'a duplicate in the answer is merged')
  t.same(received.map((r) => ({ ...r, file: r.file?.equals(document) })), [{ file: true, name: 'document.pdf', type: 'application/pdf', text: null, forceLlm: 'true' }],
    'the document as uploaded, under a generic name, and force_llm')

  const text = await scanText(app, me.token, { text: `The permit is pending. ${CANARY_TEXT}` })
  t.equal(text.statusCode, 201)
  t.match(received[1], { file: null, text: `The permit is pending. ${CANARY_TEXT}`, forceLlm: 'false' })

  t.same((await ledger(app, me.userId)).map((l) => [l.provider, l.model, l.units, l.cost]), [['aiservice', null, 1, 2000], ['aiservice', null, 1, 2000]])
  const exported = await app.inject({ url: '/v1/ai/me/data', headers: auth(me.token) })
  t.match(exported.json().sections.scans, [{ filename: `${CANARY_NAME}.pdf`, data: [{ risk: `Turbine delivery may slip ${CANARY_RISK}` }] }, { filename: null }], 'in the export, readable')

  const dump = await dumpAllTables(store)
  for (const canary of [CANARY_TEXT, CANARY_NAME, CANARY_RISK, 'turbine']) t.notOk(dump.toLowerCase().includes(canary.toLowerCase()), `no plaintext ${canary} in any table`)
  for (const canary of [CANARY_TEXT, CANARY_NAME, CANARY_RISK, 'turbine', 'permit']) t.notOk(logs.text.toLowerCase().includes(canary.toLowerCase()), `no ${canary} in the logs`)
  t.match(logs.text, /document read/, 'the logs say what happened, in figures')

  const erased = await app.inject({ method: 'DELETE', url: '/v1/ai/me/data', headers: auth(me.token) })
  t.equal(erased.statusCode, 200, erased.body)
  t.same((await app.inject({ url: '/v1/ai/scans', headers: auth(me.token) })).json().data, [], 'deleted with the user\'s data')
})

t.test('the risk AI service failing: its errors, a timeout and a refused connection in the contract\'s codes; its body never passed on; no quota used', async (t) => {
  const answers: Array<() => Response | Promise<Response>> = [
    () => HttpResponse.json({ detail: [{ loc: ['body', 'file'], msg: `bad ${CANARY_TEXT}`, type: 'value_error' }] }, { status: 422 }),
    () => HttpResponse.json({ detail: `Internal ${CANARY_TEXT}` }, { status: 500 }),
    () => HttpResponse.json({ data: 'not a list', source: 'llm' }),
    () => new HttpResponse('<html>proxy error</html>', { headers: { 'content-type': 'text/html' } }),
    async () => { await delay(2000); return HttpResponse.json({ data: [], source: 'model' }) },
    () => HttpResponse.json({ detail: 'busy' }, { status: 503, headers: { 'retry-after': '120' } })
  ]
  let next = 0
  interceptNetwork(t, http.post(`${AI_SERVICE}/scan`, async () => (answers[next] as () => Response)()))
  const { app, logs } = await build(t, { env: { ...SERVICE_ONLY, AI_SERVICE_TIMEOUT_MS: '300' } })
  const me = await tokenFor(app)
  const expect = [[502, 'PROVIDER_ERROR'], [502, 'PROVIDER_ERROR'], [502, 'PROVIDER_ERROR'], [502, 'PROVIDER_ERROR'], [504, 'PROVIDER_TIMEOUT'], [503, 'PROVIDER_UNAVAILABLE']]
  for (const [i, [status, errorCode]] of expect.entries()) {
    next = i
    const res = await scanText(app, me.token, { text: `The budget may overrun. ${CANARY_TEXT}` })
    t.equal(res.statusCode, status, `answer ${i}: ${res.body}`)
    t.equal(res.json().error.code, errorCode)
    t.notOk(res.body.includes(CANARY_TEXT) || res.body.includes('detail'), 'nothing of the service\'s body')
  }
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }], 'no quota used, none held')
  t.same(await ledger(app, me.userId), [])
  t.notOk(logs.text.includes(CANARY_TEXT), 'no canary in the logs')
})

t.test('the risk AI service refusing connections: 503, and the LLM scanner takes over when it is listed after it', async (t) => {
  // A port that was just free: nothing listens on it.
  const port = await new Promise<number>((resolve) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) }) })
  const refused = `http://127.0.0.1:${port}`
  const alone = await build(t, { env: { PLANS_FILE, AI_SERVICE_URL: refused, SCAN_PROVIDERS: 'aiservice' } })
  const me = await tokenFor(alone.app)
  const res = await scanText(alone.app, me.token, { text: 'The budget may overrun.' })
  t.equal(res.statusCode, 503, res.body)
  t.equal(res.json().error.code, 'PROVIDER_UNAVAILABLE')

  interceptNetwork(t, http.post(CHAT_URL, () => HttpResponse.json(completion(JSON.stringify({ risks: [{ risk: 'Cost overrun', category: 'cost', context: 'The budget may overrun.' }] })))))
  const chained = await build(t, { env: { ...BOTH, AI_SERVICE_URL: refused } })
  const you = await tokenFor(chained.app)
  const fallback = await scanText(chained.app, you.token, { text: 'The budget may overrun.' })
  t.equal(fallback.statusCode, 201, fallback.body)
  t.equal(fallback.headers['ai-provider'], 'openai')
  t.match(fallback.json(), { source: 'llm', data: [{ risk: 'Cost overrun', category: 'cost' }] })
})

t.test('the LLM scanner: structured output, only the extracted text, long documents in parts merged without duplicates, tokens charged', async (t) => {
  const bodies: Array<Record<string, unknown>> = []
  interceptNetwork(t, http.post(CHAT_URL, async ({ request }) => {
    const body = await request.json() as { messages: Array<{ content: string }> }
    bodies.push(body)
    t.equal(request.headers.get('authorization'), `Bearer ${OPENAI_KEY}`)
    const part = body.messages[1]?.content ?? ''
    const risks = [{ risk: 'Supplier delay', category: 'schedule', context: part.slice(0, 40) }]
    if (part.includes('PART-TWO')) risks.push({ risk: 'Budget overrun', category: 'cost', context: 'PART-TWO' })
    return HttpResponse.json(completion(JSON.stringify({ risks }), [], { prompt_tokens: 12_000, completion_tokens: 300 }))
  }))
  const { app, logs, store } = await build(t, { env: LLM_ONLY })
  const me = await tokenFor(app, 'live', 'billed')
  const paragraph = `The supplier may deliver late. ${CANARY_TEXT} `.repeat(40)
  const long = Array.from({ length: 30 }, () => paragraph).join('\n\n') + '\n\nPART-TWO the budget.'
  const res = await upload(app, me.token, await docx(long.split('\n\n')), `${CANARY_NAME}.docx`)
  t.equal(res.statusCode, 201, res.body)
  t.equal(bodies.length, 2, 'two parts of at most 48,000 characters')
  t.same(res.json().data.map((r: { risk: string }) => r.risk), ['Supplier delay', 'Budget overrun'], 'merged, the duplicate once')
  for (const body of bodies) {
    t.match(body, { model: 'gpt-4o-mini', store: false, max_completion_tokens: 4000, response_format: { type: 'json_schema', json_schema: { name: 'risk_list', strict: true } } })
    t.match(body.safety_identifier, /^[0-9a-f]{64}$/, 'a keyed hash of the user id')
    const text = JSON.stringify(body)
    t.notOk(text.includes(CANARY_NAME) || text.includes(me.userId) || text.includes('PK'), 'no file name, user id or file bytes')
    t.ok(((body.messages as Array<{ content: string }>)[1]?.content.length ?? 0) <= 48_000)
  }
  const [row] = await ledger(app, me.userId)
  t.same(row, { provider: 'openai', model: 'gpt-4o-mini', units: 1, in: 24_000, out: 600, cost: 3960, charged: 5544 }, 'tokens of both calls at list price, billed with the markup')
  t.equal(res.headers['ai-cost-micro-usd'], '5544')
  const held = await app.store.query<{ reserved_micro_usd: string }>('SELECT reserved_micro_usd FROM credit_months WHERE user_id = $1', [me.userId])
  t.same(held.rows.map((r) => Number(r.reserved_micro_usd)), [0], 'no credits stay held')
  t.notOk((await dumpAllTables(store)).includes(CANARY_TEXT))
  t.notOk(logs.text.includes(CANARY_TEXT) || logs.text.includes(CANARY_NAME))
})

t.test('the LLM scanner\'s answer cut off, or not the schema: 502, nothing charged', async (t) => {
  const answers = [
    () => HttpResponse.json({ ...completion('{"risks": [{"risk": "a'), choices: [{ index: 0, message: { role: 'assistant', content: '{"risks": [', refusal: null }, logprobs: null, finish_reason: 'length' }] }),
    () => HttpResponse.json(completion(JSON.stringify({ items: [] }))),
    () => HttpResponse.json({ ...completion(''), choices: [{ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' }] })
  ]
  let next = 0
  interceptNetwork(t, http.post(CHAT_URL, () => (answers[next] as () => Response)()))
  const { app } = await build(t, { env: LLM_ONLY })
  const me = await tokenFor(app)
  for (let i = 0; i < answers.length; i++) {
    next = i
    const res = await scanText(app, me.token, { text: 'The supplier may deliver late.' })
    t.equal(res.statusCode, 502, res.body)
    t.equal(res.json().error.code, 'PROVIDER_ERROR')
  }
  t.same(await quota(app, me.userId), [{ used: 0, reserved: 0 }])
})

t.test('entitlement, quota and configuration', async (t) => {
  const none = await build(t, { env: { PLANS_FILE } })
  const { key } = await userWithKey(none.app, { plan: 'none', mode: 'test' })
  const minted = await none.app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: auth(key), payload: { features: ['risk-scan'] } })
  t.equal(minted.statusCode, 403, 'a plan without risk scans cannot mint for them')
  const chatOnly = (await mint(none.app, key)).token
  t.equal((await scanText(none.app, chatOnly, { text: 'x' })).json().error.code, 'NOT_ENTITLED')

  const two = await tokenFor(none.app, 'test', 'two')
  for (let i = 0; i < 2; i++) t.equal((await scanText(none.app, two.token, { text: 'The budget may overrun.' })).statusCode, 201)
  const over = await scanText(none.app, two.token, { text: 'The budget may overrun.' })
  t.equal(over.statusCode, 402)
  t.equal(over.json().error.code, 'QUOTA_EXCEEDED')

  const live = await tokenFor(none.app, 'live')
  const unset = await scanText(none.app, live.token, { text: 'x' })
  t.equal(unset.statusCode, 503)
  t.equal(unset.json().error.code, 'PROVIDER_NOT_CONFIGURED')

  const manifest = (await none.app.inject({ url: '/v1/ai/features', headers: auth(live.token) })).json()
  t.match(manifest.features.find((f: { id: string }) => f.id === 'risk-scan'), {
    unit: 'scans', providers: [{ id: 'aiservice', mode: 'live', configured: false }, { id: 'openai', mode: 'live', configured: false }, { id: 'sandbox', mode: 'test' }]
  })
})

t.test('a scan that cannot be saved: 503 STORAGE_UNAVAILABLE, and the charge is still recorded (the provider was paid)', async (t) => {
  interceptNetwork(t, http.post(`${AI_SERVICE}/scan`, () => HttpResponse.json({ data: [], source: 'model' })))
  const { app } = await build(t, { env: SERVICE_ONLY })
  const me = await tokenFor(app)
  await app.store.exec('ALTER TABLE risk_scans RENAME TO risk_scans_away')
  t.teardown(() => app.store.exec('ALTER TABLE risk_scans_away RENAME TO risk_scans'))
  const res = await scanText(app, me.token, { text: 'The budget may overrun.' })
  t.equal(res.statusCode, 503, res.body)
  t.equal(res.json().error.code, 'STORAGE_UNAVAILABLE')
  t.same((await ledger(app, me.userId)).map((l) => [l.provider, l.units, l.cost]), [['aiservice', 1, 2000]])
  t.same(await quota(app, me.userId), [{ used: 1, reserved: 0 }])
})
