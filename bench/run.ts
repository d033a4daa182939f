import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { Agent } from 'node:http'
import { cpus, totalmem, platform, release } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import sharp from 'sharp'
import { percentile, post, ROOT, round, rssMb, startStack, type Sent, type Stack } from './harness.js'
import { PORTKEY_VERSION, startImagePassThrough, startPortkey, type Peer } from './peer.js'
import { profileMarkdown, profileTable, readProfile } from './profile.js'

/**
 * `npm run bench`: the service with its whole policy path (AI token, entitlement, rate limit, quota reservation
 * and settlement, ledger row) against a local fake upstream, every figure measured side by side with the fake
 * upstream called directly in the same run, so that ratios hold on a noisy machine. Prints a table, writes
 * bench/results.json and docs/performance.md.
 */
/** Scale the run: BENCH_SCALE=0.2 for a quick look, 1 for the figures of docs/performance.md. */
const SCALE = Number(process.env.BENCH_SCALE ?? '1')
/** Users the load comes from (token minting is limited to 30 a minute per address, so fewer than that). */
const USERS = 20
/** BENCH_ONLY=1,2 runs some scenarios only (docs/performance.md is rewritten only by a run of all six). */
const SCENARIOS = ['1', '2', '3', '4', '5', '6']
const ONLY = new Set((process.env.BENCH_ONLY ?? SCENARIOS.join(',')).split(','))
/** BENCH_PEER=0 leaves Portkey's gateway out (the figures are then against the direct upstream only). */
const WITH_PEER = process.env.BENCH_PEER !== '0'
/** Chats of scenario 5, spread over the users; each gets the same number of turns, so its history is bounded. */
const CHATS = 100
const STREAMS_HELD = 1000
const PROFILE = process.env.BENCH_PROFILE === '1'
const PROFILE_DIR = join(ROOT, 'bench', '.profile')
/** The monotonic clock in µs, the clock of a V8 CPU profile's timestamps. */
const nowUs = () => Number(process.hrtime.bigint() / 1000n)

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length

/** Timings through the service beside the same calls made directly, and what the service adds (p50, p99). */
function addedLatency (rounds: number, viaService: number[], direct: number[]) {
  const p = (values: number[], q: number) => round(percentile(values, q))
  return {
    rounds,
    service: { p50: p(viaService, 50), p99: p(viaService, 99) },
    direct: { p50: p(direct, 50), p99: p(direct, 99) },
    addedP50: round(percentile(viaService, 50) - percentile(direct, 50)),
    addedP99: round(percentile(viaService, 99) - percentile(direct, 99))
  }
}

function expectOk (sent: Sent, what: string) {
  if (sent.status !== 200) throw new Error(`${what}: HTTP ${sent.status} ${sent.text.slice(0, 300)}`)
}

async function cannon (opts: autocannon.Options): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, result) => { if (err !== null && err !== undefined) reject(err); else resolve(result) })
  })
}

/** A measured window of a profiled server: its calls, on the monotonic clock. */
interface ProfileWindow { fromUs: number, toUs: number, calls: number }
let profileWindow: ProfileWindow | null = null
/** Scenario 5's whole streams at concurrency 20, in the same profile as scenario 2. */
let sessionsWindow: ProfileWindow | null = null
/** The flags that make a server write its CPU profile into `bench/.profile/<name>/` when it exits. */
const profileFlags = (name: string) => () => PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${join(PROFILE_DIR, name)}`] : []

/**
 * The tables of a profiled server's windows (after the server has exited), printed; its profile is read once. A
 * window not measured (its scenario did not run) has no table.
 */
function profilesOf (name: string, windows: Array<{ window: ProfileWindow | null, title: string }>) {
  const dir = join(PROFILE_DIR, name)
  const file = readdirSync(dir).find((entry) => entry.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`no CPU profile in ${dir}`)
  const profile = readProfile(join(dir, file))
  return windows.map(({ window, title }) => {
    if (window === null) return null
    const table = profileTable(profile, window.calls, window.fromUs, window.toUs)
    process.stdout.write(`\n${title}, ${join('bench', '.profile', name, file)}:\n${profileMarkdown(table)}\n`)
    return table
  })
}

async function main () {
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    os: `${platform()} ${release()}`,
    node: process.version,
    date: new Date().toISOString()
  }
  // BENCH_PROFILE=1 writes each server's CPU profile (.cpuprofile, for Chrome DevTools) into bench/.profile/ and
  // prints where the CPU of a call goes in the measured runs of scenario 2 (chat) and of scenario 4 at concurrency 1.
  if (PROFILE) rmSync(PROFILE_DIR, { recursive: true, force: true })
  const stack = await startStack({
    name: 'bench',
    users: USERS,
    nodeFlags: profileFlags('chat')
  })
  stack0 = stack
  const { service, upstreamUrl, control, pid, tokens, store, limits } = stack
  process.stdout.write(`portal-ai-api benchmark on ${machine.cores} × ${machine.cpu}, ${store}, ${limits}\n`)

  const question = JSON.stringify({ message: 'How do I make my exports sharper?', context: { appVersion: '4.2.0', platform: 'windows', settings: [{ id: 'export.sharpening', value: 'off' }] } })
  const json = { 'content-type': 'application/json' }
  const agentService = new Agent({ keepAlive: true, maxSockets: 1 })
  const agentDirect = new Agent({ keepAlive: true, maxSockets: 1 })
  const asUser = (i: number) => ({ ...json, authorization: `Bearer ${tokens[i % USERS] as string}` })
  expectOk(await post(agentService, `${service}/v1/ai/settings-assistant/messages`, question, asUser(0)), 'warm-up call')
  // The direct calls send the very body the service sent upstream.
  const upstreamBody = (await control({})).lastChatBody
  const upstreamChat = `${upstreamUrl}/v1/chat/completions`
  const upstreamHeaders = { ...json, authorization: 'Bearer bench-openai-key' }
  const results: Record<string, unknown> = { machine, store, limits }
  // The peer gets the very body the service sent upstream, like the direct calls.
  let peer: Peer | null = null
  if (WITH_PEER && (ONLY.has('1') || ONLY.has('2'))) {
    peer = await startPortkey(upstreamUrl, stack.logs)
    peer0 = peer
    expectOk(await post(new Agent({ keepAlive: false }), peer.chatUrl, upstreamBody, peer.headers), 'warm-up call through Portkey')
    results.peer = { name: 'Portkey AI gateway', version: PORTKEY_VERSION }
  }

  // 1. Chat JSON at concurrency 1: added latency, from interleaved service and direct calls.
  if (ONLY.has('1')) {
    const rounds = Math.round(2000 * SCALE)
    const viaService: number[] = []
    const direct: number[] = []
    const viaPeer: number[] = []
    const peerDirect: number[] = []
    const agentPeer = new Agent({ keepAlive: true, maxSockets: 1 })
    for (let i = 0; i < rounds + 100; i++) {
      const s = await post(agentService, `${service}/v1/ai/settings-assistant/messages`, question, asUser(i))
      const d = await post(agentDirect, upstreamChat, upstreamBody, upstreamHeaders)
      expectOk(s, 'chat via the service')
      expectOk(d, 'chat direct')
      if (i >= 100) { viaService.push(s.ms); direct.push(d.ms) }
      if (peer !== null) {
        // Interleaved too, each with a direct call of its own moment, so that both gateways meet the same noise.
        const k = await post(agentPeer, peer.chatUrl, upstreamBody, peer.headers)
        const kd = await post(agentDirect, upstreamChat, upstreamBody, upstreamHeaders)
        expectOk(k, 'chat via Portkey')
        if (i >= 100) { viaPeer.push(k.ms); peerDirect.push(kd.ms) }
      }
    }
    results.chatLatency = {
      ...addedLatency(rounds, viaService, direct),
      addedMean: round(mean(viaService) - mean(direct)),
      ...(peer === null ? {} : { peer: { ...addedLatency(rounds, viaPeer, peerDirect), addedMean: round(mean(viaPeer) - mean(peerDirect)) } })
    }
  }

  // 2. Chat JSON at concurrency 50: throughput through the service and direct.
  if (ONLY.has('2')) {
    const duration = Math.max(3, Math.round(10 * SCALE))
    let next = 0
    const serviceRun = (seconds: number) => cannon({
      url: `${service}/v1/ai/settings-assistant/messages`,
      connections: 50,
      duration: seconds,
      requests: [{ method: 'POST', body: question, setupRequest: (req) => ({ ...req, headers: asUser(next++) }) }]
    })
    const directRun = (seconds: number) => cannon({ url: upstreamChat, connections: 50, duration: seconds, method: 'POST', headers: upstreamHeaders, body: upstreamBody })
    await serviceRun(2)
    const from = nowUs()
    const viaService = await serviceRun(duration)
    profileWindow = { fromUs: from, toUs: nowUs(), calls: viaService.requests.total }
    await directRun(2)
    const direct = await directRun(duration)
    const peerRun = (seconds: number) => cannon({ url: (peer as Peer).chatUrl, connections: 50, duration: seconds, method: 'POST', headers: (peer as Peer).headers, body: upstreamBody })
    let viaPeer: autocannon.Result | null = null
    if (peer !== null) {
      await peerRun(2)
      viaPeer = await peerRun(duration)
    }
    const summary = (r: autocannon.Result) => ({ requestsPerSecond: round(r.requests.average, 0), p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors + r.timeouts })
    // Ceilings on this machine for reference: the cheapest route, and an authenticated one without database or upstream.
    const live = await cannon({ url: `${service}/health/live`, connections: 50, duration })
    const entitlements = await cannon({ url: `${service}/v1/ai/entitlements`, connections: 50, duration, requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, headers: asUser(next++) }) }] })
    // A throughput of refusals (429) or failures would measure the wrong thing: every run here must be all 2xx.
    const runs: Record<string, autocannon.Result> = {
      'chat through the service': viaService,
      'chat direct': direct,
      'GET /health/live': live,
      'GET /v1/ai/entitlements': entitlements,
      ...(viaPeer === null ? {} : { 'chat through Portkey': viaPeer })
    }
    for (const [what, run] of Object.entries(runs)) {
      if (run.non2xx > 0 || run.errors > 0) throw new Error(`scenario 2: ${what} answered ${run.non2xx} non-2xx and ${run.errors} errors in ${run.requests.total} requests`)
    }
    results.chatThroughput = {
      seconds: duration,
      service: summary(viaService),
      direct: summary(direct),
      ratio: round(viaService.requests.average / direct.requests.average),
      ...(viaPeer === null ? {} : { peer: summary(viaPeer), ratioToPeer: round(viaService.requests.average / viaPeer.requests.average) }),
      reference: { healthLive: summary(live), entitlements: summary(entitlements) }
    }
  }

  // The peer is measured on JSON calls only (its streaming answers fail on Node here: Portkey-AI/gateway#1389, #1550).
  await peer?.close()
  peer0 = undefined

  // 3. SSE: time to the first delta minus the upstream's time to its first content chunk; then 1,000 streams held open.
  if (ONLY.has('3')) {
    const rounds = Math.round(300 * SCALE)
    const sse = { ...json, accept: 'text/event-stream' }
    const upstreamStreamBody = JSON.stringify({ ...JSON.parse(upstreamBody) as object, stream: true, stream_options: { include_usage: true } })
    const viaService: number[] = []
    const direct: number[] = []
    for (let i = 0; i < rounds + 20; i++) {
      const s = await post(agentService, `${service}/v1/ai/settings-assistant/messages`, question, { ...sse, authorization: asUser(i).authorization }, (text) => text.includes('event: delta'))
      const d = await post(agentDirect, upstreamChat, upstreamStreamBody, upstreamHeaders, (text) => text.split('data: ').length > 2)
      expectOk(s, 'stream via the service')
      if (!s.text.includes('event: done')) throw new Error(`stream via the service did not end with done: ${s.text.slice(-300)}`)
      if (i >= 20) { viaService.push(s.firstMs); direct.push(d.firstMs) }
    }
    const firstDelta = addedLatency(rounds, viaService, direct)

    const idleRss = rssMb(pid)
    await control({ hold: true })
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
    let started = 0
    const opened = Array.from({ length: STREAMS_HELD }, async (_, i) => {
      const sent = await post(agent, `${service}/v1/ai/settings-assistant/messages`, question, { ...sse, authorization: asUser(i).authorization }, (text) => {
        if (text.includes('event: delta')) started++
        return text.includes('event: delta')
      })
      return sent
    })
    const deadline = Date.now() + 120_000
    for (let waited = 0; Date.now() < deadline; waited++) {
      if (started >= STREAMS_HELD) break
      await sleep(100)
    }
    await sleep(500)
    const heldRss = rssMb(pid)
    const open = started
    await control({ release: true, hold: false })
    const finished = await Promise.all(opened)
    const done = finished.filter((s) => s.text.includes('event: done')).length
    agent.destroy()
    results.sse = { firstDelta, held: { streams: STREAMS_HELD, open, completed: done, idleRssMb: round(idleRss, 0), heldRssMb: round(heldRss, 0), perStreamKb: round(((heldRss - idleRss) * 1024) / Math.max(1, open), 1) } }
  }

  // 5. Chat sessions over SSE: a stored conversation — the chat looked up, its history read, decrypted and cut to
  // the context by token counts, the turn and the reply encrypted and written with the ledger row — against the
  // same stream asked of the upstream directly.
  if (ONLY.has('5')) {
    const chats: Array<{ id: string, user: number }> = []
    for (let i = 0; i < CHATS; i++) {
      const created = await post(agentService, `${service}/v1/chats`, JSON.stringify({ title: `Bench chat ${i}` }), asUser(i))
      if (created.status !== 201) throw new Error(`creating a chat: HTTP ${created.status} ${created.text.slice(0, 300)}`)
      chats.push({ id: (JSON.parse(created.text) as { id: string }).id, user: i % USERS })
    }
    const turn = (i: number) => ({ chat: chats[i % CHATS] as { id: string, user: number }, body: JSON.stringify({ content: `Summarise what we said so far, turn ${i}.`, model: 'gpt-4o-mini' }) })
    const sendTurn = async (agent: Agent, i: number) => {
      const { chat, body } = turn(i)
      const sent = await post(agent, `${service}/v1/chats/${chat.id}/stream`, body, asUser(chat.user), (text) => text.includes('event: delta'))
      expectOk(sent, 'chat session stream')
      if (!sent.text.includes('event: done')) throw new Error(`chat session stream did not end with done: ${sent.text.slice(-300)}`)
      return sent
    }
    let next = 0
    await sendTurn(agentService, next++)
    const upstreamSessionBody = (await control({})).lastChatBody
    const rounds = Math.round(300 * SCALE)
    const viaService: number[] = []
    const direct: number[] = []
    for (let i = 0; i < rounds + 20; i++) {
      const s = await sendTurn(agentService, next++)
      const d = await post(agentDirect, upstreamChat, upstreamSessionBody, upstreamHeaders, (text) => text.split('data: ').length > 2)
      if (i >= 20) { viaService.push(s.firstMs); direct.push(d.firstMs) }
    }
    const firstDelta = addedLatency(rounds, viaService, direct)
    // Whole streams at concurrency 20, a fixed number of turns (so every chat ends with the same history length).
    const amount = Math.max(200, Math.round(2000 * SCALE))
    const sessionsFrom = nowUs()
    const streamed = await cannon({
      url: service,
      connections: 20,
      amount,
      requests: [{
        method: 'POST',
        setupRequest: (req) => {
          const { chat, body } = turn(next++)
          return { ...req, path: `/v1/chats/${chat.id}/stream`, body, headers: asUser(chat.user) }
        }
      }]
    })
    sessionsWindow = { fromUs: sessionsFrom, toUs: nowUs(), calls: streamed.requests.total }
    const streamedDirect = await cannon({ url: upstreamChat, connections: 20, amount, method: 'POST', headers: upstreamHeaders, body: upstreamSessionBody })
    const historyTurns = Math.floor(next / CHATS)
    results.chatSessions = {
      chats: CHATS,
      turnsPerChatAtEnd: historyTurns,
      firstDelta,
      concurrency20: {
        streams: amount,
        service: { streamsPerSecond: round(streamed.requests.average, 0), p50: streamed.latency.p50, p99: streamed.latency.p99, non2xx: streamed.non2xx, errors: streamed.errors + streamed.timeouts },
        direct: { streamsPerSecond: round(streamedDirect.requests.average, 0), p50: streamedDirect.latency.p50, p99: streamedDirect.latency.p99 }
      }
    }
  }

  // 4. Background removal of a 5 MB PNG at concurrency 20: added latency and peak RSS.
  if (ONLY.has('4')) {
    // On a server of its own: the 1,000 streams of scenario 3 leave V8's heap grown, which is not what uploads cost.
    await stack.close()
    const own = await startStack({ name: 'bench', users: USERS, nodeFlags: profileFlags('images') })
    stack0 = own
    const side = 1300
    const png = await sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } }).png().toBuffer()
    const boundary = 'portal-ai-api-bench'
    const multipart = (field: string) => Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="layer.png"\r\nContent-Type: image/png\r\n\r\n`),
      png,
      Buffer.from(`\r\n--${boundary}--\r\n`)
    ])
    const contentType = `multipart/form-data; boundary=${boundary}`
    const amount = Math.max(20, Math.round(100 * SCALE))
    const idleRss = rssMb(own.pid)
    let peakRss = idleRss
    const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMb(own.pid)) }, 50)
    let next = 0
    const viaService = await cannon({
      url: `${own.service}/v1/ai/background-removal`,
      connections: 20,
      amount,
      timeout: 120,
      requests: [{ method: 'POST', body: multipart('image'), setupRequest: (req) => ({ ...req, headers: { 'content-type': contentType, authorization: `Bearer ${own.tokens[next++ % USERS] as string}` } }) }]
    })
    clearInterval(sampler)
    const direct = await cannon({ url: `${own.upstreamUrl}/v1.0/removebg`, connections: 20, amount, timeout: 120, method: 'POST', headers: { 'content-type': contentType, 'x-api-key': 'bench-removebg-key' }, body: multipart('image_file') })
    // At concurrency 1, with a PNG that has an alpha channel: the fake remove.bg echoes it, so its answer is shaped like
    // remove.bg's cut-out (RGBA, the input's size) and the service has nothing to decode or re-encode on either side.
    const rgbaSide = 1130
    const rgba = await sharp(randomBytes(rgbaSide * rgbaSide * 4), { raw: { width: rgbaSide, height: rgbaSide, channels: 4 } }).png().toBuffer()
    const rgbaBody = (field: string) => Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="layer.png"\r\nContent-Type: image/png\r\n\r\n`),
      rgba,
      Buffer.from(`\r\n--${boundary}--\r\n`)
    ])
    const oneService: number[] = []
    const oneDirect: number[] = []
    // The floor: a bare pass-through over the global fetch (no policy at all), timed in the same rounds.
    const passThrough = await startImagePassThrough(own.upstreamUrl, own.logs)
    const onePassThrough: number[] = []
    const agentOne = new Agent({ keepAlive: true, maxSockets: 1 })
    const serviceBody = rgbaBody('image')
    const directBody = rgbaBody('image_file')
    let from = 0
    for (let i = 0; i < Math.max(10, Math.round(40 * SCALE)) + 3; i++) {
      if (i === 3) from = nowUs()
      const s = await post(agentOne, `${own.service}/v1/ai/background-removal`, serviceBody, { 'content-type': contentType, authorization: `Bearer ${own.tokens[i % USERS] as string}` }, undefined, 120_000)
      const d = await post(agentOne, `${own.upstreamUrl}/v1.0/removebg`, directBody, { 'content-type': contentType, 'x-api-key': 'bench-removebg-key' }, undefined, 120_000)
      const bare = await post(agentOne, passThrough.url, serviceBody, { 'content-type': contentType }, undefined, 120_000)
      if (s.status !== 200) throw new Error(`background removal: HTTP ${s.status} ${s.text.slice(0, 300)}`)
      if (bare.status !== 200) throw new Error(`bare pass-through: HTTP ${bare.status}`)
      if (i >= 3) { oneService.push(s.ms); oneDirect.push(d.ms); onePassThrough.push(bare.ms) }
    }
    await passThrough.close()
    // The window holds the direct calls too, while the server idles: idle time is not counted.
    const imagesWindow = { fromUs: from, toUs: nowUs(), calls: oneService.length }
    const backgroundRemoval: Record<string, unknown> = {
      concurrency1: {
        imageMb: round(rgba.length / 2 ** 20),
        ...addedLatency(oneService.length, oneService, oneDirect),
        addedMean: round(mean(oneService) - mean(oneDirect)),
        passThroughAddedMean: round(mean(onePassThrough) - mean(oneDirect))
      },
      imageMb: round(png.length / 2 ** 20),
      megapixels: round((side * side) / 1e6),
      requests: amount,
      service: { p50: viaService.latency.p50, p99: viaService.latency.p99, requestsPerSecond: round(viaService.requests.average, 1), non2xx: viaService.non2xx, errors: viaService.errors + viaService.timeouts },
      direct: { p50: direct.latency.p50, p99: direct.latency.p99, requestsPerSecond: round(direct.requests.average, 1) },
      addedP50: round(viaService.latency.p50 - direct.latency.p50),
      idleRssMb: round(idleRss, 0),
      peakRssMb: round(peakRss, 0),
      growthMb: round(peakRss - idleRss, 0)
    }
    if (PROFILE) {
      // The profile is written when the server exits.
      await own.close()
      stack0 = undefined
      backgroundRemoval.profile = profilesOf('images', [{ window: imagesWindow, title: 'Scenario 4 (background removal of a 4.9 MB RGBA PNG, concurrency 1)' }])[0]
    }
    results.backgroundRemoval = backgroundRemoval
  }

  // 6. Virtual staging: submit latency of 12 MB photos at concurrency 10, and jobs per minute on one instance
  // against an image model that takes 5 s a staging (standard mode with a room type: one edit, no vision call).
  if (ONLY.has('6')) {
    await stack0?.close()
    const own = await startStack({ name: 'bench', users: USERS })
    stack0 = own
    const photo = await twelveMegabytePhoto()
    const boundary = 'portal-ai-api-bench-staging'
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="style"\r\n\r\nscandinavian\r\n--${boundary}\r\nContent-Disposition: form-data; name="qualityMode"\r\n\r\nstandard\r\n--${boundary}\r\nContent-Disposition: form-data; name="roomType"\r\n\r\nliving_room\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="room.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`),
      photo,
      Buffer.from(`\r\n--${boundary}--\r\n`)
    ])
    const amount = Math.max(20, Math.round(40 * SCALE))
    const agent = new Agent({ keepAlive: true, maxSockets: 10 })
    const idleRss = rssMb(own.pid)
    let peakRss = idleRss
    const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMb(own.pid)) }, 50)
    const started = performance.now()
    const submits: Sent[] = []
    let next = 0
    await Promise.all(Array.from({ length: 10 }, async () => {
      while (next < amount) {
        const i = next++
        const sent = await post(agent, `${own.service}/v1/ai/stagings`, body, { 'content-type': `multipart/form-data; boundary=${boundary}`, authorization: `Bearer ${own.tokens[i % USERS] as string}` }, undefined, 60_000)
        if (sent.status !== 202) throw new Error(`staging submit: HTTP ${sent.status} ${sent.text.slice(0, 300)}`)
        submits.push(sent)
      }
    }))
    const submitted = performance.now()
    // Every job done: each user's latest stagings, none queued or processing (one read per user every 2 s, within
    // the plan's general rate limit).
    const pending = async () => {
      let open = 0
      for (let u = 0; u < USERS; u++) {
        const res = await fetch(`${own.service}/v1/ai/stagings?limit=100`, { headers: { authorization: `Bearer ${own.tokens[u] as string}` } })
        if (res.status !== 200) throw new Error(`listing stagings: HTTP ${res.status} ${await res.text()}`)
        open += ((await res.json()) as { data: Array<{ status: string }> }).data.filter((s) => s.status === 'queued' || s.status === 'processing').length
      }
      return open
    }
    try {
      while (await pending() > 0) await sleep(2000)
    } finally {
      clearInterval(sampler)
    }
    const done = performance.now()
    const times = submits.map((s) => s.ms)
    results.staging = {
      photoMb: round(photo.length / 2 ** 20),
      stagings: amount,
      submit: { p50: round(percentile(times, 50)), p95: round(percentile(times, 95)), max: round(Math.max(...times)) },
      editSeconds: 5,
      concurrencyPerInstance: 2,
      jobsPerMinute: round(amount / ((done - started) / 60_000), 1),
      submitSeconds: round((submitted - started) / 1000, 1),
      allDoneSeconds: round((done - started) / 1000, 1),
      edits: (await own.control({})).stats.edits,
      idleRssMb: round(idleRss, 0),
      peakRssMb: round(peakRss, 0)
    }
  }

  if (PROFILE && (profileWindow !== null || sessionsWindow !== null)) {
    // The profile is written when the server exits. A later scenario's server is closed at the end, as always.
    await stack.close()
    if (stack0 === stack) stack0 = undefined
    const [json, sessions] = profilesOf('chat', [
      { window: profileWindow, title: 'Scenario 2 (chat JSON, concurrency 50)' },
      { window: sessionsWindow, title: 'Scenario 5 (chat-session streams, concurrency 20)' }
    ])
    if (json !== null) results.profile = json
    if (sessions !== null) (results.chatSessions as Record<string, unknown>).profile = sessions
  }
  writeReport(results)
}

/** A photo-like JPEG of just under 12 MB (noise compresses badly), within 25 megapixels. */
async function twelveMegabytePhoto () {
  const width = 4000
  const height = 3000
  for (let quality = 95; ; quality -= 3) {
    const jpeg = await sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).jpeg({ quality }).toBuffer()
    if (jpeg.length <= 12 * 1024 * 1024 - 4096) return jpeg
  }
}

function writeReport (results: Record<string, any>) {
  const r = results
  const rows: Array<[string, string, string, boolean | null]> = []
  if (r.chatLatency !== undefined) {
    const l = r.chatLatency
    if (l.peer !== undefined) {
      rows.push(['Chat JSON, concurrency 1: added mean latency, against Portkey', `${l.addedMean} ms (Portkey ${l.peer.addedMean} ms)`, '≤ Portkey', l.addedMean <= l.peer.addedMean])
    }
    rows.push(['Chat JSON, concurrency 1: added latency p50', `${l.addedP50} ms (service ${l.service.p50}, direct ${l.direct.p50}${l.peer === undefined ? '' : `; Portkey adds ${l.peer.addedP50}`})`, '≤ 1 ms', l.addedP50 <= 1])
    rows.push(['Chat JSON, concurrency 1: added latency p99', `${l.addedP99} ms (service ${l.service.p99}, direct ${l.direct.p99}${l.peer === undefined ? '' : `; Portkey adds ${l.peer.addedP99}`})`, '≤ 5 ms', l.addedP99 <= 5])
  }
  if (r.chatThroughput !== undefined) {
    const c = r.chatThroughput
    if (c.peer !== undefined) {
      rows.push(['Chat JSON, concurrency 50: requests/s, against Portkey', `${c.service.requestsPerSecond} (Portkey ${c.peer.requestsPerSecond}; ${c.ratioToPeer}×)`, '≥ 2× Portkey', c.ratioToPeer >= 2])
    }
    rows.push(['Chat JSON, concurrency 50: requests/s through the service', `${c.service.requestsPerSecond} (direct ${c.direct.requestsPerSecond})`, '≥ 4,500', c.service.requestsPerSecond >= 4500])
    rows.push(['Reference, concurrency 50: GET /health/live; GET /v1/ai/entitlements (AI token + Redis rate limit, no database, no upstream)', `${r.chatThroughput.reference.healthLive.requestsPerSecond}; ${r.chatThroughput.reference.entitlements.requestsPerSecond} requests/s`, '—', null])
  }
  if (r.sse !== undefined) {
    rows.push(['SSE: time to first delta, added p50', `${r.sse.firstDelta.addedP50} ms (service ${r.sse.firstDelta.service.p50}, direct ${r.sse.firstDelta.direct.p50})`, '≤ 1 ms', r.sse.firstDelta.addedP50 <= 1])
    rows.push([`SSE: ${STREAMS_HELD} streams held open, server RSS`, `${r.sse.held.heldRssMb} MB (idle ${r.sse.held.idleRssMb} MB; ${r.sse.held.open} open, ${r.sse.held.completed} completed)`, '≤ 300 MB', r.sse.held.heldRssMb <= 300])
  }
  if (r.chatSessions !== undefined) {
    const c = r.chatSessions
    rows.push(['Chat session SSE (stored, encrypted history): time to first delta, added p50', `${c.firstDelta.addedP50} ms (service ${c.firstDelta.service.p50}, direct ${c.firstDelta.direct.p50})`, '(reported)', null])
    rows.push(['Chat session SSE, concurrency 20: whole streams per second', `${c.concurrency20.service.streamsPerSecond} (direct ${c.concurrency20.direct.streamsPerSecond}; p99 ${c.concurrency20.service.p99} ms; ${c.turnsPerChatAtEnd} turns per chat at the end)`, '(reported)', null])
  }
  if (r.backgroundRemoval !== undefined) {
    rows.push(['Background removal, 5 MB PNG, concurrency 20: peak RSS', `${r.backgroundRemoval.peakRssMb} MB (idle ${r.backgroundRemoval.idleRssMb} MB, +${r.backgroundRemoval.growthMb} MB)`, '≤ 250 MB', r.backgroundRemoval.peakRssMb <= 250])
    if (r.backgroundRemoval.concurrency1 !== undefined) {
      const one = r.backgroundRemoval.concurrency1
      rows.push([`Background removal, ${one.imageMb} MB RGBA PNG (answered as remove.bg's cut-out), concurrency 1: added mean latency`, `${one.addedMean} ms (p50 ${one.addedP50}; service ${one.service.p50}, direct ${one.direct.p50})`, '≤ 50 ms', one.addedMean <= 50])
      if (one.passThroughAddedMean !== undefined) {
        rows.push(['Background removal, concurrency 1: added mean latency of a bare pass-through over fetch (the floor)', `${one.passThroughAddedMean} ms`, '(reported)', null])
      }
    }
    rows.push(['Background removal, 5 MB PNG, concurrency 20: added latency p50', `${r.backgroundRemoval.addedP50} ms (service ${r.backgroundRemoval.service.p50}, direct ${r.backgroundRemoval.direct.p50})`, '(reported)', null])
  }
  if (r.staging !== undefined) {
    const g = r.staging
    rows.push([`Virtual staging, ${g.photoMb} MB photo, concurrency 10: submit (202) latency p95`, `${g.submit.p95} ms (p50 ${g.submit.p50}, max ${g.submit.max})`, '< 2,000 ms', g.submit.p95 < 2000])
    rows.push([`Virtual staging, image model taking ${g.editSeconds} s: jobs per minute on one instance (STAGING_CONCURRENCY ${g.concurrencyPerInstance})`, `${g.jobsPerMinute} (${g.stagings} in ${g.allDoneSeconds} s; peak RSS ${g.peakRssMb} MB, idle ${g.idleRssMb} MB)`, '(reported)', null])
  }
  const table = ['| figure | measured | target | met |', '| --- | --- | --- | --- |',
    ...rows.map(([what, measured, target, met]) => `| ${what} | ${measured} | ${target} | ${met === null ? '—' : met ? 'yes' : '**no**'} |`)].join('\n')
  mkdirSync(join(ROOT, 'bench'), { recursive: true })
  writeFileSync(join(ROOT, 'bench', 'results.json'), JSON.stringify(results, null, 2) + '\n')
  process.stdout.write(`\n${table}\n\nDetails: bench/results.json\n`)
  if (SCENARIOS.some((s) => !ONLY.has(s))) return
  const m = r.machine
  const doc = readFileSync(join(ROOT, 'docs', 'performance.md'), 'utf8')
  const generated = [
    '<!-- bench:start -->',
    `Run of ${m.date.slice(0, 10)} on ${m.cores} × ${m.cpu}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; store: ${r.store}; rate limits: ${r.limits}${r.peer === undefined ? '' : `; peer: ${r.peer.name} ${r.peer.version as string}`}.`,
    'The load generator, the fake upstream, the service, the peer, PostgreSQL and Redis all share these cores.',
    '',
    table,
    '',
    '```json',
    JSON.stringify({ chatLatency: r.chatLatency, chatThroughput: r.chatThroughput, sse: r.sse, chatSessions: r.chatSessions, backgroundRemoval: r.backgroundRemoval, staging: r.staging }, null, 2),
    '```',
    '<!-- bench:end -->'
  ].join('\n')
  writeFileSync(join(ROOT, 'docs', 'performance.md'), doc.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, generated))
}

let stack0: Stack | undefined
let peer0: Peer | undefined
try {
  await main()
} finally {
  await peer0?.close()
  await stack0?.close()
}
