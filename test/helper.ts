import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import type { Test } from 'tap'
import { buildApp } from '../app.js'
import { loadConfig, type Config } from '../plugins/config.js'
import { loggerOptions } from '../plugins/privacy.js'

/** Secrets of the test configuration: long enough to pass validation, recognisable in a leak. */
export const TEST_SECRETS = {
  AI_TOKEN_SECRET: 'test-ai-token-secret-abcdefghijklmnopqrstuvwxyz',
  USER_HASH_SECRET: 'test-user-hash-secret-abcdefghijklmnopqrstuvwxyz',
  ADMIN_TOKEN: 'test-admin-token-abcdefghijklmnopqrstuvwxyz0123'
}

export function testConfig (env: Record<string, string> = {}): Config {
  return loadConfig({ ...TEST_SECRETS, LOG_LEVEL: 'debug', ...env })
}

/** Every log line the app wrote, as parsed JSON, plus the raw text for leak checks. */
export class LogCapture {
  readonly lines: string[] = []
  write (line: string) { this.lines.push(line) }
  get text () { return this.lines.join('') }
  get entries (): Array<Record<string, unknown>> { return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
  find (msg: string) { return this.entries.filter((e) => e.msg === msg) }
}

export interface BuildOptions {
  env?: Record<string, string>
  /** Extra plugins registered after the app (test-only routes, for example). */
  register?: (app: FastifyInstance) => Promise<void> | void
}

/** The whole app with the test configuration, its log lines captured, closed when the test ends. */
export async function build (t: Test, opts: BuildOptions = {}) {
  const config = testConfig(opts.env)
  const logs = new LogCapture()
  const app = await buildApp(config, pino(loggerOptions(config), logs))
  if (opts.register !== undefined) await opts.register(app)
  await app.ready()
  t.teardown(() => app.close())
  return { app, logs, config }
}
