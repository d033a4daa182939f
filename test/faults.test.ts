import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import sharp from 'sharp'
import t from 'tap'
import { createFakeUpstream, type Fault } from './fake-upstream.js'
import { build, mint, multipart, userWithKey } from './helper.js'

/**
 * The fault matrix over real HTTP: both features against a fake upstream on loopback that fails on demand (no
 * msw here: the service's own HTTP clients meet real sockets). For each fault: the documented error code, no
 * crash, quota and ledger consistent (reservation released, or settled from what was generated), and the
 * user's question in no log line.
 */
const CANARY = 'CANARY-QUESTION-ab12cd34'
const upstream = createFakeUpstream().listen(0, '127.0.0.1')
await once(upstream, 'listening')
t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
const UP = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`
const inject = (fault: Fault | null, times = 100) => fetch(`${UP}/_control`, { method: 'POST', body: JSON.stringify({ fault, faultTimes: times }) })

/** Short provider time limits, so that stalls end quickly. */
const ENV = {
  OPENAI_API_KEY: 'sk-faults-test',
  OPENAI_BASE_URL: `${UP}/v1`,
  OPENAI_TIMEOUT_MS: '1500',
  REMOVEBG_API_KEY: 'faults-removebg-key',
  REMOVEBG_BASE_URL: UP,
  BG_REMOVAL_TIMEOUT_MS: '1500'
}

const image = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#ffffff' } }).png().toBuffer()

async function state (app: FastifyInstance, userId: string) {
  const counters = await app.store.query<{ feature: string, used: string, reserved: string }>('SELECT feature, used, reserved FROM quota_usage WHERE user_id = $1', [userId])
  const ledger = await app.store.query<{ feature: string, estimated: boolean }>('SELECT feature, estimated FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])
  return {
    reserved: counters.rows.reduce((sum, r) => sum + Number(r.reserved), 0),
    used: Object.fromEntries(counters.rows.map((r) => [r.feature, Number(r.used)])),
    ledger: ledger.rows
  }
}

function upload (app: FastifyInstance, token: string) {
  const body = multipart([{ name: 'image', value: image, filename: 'a.png', type: 'image/png' }])
  return app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': body.contentType }, payload: body.payload })
}

const ask = (app: FastifyInstance, token: string, stream: boolean) => app.inject({
  method: 'POST',
  url: '/v1/ai/settings-assistant/messages',
  headers: { authorization: `Bearer ${token}`, ...(stream ? { accept: 'text/event-stream' } : {}) },
  payload: { message: `How do I make my exports sharper? ${CANARY}` }
})

interface Case { name: string, fault: Fault | null, times?: number, json: string, sse: string, image: string, env?: Record<string, string> }

/**
 * What each fault becomes: an error code for a JSON answer (or 200), and for a stream either an error code
 * before it starts or `event:CODE`, the stream's closing error event.
 */
const CASES: Case[] = [
  { name: 'connection refused', fault: null, env: { OPENAI_BASE_URL: 'http://127.0.0.1:1/v1', REMOVEBG_BASE_URL: 'http://127.0.0.1:1' }, json: 'PROVIDER_UNAVAILABLE', sse: 'PROVIDER_UNAVAILABLE', image: 'PROVIDER_UNAVAILABLE' },
  { name: 'no first byte', fault: { kind: 'no-first-byte' }, json: 'PROVIDER_TIMEOUT', sse: 'PROVIDER_TIMEOUT', image: 'PROVIDER_TIMEOUT' },
  { name: 'stall mid-body / mid-stream', fault: { kind: 'stall' }, json: 'PROVIDER_TIMEOUT', sse: 'event:PROVIDER_TIMEOUT', image: 'PROVIDER_TIMEOUT' },
  { name: 'connection reset mid-body / mid-stream', fault: { kind: 'reset' }, json: 'PROVIDER_ERROR', sse: 'event:PROVIDER_ERROR', image: 'PROVIDER_UNAVAILABLE' },
  { name: '429 with Retry-After, every time', fault: { kind: 'status', status: 429, retryAfter: '0' }, json: 'PROVIDER_UNAVAILABLE', sse: 'PROVIDER_UNAVAILABLE', image: 'PROVIDER_UNAVAILABLE' },
  { name: '429 without Retry-After, once', fault: { kind: 'status', status: 429 }, times: 1, json: '200', sse: '200', image: '200' },
  { name: '500', fault: { kind: 'status', status: 500 }, json: 'PROVIDER_ERROR', sse: 'PROVIDER_ERROR', image: 'PROVIDER_ERROR' },
  { name: '502', fault: { kind: 'status', status: 502 }, json: 'PROVIDER_ERROR', sse: 'PROVIDER_ERROR', image: 'PROVIDER_ERROR' },
  { name: '503', fault: { kind: 'status', status: 503 }, json: 'PROVIDER_ERROR', sse: 'PROVIDER_ERROR', image: 'PROVIDER_ERROR' },
  { name: 'malformed JSON / unreadable body', fault: { kind: 'malformed' }, json: 'PROVIDER_ERROR', sse: 'PROVIDER_ERROR', image: 'PROVIDER_ERROR' },
  { name: 'a wrong content type', fault: { kind: 'wrong-type' }, json: 'PROVIDER_ERROR', sse: 'PROVIDER_ERROR', image: 'PROVIDER_ERROR' },
  { name: 'an oversized answer', fault: { kind: 'oversized' }, json: 'skip', sse: 'skip', image: 'PROVIDER_ERROR' }
]

/** The outcome as the table writes it. */
function outcome (res: Awaited<ReturnType<typeof ask>>): string {
  if (res.statusCode === 200 && String(res.headers['content-type']).startsWith('text/event-stream')) {
    const error = /event: error\ndata: (.+)\n/.exec(res.body)
    if (error !== null) return `event:${(JSON.parse(error[1] as string) as { error: { code: string } }).error.code}`
    return /event: done\n/.test(res.body) ? '200' : 'stream ended without done or error'
  }
  return res.statusCode === 200 ? '200' : String((res.json() as { error: { code: string } }).error.code)
}

for (const c of CASES) {
  t.test(`fault: ${c.name}`, async (t) => {
    const { app, logs } = await build(t, { env: { ...ENV, ...c.env } })
    const { userId, key } = await userWithKey(app, { mode: 'live' })
    const { token } = await mint(app, key)
    let settledChat = 0
    for (const [what, expected, call] of [
      ['JSON reply', c.json, () => ask(app, token, false)],
      ['stream', c.sse, () => ask(app, token, true)],
      ['background removal', c.image, () => upload(app, token)]
    ] as const) {
      if (expected === 'skip') continue
      await inject(c.fault, c.times)
      const res = await call()
      t.equal(outcome(res), expected, `${what} → ${expected} (got ${outcome(res)})`)
      t.not(res.statusCode, 500, `${what}: never INTERNAL_ERROR`)
      const after = await state(app, userId)
      t.equal(after.reserved, 0, `${what}: no reservation left behind`)
      if (what !== 'background removal' && (expected === '200' || expected.startsWith('event:'))) settledChat++
      t.equal(after.ledger.filter((r) => r.feature === 'settings-assistant').length, settledChat, `${what}: a ledger row for each call the provider answered, none for the others`)
      if (expected.startsWith('event:')) t.equal(after.ledger.at(-1)?.estimated, true, `${what}: a cut stream is settled from what was generated (estimated)`)
      if (what === 'background removal') t.equal(after.used['background-removal'] ?? 0, expected === '200' ? 1 : 0, `${what}: an image of quota only for a result`)
    }
    await inject(null, 0)
    t.notMatch(logs.text, CANARY, 'the question reaches no log line')
    t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'still ready')
  })
}
