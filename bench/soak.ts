import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { Agent } from 'node:http'
import { cpus, platform, release, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import sharp from 'sharp'
import type { Fault } from '../test/fake-upstream.js'
import { percentile, post, ROOT, round, rssMb, startStack, type Sent, type Stack } from './harness.js'

/**
 * `npm run soak`: the built server with its whole policy path (as the benchmark starts it) under a fixed rate
 * of mixed traffic for SOAK_SECONDS (300), with provider faults injected in turn every FAULT_EVERY_S seconds.
 * Judged: zero unexpected outcomes (a 500, a dropped connection, a stream without its closing event, a refusal
 * other than the one asked for, more provider errors than faults injected, an error-level log line); every
 * ledger row matches exactly one call that the provider answered, and every such call has one; nothing left
 * reserved; the used counters equal the ledger's sums; no question, key or token in the logs; server RSS drift
 * under 10 % (from the minute after the warm-up to the last 30 s; judged on runs of 2 minutes or more).
 * Writes bench/soak-results.json, and the figures into docs/test-plan.md on a full run.
 */
const SECONDS = Number(process.env.SOAK_SECONDS ?? '300')
const RATE = Number(process.env.SOAK_RATE ?? '40')
const FAULT_EVERY_S = 10
const USERS = 20
const FULL_RUN_S = 300
/** RSS drift is judged on runs at least this long: shorter ones have no settled baseline. */
const DRIFT_JUDGED_FROM_S = 120
const CANARY = `CANARY-SOAK-${randomBytes(6).toString('hex')}`

/** The traffic, in a fixed rotation of 20 calls; each `refusal` is the next of REFUSAL_KINDS in turn. */
type Kind = 'chat' | 'stream' | 'image' | 'no-token' | 'bad-body' | 'bad-type'
const ROTATION: Array<Kind | 'refusal'> = [
  'chat', 'stream', 'image', 'chat', 'stream', 'chat', 'image', 'stream', 'chat', 'refusal',
  'chat', 'stream', 'image', 'chat', 'stream', 'chat', 'image', 'stream', 'chat', 'refusal'
]
const REFUSAL_KINDS: Kind[] = ['no-token', 'bad-body', 'bad-type']
/** SOAK_KINDS=chat,stream keeps only those calls of the rotation (to find which traffic a drift comes from). */
const KINDS = process.env.SOAK_KINDS === undefined ? null : new Set(process.env.SOAK_KINDS.split(','))

/** The faults injected in turn, each for the next three provider calls (whichever feature makes them). */
const FAULTS: Fault[] = [
  { kind: 'status', status: 500 },
  { kind: 'reset' },
  { kind: 'status', status: 429, retryAfter: '0' },
  { kind: 'malformed' },
  { kind: 'stall' },
  { kind: 'status', status: 503 },
  { kind: 'wrong-type' },
  { kind: 'no-first-byte' },
  { kind: 'status', status: 429 },
  { kind: 'status', status: 502 }
]
const FAULT_TIMES = 3
/** The documented answers to a provider failure (SPEC §5), as a status or a stream's closing error event. */
const PROVIDER_CODES = new Set(['PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_TIMEOUT'])
/** What each refusal must be. */
const REFUSALS: Partial<Record<Kind, [number, string]>> = {
  'no-token': [401, 'UNAUTHENTICATED'],
  'bad-body': [400, 'VALIDATION_ERROR'],
  'bad-type': [415, 'UNSUPPORTED_MEDIA_TYPE']
}

interface Call { kind: Kind, user: number, requestId: string | null, outcome: string, charged: boolean, expected: boolean, ms: number }

function errorCode (sent: Sent): string {
  try {
    return (JSON.parse(sent.text) as { error?: { code?: string } }).error?.code ?? `HTTP ${sent.status}`
  } catch {
    return `HTTP ${sent.status} (not the envelope)`
  }
}

/** The outcome of one call, whether the provider answered it (so it must have a ledger row) and whether it was expected. */
function judge (kind: Kind, sent: Sent): Pick<Call, 'outcome' | 'charged' | 'expected'> {
  const refusalExpected = REFUSALS[kind]
  if (refusalExpected !== undefined) {
    const outcome = `${sent.status} ${errorCode(sent)}`
    return { outcome, charged: false, expected: outcome === refusalExpected.join(' ') }
  }
  const type = String(sent.headers['content-type'] ?? '')
  if (sent.status === 200) {
    if (kind === 'stream') {
      if (!type.startsWith('text/event-stream')) return { outcome: `200 ${type}`, charged: false, expected: false }
      const error = /event: error\ndata: (.+)\n/.exec(sent.text)
      if (error !== null) {
        const code = (JSON.parse(error[1] as string) as { error: { code: string } }).error.code
        return { outcome: `event:${code}`, charged: true, expected: PROVIDER_CODES.has(code) }
      }
      return /event: done\n/.test(sent.text)
        ? { outcome: '200', charged: true, expected: true }
        : { outcome: 'stream ended without done or error', charged: true, expected: false }
    }
    const fits = kind === 'image' ? type === 'image/png' : type.startsWith('application/json') && sent.text.includes('"reply"')
    return { outcome: fits ? '200' : `200 ${type}`, charged: true, expected: fits }
  }
  const code = errorCode(sent)
  return { outcome: code, charged: false, expected: PROVIDER_CODES.has(code) }
}

async function main (stack: Stack) {
  const { service, tokens, pid } = stack
  const image = await sharp(randomBytes(320 * 240 * 3), { raw: { width: 320, height: 240, channels: 3 } }).png().toBuffer()
  const boundary = 'portal-ai-api-soak'
  const upload = (type: string, bytes: Buffer) => Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="layer"\r\nContent-Type: ${type}\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`)
  ])
  const pngUpload = upload('image/png', image)
  const textUpload = upload('text/plain', Buffer.from(`not an image ${CANARY}`))
  const multipartType = `multipart/form-data; boundary=${boundary}`
  const question = JSON.stringify({ message: `How do I make my exports sharper? ${CANARY}`, context: { appVersion: '4.2.0', platform: 'windows', settings: [{ id: 'export.sharpening', value: 'off' }] } })
  const agent = new Agent({ keepAlive: true, maxSockets: 256 })
  const chatUrl = `${service}/v1/ai/settings-assistant/messages`

  async function send (kind: Kind, user: number): Promise<Sent> {
    const auth = { authorization: `Bearer ${tokens[user] as string}` }
    const json = { ...auth, 'content-type': 'application/json' }
    switch (kind) {
      case 'chat': return await post(agent, chatUrl, question, json, undefined, 30_000)
      case 'stream': return await post(agent, chatUrl, question, { ...json, accept: 'text/event-stream' }, undefined, 30_000)
      case 'image': return await post(agent, `${service}/v1/ai/background-removal`, pngUpload, { ...auth, 'content-type': multipartType }, undefined, 30_000)
      case 'no-token': return await post(agent, chatUrl, question, { 'content-type': 'application/json' }, undefined, 30_000)
      case 'bad-body': return await post(agent, chatUrl, JSON.stringify({ message: CANARY, temperature: 2 }), json, undefined, 30_000)
      case 'bad-type': return await post(agent, `${service}/v1/ai/background-removal`, textUpload, { ...auth, 'content-type': multipartType }, undefined, 30_000)
    }
  }

  const calls: Call[] = []
  const failures: string[] = []
  const rss: Array<{ s: number, mb: number }> = []
  const started = performance.now()
  const elapsedS = () => (performance.now() - started) / 1000
  let gone = false
  const sampler = setInterval(() => {
    try {
      rss.push({ s: elapsedS(), mb: rssMb(pid) })
    } catch {
      if (!gone) failures.push(`the server process ended at ${Math.round(elapsedS())} s`)
      gone = true
    }
  }, 1000)
  let injected = 0
  const faultTimer = setInterval(() => {
    const fault = FAULTS[injected++ % FAULTS.length]
    stack.control({ fault, faultTimes: FAULT_TIMES }).catch((err: unknown) => failures.push(`could not inject a fault: ${String(err)}`))
  }, FAULT_EVERY_S * 1000)

  // Open loop: call n starts at n / RATE seconds whatever the answers before it, as independent clients would.
  const inFlight = new Set<Promise<void>>()
  const total = Math.round(SECONDS * RATE)
  let refusals = 0
  let inFlightPeak = 0
  for (let n = 0; n < total; n++) {
    const due = started + (n * 1000) / RATE
    const wait = due - performance.now()
    if (wait > 1) await sleep(wait)
    const slot = ROTATION[n % ROTATION.length] as Kind | 'refusal'
    const kind = slot === 'refusal' ? REFUSAL_KINDS[refusals++ % REFUSAL_KINDS.length] as Kind : slot
    if (KINDS !== null && !KINDS.has(kind)) continue
    const user = n % USERS
    const at = performance.now()
    const call = send(kind, user).then(
      (sent) => { calls.push({ kind, user, requestId: (sent.headers['x-request-id'] as string | undefined) ?? null, ...judge(kind, sent), ms: performance.now() - at }) },
      (err: unknown) => { calls.push({ kind, user, requestId: null, outcome: `transport: ${(err as Error).message}`, charged: false, expected: false, ms: performance.now() - at }) }
    ).finally(() => inFlight.delete(call))
    inFlight.add(call)
    inFlightPeak = Math.max(inFlightPeak, inFlight.size)
    if (n % (RATE * 30) === 0 && n > 0) process.stdout.write(`  ${Math.round(elapsedS())} s: ${calls.length} answered, ${inFlight.size} in flight, RSS ${round(rss.at(-1)?.mb ?? NaN, 0)} MB\n`)
  }
  clearInterval(faultTimer)
  await Promise.all(inFlight)
  clearInterval(sampler)
  const ranS = elapsedS()
  const upstream = await stack.control({ fault: null, faultTimes: 0 })
  agent.destroy()

  // The ledger, as the admin API shows it, against the calls the provider answered.
  const ledger = new Map<string, number>()
  const counters = { reserved: 0, usedMismatches: [] as string[] }
  for (const userId of stack.userIds) {
    const unitsByFeature = new Map<string, number>()
    let cursor: string | null = null
    let features: Array<{ id: string, used: number, reserved: number }> = []
    do {
      const url: string = `${service}/v1/admin/usage?userId=${userId}&limit=100${cursor === null ? '' : `&cursor=${cursor}`}`
      const page = await (await fetch(url, { headers: stack.admin })).json() as { features: typeof features, events: Array<{ requestId: string | null, feature: string, units: number }>, nextCursor: string | null }
      features = page.features
      for (const event of page.events) {
        const id = event.requestId ?? `(a row without a request id, ${ledger.size})`
        ledger.set(id, (ledger.get(id) ?? 0) + 1)
        unitsByFeature.set(event.feature, (unitsByFeature.get(event.feature) ?? 0) + event.units)
      }
      cursor = page.nextCursor
    } while (cursor !== null)
    for (const feature of features) {
      counters.reserved += feature.reserved
      if (feature.used !== (unitsByFeature.get(feature.id) ?? 0)) counters.usedMismatches.push(`${userId} ${feature.id}: used ${feature.used}, ledger ${unitsByFeature.get(feature.id) ?? 0}`)
    }
  }
  const charged = calls.filter((c) => c.charged)
  const missing = charged.filter((c) => c.requestId === null || !ledger.has(c.requestId))
  const chargedIds = new Set(charged.map((c) => c.requestId))
  const extra = [...ledger.keys()].filter((id) => !chargedIds.has(id))
  const doubled = [...ledger.entries()].filter(([, count]) => count > 1)

  // The logs: no content or credential, no error-level line.
  const serverLog = readFileSync(join(stack.logs, 'server.log'), 'utf8')
  const secrets = [CANARY, ...tokens, ...stack.keys, 'soak-openai-key', 'soak-removebg-key']
  const leaked = secrets.filter((secret) => serverLog.includes(secret)).length
  const errorLines = serverLog.split('\n').filter((line) => {
    try { return (JSON.parse(line) as { level?: number }).level! >= 50 } catch { return false }
  })
  const ready = (await fetch(`${service}/health/ready`)).status

  // RSS drift: the median of the 30 s after the warm-up against the median of the last 30 s.
  const warmS = Math.min(60, ranS * 0.2)
  const median = (from: number, to: number) => percentile(rss.filter((r) => r.s >= from && r.s < to).map((r) => r.mb), 50)
  const baseline = median(warmS, warmS + 30)
  const final = median(ranS - 30, ranS + 1)
  const driftPct = ((final - baseline) / baseline) * 100
  const driftJudged = ranS >= DRIFT_JUDGED_FROM_S

  const unexpected = calls.filter((c) => !c.expected)
  const providerErrors = calls.filter((c) => PROVIDER_CODES.has(c.outcome.replace('event:', ''))).length
  const outcomes: Record<string, number> = {}
  for (const c of calls) outcomes[`${c.kind} → ${c.outcome}`] = (outcomes[`${c.kind} → ${c.outcome}`] ?? 0) + 1
  const checks: Array<[string, boolean, string]> = [
    ['every call answered as documented (no 500, no dropped connection, no unfinished stream, refusals as asked)', unexpected.length === 0, `${unexpected.length} unexpected`],
    ['provider errors only from injected faults', providerErrors <= upstream.stats.faults, `${providerErrors} provider errors, ${upstream.stats.faults} faults injected`],
    ['every answered call has exactly one ledger row, and every row an answered call', missing.length === 0 && extra.length === 0 && doubled.length === 0, `${charged.length} answered calls, ${ledger.size} rows; ${missing.length} missing, ${extra.length} extra, ${doubled.length} doubled`],
    ['nothing left reserved', counters.reserved === 0, `${counters.reserved} units reserved`],
    ['used counters equal the ledger sums', counters.usedMismatches.length === 0, counters.usedMismatches.slice(0, 3).join('; ') || 'all equal'],
    ['no question, key or token in the logs', leaked === 0, `${leaked} of ${secrets.length} found`],
    ['no error-level log line', errorLines.length === 0, `${errorLines.length} lines`],
    ['still ready', ready === 200, `GET /health/ready ${ready}`],
    ['server RSS drift under 10 %', !driftJudged || driftPct < 10, `${round(baseline, 0)} → ${round(final, 0)} MB (${round(driftPct, 1)} %)${driftJudged ? '' : `; not judged: a run under ${DRIFT_JUDGED_FROM_S} s`}`]
  ]
  const latencies = (kind: Kind) => {
    const ms = calls.filter((c) => c.kind === kind && c.outcome === '200').map((c) => c.ms)
    return { p50: round(percentile(ms, 50), 1), p99: round(percentile(ms, 99), 1) }
  }
  const results = {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: round(totalmem() / 2 ** 30, 1), os: `${platform()} ${release()}`, node: process.version, date: new Date().toISOString() },
    store: stack.store,
    limits: stack.limits,
    seconds: round(ranS, 1),
    ratePerSecond: RATE,
    calls: calls.length,
    inFlightPeak,
    faultsInjected: upstream.stats.faults,
    upstreamCalls: upstream.stats.chat + upstream.stats.removebg,
    providerErrors,
    outcomes: Object.fromEntries(Object.entries(outcomes).sort()),
    latencyMs: { chat: latencies('chat'), stream: latencies('stream'), image: latencies('image') },
    ledgerRows: ledger.size,
    rssMb: { baseline: round(baseline, 0), final: round(final, 0), min: round(Math.min(...rss.map((r) => r.mb)), 0), max: round(Math.max(...rss.map((r) => r.mb)), 0), driftPct: round(driftPct, 1) },
    checks: checks.map(([what, ok, detail]) => ({ what, ok, detail })),
    failures: [...failures, ...unexpected.slice(0, 20).map((c) => `${c.kind}: ${c.outcome}`), ...missing.slice(0, 5).map((c) => `no ledger row for ${c.kind} ${c.requestId ?? ''}`), ...errorLines.slice(0, 5).map((l) => l.slice(0, 300))]
  }
  writeFileSync(join(ROOT, 'bench', 'soak-results.json'), JSON.stringify(results, null, 2) + '\n')
  const table = ['| check | result | figures |', '| --- | --- | --- |', ...checks.map(([what, ok, detail]) => `| ${what} | ${ok ? 'pass' : '**FAIL**'} | ${detail} |`)].join('\n')
  process.stdout.write(`\n${calls.length} calls in ${round(ranS, 0)} s (${RATE}/s), ${upstream.stats.faults} faults injected, store ${stack.store}, limits ${stack.limits}\n\n${table}\n\nDetails: bench/soak-results.json\n`)
  if (results.failures.length > 0) process.stdout.write(`\nFirst failures:\n${results.failures.map((f) => `  ${f}`).join('\n')}\n`)
  if (SECONDS >= FULL_RUN_S) writeReport(results, table)
  return checks.every(([, ok]) => ok) && failures.length === 0
}

function writeReport (r: Record<string, any>, table: string) {
  const doc = readFileSync(join(ROOT, 'docs', 'test-plan.md'), 'utf8')
  const m = r.machine
  const generated = [
    '<!-- soak:start -->',
    `Run of ${m.date.slice(0, 10)} on ${m.cores} × ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}; store: ${r.store}; rate limits: ${r.limits}.`,
    `${r.calls} calls in ${r.seconds} s at ${r.ratePerSecond} a second (at most ${r.inFlightPeak} in flight), ${r.faultsInjected} provider faults injected over ${r.upstreamCalls} provider calls, ${r.providerErrors} calls answered with a provider error, ${r.ledgerRows} ledger rows.`,
    `Server RSS ${r.rssMb.baseline} MB after the warm-up, ${r.rssMb.final} MB at the end (${r.rssMb.driftPct} %; lowest ${r.rssMb.min}, highest ${r.rssMb.max}).`,
    `Latency of answered calls (p50 / p99): chat ${r.latencyMs.chat.p50} / ${r.latencyMs.chat.p99} ms, stream ${r.latencyMs.stream.p50} / ${r.latencyMs.stream.p99} ms, background removal ${r.latencyMs.image.p50} / ${r.latencyMs.image.p99} ms.`,
    '',
    table,
    '',
    '| call → outcome | count |',
    '| --- | --- |',
    ...Object.entries(r.outcomes as Record<string, number>).map(([what, count]) => `| ${what} | ${count} |`),
    '<!-- soak:end -->'
  ].join('\n')
  if (!doc.includes('<!-- soak:start -->')) throw new Error('docs/test-plan.md has no <!-- soak:start --> … <!-- soak:end --> section')
  writeFileSync(join(ROOT, 'docs', 'test-plan.md'), doc.replace(/<!-- soak:start -->[\s\S]*<!-- soak:end -->/, generated))
}

const stack = await startStack({
  name: 'soak',
  users: USERS,
  // Short provider time limits, so that a stalled provider call ends within seconds.
  env: { OPENAI_TIMEOUT_MS: '3000', BG_REMOVAL_TIMEOUT_MS: '3000' }
})
let ok = false
try {
  process.stdout.write(`portal-ai-api soak: ${SECONDS} s at ${RATE} calls a second, a provider fault every ${FAULT_EVERY_S} s\n`)
  ok = await main(stack)
} finally {
  await stack.close()
}
process.exitCode = ok ? 0 : 1
