import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { round } from './harness.js'

/**
 * Where the server's CPU goes per call, from a V8 CPU profile (`--cpu-prof`, written by `BENCH_PROFILE=1 npm run
 * bench`): each sample is charged to a part of the stack — the nearest frame of a known library or of the service,
 * walking from the sampled function towards the root — and the sum is divided by the calls made in the window.
 * Timers and abort signals are charged where they run (Node's own timers, AbortController and EventTarget code),
 * whoever called them. `npx tsx bench/profile.ts FILE.cpuprofile [calls]` prints the table of a whole profile.
 */
interface ProfileNode { id: number, callFrame: { functionName: string, url: string }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

/** A sample's part: first match on the frame's URL wins. */
const PARTS: Array<[string, RegExp]> = [
  ['provider transport: openai SDK', /node_modules\/openai\//],
  ['provider transport: fetch (undici)', /^node:internal\/deps\/undici|node_modules\/undici\//],
  ['PostgreSQL client (pg)', /node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-[a-z]+)\//],
  ['job queue (pg-boss)', /node_modules\/pg-boss\//],
  ['Redis and rate limit', /node_modules\/(ioredis|@ioredis\/[^/]+|redis-[a-z]+|@fastify\/rate-limit)\//],
  ['AI token (JWT)', /node_modules\/(fast-jwt|@fastify\/jwt|jose)\//],
  ['multipart parsing (busboy)', /node_modules\/(@fastify\/busboy|@fastify\/multipart|busboy)\//],
  ['image checks (sharp)', /node_modules\/sharp\//],
  ['validation (ajv, TypeBox)', /node_modules\/(ajv|ajv-formats|typebox|@sinclair\/typebox|fast-uri|json-schema-traverse)\//],
  ['Fastify (routing, hooks, serialisation)', /node_modules\/(fastify|find-my-way|avvio|fast-json-stringify|@fastify\/[^/]+|fastify-plugin|light-my-request|toad-cache|rfdc|secure-json-parse|fast-querystring|process-warning|abstract-logging)\//],
  ['logging (pino)', /node_modules\/(pino|@pinojs\/[^/]+|sonic-boom|thread-stream|fast-redact|pino-std-serializers|quick-format-unescaped|on-exit-leak-free|atomic-sleep|safe-stable-stringify)\//],
  ['metrics (prom-client)', /node_modules\/(prom-client|tdigest|bintrees)\//],
  ['tracing (OpenTelemetry)', /node_modules\/@opentelemetry\//],
  ['retry policy (cockatiel)', /node_modules\/cockatiel\//],
  ['service code', /^file:\/\/.*\/(dist|plugins|routes|providers|schemas)\/|^file:\/\/.*\/server\.js/],
  ['other libraries', /node_modules\//]
]
const TIMERS = /^node:(internal\/abort_controller|internal\/event_target|internal\/timers|timers)\b/
const NODE_HTTP = /^node:(_http_|net|internal\/stream_base_commons|internal\/streams\/|stream|internal\/http|http)/

export interface ProfileRow { part: string, msPerCall: number, share: number }
export interface ProfileTable {
  /** Calls the window's CPU is divided by. */
  calls: number
  /** Busy CPU per call (idle excluded), ms. */
  cpuMsPerCall: number
  /** Share of the window the server's main thread was busy. */
  busy: number
  rows: ProfileRow[]
}

/** The parts of a profile's busy time in the window [fromUs, toUs] (the monotonic clock of process.hrtime, µs). */
export function profileTable (profile: CpuProfile, calls: number, fromUs = -Infinity, toUs = Infinity): ProfileTable {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const partOf = new Map<number, string | null>()
  const classify = (id: number): string | null => {
    const known = partOf.get(id)
    if (known !== undefined) return known
    const node = byId.get(id) as ProfileNode
    const { functionName, url } = node.callFrame
    let part: string | null = null
    if (functionName === '(idle)') part = null
    else if (functionName === '(garbage collector)') part = 'garbage collection'
    else if (functionName === '(program)') part = 'V8 and native code'
    else {
      // The nearest frame that names a part; Node's own timers and abort signals are charged where they run.
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frameUrl = (byId.get(at) as ProfileNode).callFrame.url
        if (at === id && TIMERS.test(frameUrl)) { part = 'timers and abort signals'; break }
        const found = PARTS.find(([, pattern]) => pattern.test(frameUrl))
        if (found !== undefined) { part = found[0]; break }
      }
      part ??= TIMERS.test(url) ? 'timers and abort signals' : NODE_HTTP.test(url) ? 'Node HTTP server and sockets' : 'Node runtime (other)'
    }
    partOf.set(id, part)
    return part
  }
  const spent = new Map<string, number>()
  let busyUs = 0
  let windowUs = 0
  let at = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] as number
    at += delta
    if (at < fromUs || at > toUs) continue
    windowUs += delta
    const part = classify(profile.samples[i] as number)
    if (part === null) continue
    busyUs += delta
    spent.set(part, (spent.get(part) ?? 0) + delta)
  }
  const rows = [...spent.entries()]
    .map(([part, us]) => ({ part, msPerCall: round(us / 1000 / calls, 3), share: round((us / busyUs) * 100, 1) }))
    .sort((a, b) => b.msPerCall - a.msPerCall)
  return { calls, cpuMsPerCall: round(busyUs / 1000 / calls, 3), busy: round(busyUs / windowUs), rows }
}

/** The table in Markdown. */
export function profileMarkdown (table: ProfileTable): string {
  return [
    `CPU of the server per call: ${table.cpuMsPerCall} ms over ${table.calls} calls (main thread busy ${Math.round(table.busy * 100)} % of the window).`,
    '',
    '| part | ms per call | share |',
    '| --- | --- | --- |',
    ...table.rows.map((row) => `| ${row.part} | ${row.msPerCall.toFixed(3)} | ${row.share.toFixed(1)} % |`)
  ].join('\n')
}

export const readProfile = (file: string): CpuProfile => JSON.parse(readFileSync(file, 'utf8')) as CpuProfile

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, calls] = process.argv.slice(2)
  if (file === undefined) throw new Error('usage: tsx bench/profile.ts FILE.cpuprofile [calls]')
  process.stdout.write(profileMarkdown(profileTable(readProfile(file), Number(calls ?? '1'))) + '\n')
}
