import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

/**
 * The real entry point, run from source with the TypeScript loader this test runs under, so the child's
 * coverage maps onto the same sources (`npm start` runs the same file compiled).
 */
export const SERVER = [...process.execArgv, 'server.ts']
export const root = new URL('..', import.meta.url)

export function baseEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const { PATH, HOME } = process.env
  // No metrics listener unless a test asks for one: servers of parallel tests would share its default port.
  return { PATH, HOME, DATA_DIR: mkdtempSync(join(tmpdir(), 'portal-ai-api-server-')), METRICS_PORT: '0', ...extra }
}

/** Starts the server on a free port and resolves with its address once it listens; `args` may pick another loader. */
export async function start (t: Test, env: Record<string, string>, args: string[] = SERVER) {
  const child = spawn(process.execPath, args, { cwd: root, env: baseEnv({ PORT: '0', ...env }), stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const lines: Array<Record<string, unknown>> = []
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const address = await new Promise<string>((resolve, reject) => {
    let buffer = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk
      let newline: number
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>
        buffer = buffer.slice(newline + 1)
        lines.push(line)
        const match = /^Server listening at (\S+)$/.exec(String(line.msg))
        if (match?.[1] !== undefined) resolve(match[1])
      }
    })
    child.once('exit', (code) => reject(new Error(`server exited (${String(code)}) before listening: ${stderr}`)))
  })
  return { child, lines, address }
}
