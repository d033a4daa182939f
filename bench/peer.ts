import { spawn, spawnSync } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, ROOT, waitFor } from './harness.js'

/**
 * The peer of `npm run bench`: Portkey's open-source AI gateway (`@portkey-ai/gateway`), a pass-through gateway
 * with no auth, quota or ledger of its own. Installed on demand into bench/.peer (never a dependency of the service,
 * kept out of git), started on the project's Node, and sent the same calls as the service, to the same fake upstream.
 */
export const PORTKEY_VERSION = '1.15.2'
const PEER_DIR = join(ROOT, 'bench', '.peer')
const GATEWAY = join(PEER_DIR, 'node_modules', '@portkey-ai', 'gateway')

function install () {
  const installed = join(GATEWAY, 'package.json')
  if (existsSync(installed) && (JSON.parse(readFileSync(installed, 'utf8')) as { version: string }).version === PORTKEY_VERSION) return
  mkdirSync(PEER_DIR, { recursive: true })
  writeFileSync(join(PEER_DIR, 'package.json'), JSON.stringify({ private: true, dependencies: { '@portkey-ai/gateway': PORTKEY_VERSION } }, null, 2) + '\n')
  process.stdout.write(`installing @portkey-ai/gateway@${PORTKEY_VERSION} into bench/.peer (the benchmark's peer)\n`)
  const run = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock'], { cwd: PEER_DIR, stdio: 'inherit' })
  if (run.status !== 0) throw new Error(`npm install of @portkey-ai/gateway failed (exit ${String(run.status)})`)
}

export interface Peer {
  /** Portkey's chat completions endpoint. */
  chatUrl: string
  /** The headers that send a call through Portkey to the fake upstream as the OpenAI provider. */
  headers: Record<string, string>
  pid: number
  close: () => Promise<void>
}

/**
 * Starts a server of the bench beside the service (`node ARGS`, on a free port that `args` receives), logging to
 * `<logs>/<name>.log`, and waits until `health` (a path) answers 2xx.
 */
async function startServer (name: string, logs: string, args: (port: number) => string[], opts: { cwd: string, env: NodeJS.ProcessEnv, health: string }) {
  const port = await freePort()
  const log = createWriteStream(join(logs, `${name}.log`))
  const child = spawn(process.execPath, args(port), { cwd: opts.cwd, env: { PATH: process.env.PATH, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.pipe(log)
  child.stderr.pipe(log)
  const base = `http://127.0.0.1:${port}`
  await waitFor(`${base}${opts.health}`, child, name, logs)
  return {
    base,
    pid: child.pid as number,
    close: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

/** Installs (once) and starts Portkey's gateway, routing OpenAI calls to `upstreamUrl`; its log goes to `<logs>/portkey.log`. */
export async function startPortkey (upstreamUrl: string, logs: string): Promise<Peer> {
  install()
  // --headless: no log UI; NODE_ENV=production: no dev routes. PORT would be ignored: the port is an argument.
  const { base, pid, close } = await startServer('portkey', logs, (port) => [join(GATEWAY, 'build', 'start-server.js'), `--port=${port}`, '--headless'],
    { cwd: PEER_DIR, env: { NODE_ENV: 'production' }, health: '/' })
  return {
    chatUrl: `${base}/v1/chat/completions`,
    headers: {
      'content-type': 'application/json',
      authorization: 'Bearer bench-openai-key',
      'x-portkey-provider': 'openai',
      'x-portkey-custom-host': `${upstreamUrl}/v1`
    },
    pid,
    close
  }
}

/**
 * Scenario 4's floor: `bench/image-pass-through.ts`, a bare pass-through of a background removal over the global
 * fetch, started beside the service against the same fake upstream; its log goes to `<logs>/pass-through.log`.
 */
export async function startImagePassThrough (upstreamUrl: string, logs: string): Promise<{ url: string, close: () => Promise<void> }> {
  const { base, close } = await startServer('pass-through', logs, (port) => ['--import', 'tsx', join(ROOT, 'bench', 'image-pass-through.ts'), String(port)],
    { cwd: ROOT, env: { UPSTREAM: upstreamUrl }, health: '/health' })
  return { url: `${base}/remove`, close }
}
