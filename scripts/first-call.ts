import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { freePort, waitFor } from '../bench/harness.js'

// `npm run first-call`: a new user's first five minutes, scripted and timed. From a fresh clone of this checkout's
// HEAD: npm install, npm start on the embedded defaults, a test key with the CLI, then through the TypeScript client
// a streamed Settings Assistant reply, a cut-out, a staged room and a document scan. Prints each step's wall time.
// `--here` skips the clone and the install (this checkout, as it is); `--keep` leaves the clone.

const { values } = parseArgs({ options: { here: { type: 'boolean', default: false }, keep: { type: 'boolean', default: false } } })
const REPO = fileURLToPath(new URL('..', import.meta.url))
const started = performance.now()
const times: Array<{ step: string, seconds: number }> = []

async function step<T> (name: string, run: () => Promise<T> | T): Promise<T> {
  const at = performance.now()
  process.stdout.write(`• ${name} …\n`)
  const result = await run()
  const seconds = (performance.now() - at) / 1000
  times.push({ step: name, seconds })
  process.stdout.write(`  done in ${seconds.toFixed(1)} s\n`)
  return result
}

/** Runs a command in the checkout, its output shown only when it fails. */
function run (dir: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.on('error', reject)
    child.on('close', (code) => code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited with ${String(code)}:\n${out}`)))
  })
}

const dir = values.here ? REPO : mkdtempSync(join(tmpdir(), 'portal-ai-first-call-'))
// The server's output, kept where a failed start can be read (removed after a run that passed).
const logs = mkdtempSync(join(tmpdir(), 'portal-ai-first-call-logs-'))
let server: ChildProcess | undefined
try {
  if (!values.here) {
    await step('git clone', () => { execFileSync('git', ['clone', '--quiet', REPO, dir]) })
    await step('npm install', () => run(dir, 'npm', ['install', '--no-audit', '--no-fund']))
  }
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'warn' }
  for (const name of ['ADMIN_TOKEN', 'DATABASE_URL', 'REDIS_URL']) delete env[name]
  await step('npm start (build, then serve on the embedded defaults)', async () => {
    server = spawn('npm', ['start'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    const log = createWriteStream(join(logs, 'server.log'))
    server.stdout?.pipe(log)
    server.stderr?.pipe(log)
    await waitFor(`${base}/health/ready`, server, 'server', logs, 300_000)
  })
  const key = await step('a test key (npm run cli -- licenses grant / keys create)', async () => {
    await run(dir, 'npm', ['run', '-s', 'cli', '--', 'licenses', 'grant', '--user', 'first-call', '--plan', 'pro', '--url', base], env)
    const created = await run(dir, 'npm', ['run', '-s', 'cli', '--', 'keys', 'create', '--user', 'first-call', '--mode', 'test', '--json', '--url', base], env)
    return (JSON.parse(created.slice(created.indexOf('{'))) as { key: string }).key
  })

  // The client as a user of the checkout imports it: its source, from the clone.
  const client = await import(pathToFileURL(join(dir, 'clients/typescript/src/index.ts')).href) as typeof import('../clients/typescript/src/index.js')
  const portal = client.createPortalClient({ baseUrl: base, token: client.aiTokenSource({ baseUrl: base, credential: key }) })

  await step('a streamed Settings Assistant reply', async () => {
    let reply = ''
    for await (const event of await portal.streamSettingsAssistant({ message: 'How do I make my exports sharper?' })) {
      if (event.event === 'delta') reply += event.data.text
      if (event.event === 'done') process.stdout.write(`  ${reply.length} characters, finish ${event.data.finishReason}, ${event.data.quota.remaining} calls left this period\n`)
    }
  })
  const sharp = (await import('sharp')).default
  const photo = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#d9c8b0' } })
    .composite([{ input: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480"><rect y="300" width="640" height="180" fill="#8a6a4a"/><rect x="240" y="80" width="160" height="140" fill="#cfe3f5"/></svg>') }])
    .jpeg().toBuffer()
  const files = mkdtempSync(join(tmpdir(), 'portal-ai-first-call-files-'))
  writeFileSync(join(files, 'room.jpg'), photo)
  writeFileSync(join(files, 'lease.txt'), 'Clause 4. The tenant pays for every repair of the building, structural ones included, without limit.\n')

  await step('a cut-out (background removal)', async () => {
    const { data } = await portal.POST('/v1/ai/background-removal', { body: { image: await client.fileFrom(join(files, 'room.jpg')) }, parseAs: 'blob' })
    process.stdout.write(`  ${data.type}, ${data.size} bytes\n`)
  })
  await step('a staged room (submitted, then polled to completed)', async () => {
    const { data: submitted } = await portal.POST('/v1/ai/stagings', { body: { image: await client.fileFrom(join(files, 'room.jpg')), style: 'scandinavian', qualityMode: 'standard' } })
    let staging = submitted
    for (let i = 0; i < 240 && (staging?.status === 'queued' || staging?.status === 'processing'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 250))
      staging = (await portal.GET('/v1/ai/stagings/{id}', { params: { path: { id: submitted?.id as string } } })).data
    }
    if (staging?.status !== 'completed') throw new Error(`the staging ended ${String(staging?.status)}`)
    process.stdout.write(`  ${staging.id} completed\n`)
  })
  await step('a document scan', async () => {
    const { data: scan } = await portal.POST('/v1/ai/scans', { body: { file: await client.fileFrom(join(files, 'lease.txt')) } })
    process.stdout.write(`  ${scan.id}: ${scan.data.length} risk(s) found\n`)
  })
  rmSync(files, { recursive: true, force: true })
} finally {
  if (server?.pid !== undefined && server.exitCode === null) {
    const exited = new Promise((resolve) => server?.once('close', resolve))
    process.kill(-server.pid, 'SIGTERM')
    await exited
  }
  if (!values.here && !values.keep) rmSync(dir, { recursive: true, force: true })
}
rmSync(logs, { recursive: true, force: true })

const total = (performance.now() - started) / 1000
process.stdout.write('\nstep | seconds\n--- | ---\n')
for (const { step: name, seconds } of times) process.stdout.write(`${name} | ${seconds.toFixed(1)}\n`)
process.stdout.write(`**total** | **${total.toFixed(1)}** (target: under 300)\n`)
