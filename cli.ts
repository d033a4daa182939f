#!/usr/bin/env node
import { realpathSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { embeddedSecretsFile, loadConfig, parseEnv, readEmbeddedSecrets } from './plugins/config.js'
import type { AiAnalyticsValue } from './schemas/analytics.js'
import type { Static } from 'typebox'
import type { CreditAccount } from './schemas/billing.js'

/**
 * `portal-ai-api` — the operator's command line. Every command but `migrate` is a client of the admin API
 * of a running server (the embedded database belongs to that one process).
 */
export const USAGE = `Usage: portal-ai-api <command> [options]

Commands:
  migrate                                              apply database migrations
  licenses grant --user ID --plan PLAN [--until ISO]   create or replace a user's license
  licenses suspend --user ID                           suspend it (AI tokens stop being minted)
  keys create --user ID --mode live|test [--name L]    print a new API key (shown once)
  keys list --user ID                                  list a user's keys
  keys revoke KEY_ID                                   revoke a key
  usage --user ID [--mode live|test]                   usage of the current period
  analytics [--from ISO] [--to ISO] [--mode live|test] chat calls by model and vendor (default: last 30 days)
  credits grant --user ID --cents N --reason TEXT [--mode live|test]
                                                       add purchased credits (they never expire)
  credits show --user ID [--mode live|test]            a user's credit balance
  jobs list [--queue Q] [--state S] [--limit N]        recent jobs: queue, state, attempts, error code
  jobs retry JOB_ID                                    put a failed job back in its queue
  content rekey                                        re-encrypt stored content under the first CONTENT_KEYS key

Options:
  --url URL    server to talk to (default http://127.0.0.1:$PORT, PORT defaulting to 3000)
  --json       print one JSON object on stdout and nothing else
  -h, --help   this help

The admin token comes from ADMIN_TOKEN, or from DATA_DIR/secrets.json (written by the embedded server
on its first start) on the same machine.`

export interface CliIo {
  env: NodeJS.ProcessEnv
  stdout: (text: string) => void
  stderr: (text: string) => void
  fetch: typeof fetch
}

class CliError extends Error {
  constructor (message: string, readonly exitCode = 1) { super(message) }
}

function adminToken (env: NodeJS.ProcessEnv): string {
  if (env.ADMIN_TOKEN !== undefined && env.ADMIN_TOKEN !== '') return env.ADMIN_TOKEN
  // DATA_DIR and its default as the server reads them (an empty value counts as unset).
  const dataDir = parseEnv({ DATA_DIR: env.DATA_DIR }).DATA_DIR
  const saved = readEmbeddedSecrets(dataDir)
  if (saved !== null) return saved.adminToken
  throw new CliError(`No admin token: set ADMIN_TOKEN, or run this where the embedded server keeps ${embeddedSecretsFile(dataDir)}.`)
}

interface ErrorBody { error?: { code?: string, message?: string, requestId?: string } }

async function call (io: CliIo, base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response
  try {
    res = await io.fetch(new URL(path, base), {
      method,
      headers: { authorization: `Bearer ${adminToken(io.env)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000)
    })
  } catch (err) {
    if (err instanceof CliError) throw err
    throw new CliError(`Cannot reach the server at ${base}: is it running (npm start)? Use --url to point elsewhere.`)
  }
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new CliError(`The server at ${base} answered ${res.status} with something that is not JSON: is it portal-ai-api?`)
  }
  if (!res.ok) {
    const error = (parsed as ErrorBody).error
    throw new CliError(`${error?.code ?? `HTTP ${res.status}`}: ${error?.message ?? 'request failed'}${error?.requestId === undefined ? '' : ` (request ${error.requestId})`}`)
  }
  return parsed
}

function need (value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new CliError(`Missing ${flag}.\n\n${USAGE}`, 2)
  return value
}

interface Key { id: string, userId: string, mode: string, name: string | null, prefix: string, createdAt: string, lastUsedAt: string | null, revokedAt: string | null, key?: string }
interface Usage {
  userId: string,
  plan: string,
  mode: string,
  features: Array<{ id: string, unit: string, period: string, limit: number, used: number, reserved: number, remaining: number, resetsAt: string }>
}
type CreditAccountValue = Static<typeof CreditAccount>
interface License { userId: string, plan: string, status: string, validUntil: string | null }
interface Job { id: string, queue: string, state: string, retryCount: number, retryLimit: number, createdAt: string, errorCode: string | null }

const describeLicense = (l: License) =>
  `${l.userId}: plan ${l.plan}, ${l.status}${l.validUntil === null ? '' : `, until ${l.validUntil}`}`

export async function runCli (argv: string[], io: CliIo): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        user: { type: 'string' },
        plan: { type: 'string' },
        until: { type: 'string' },
        mode: { type: 'string' },
        name: { type: 'string' },
        queue: { type: 'string' },
        state: { type: 'string' },
        limit: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        cents: { type: 'string' },
        reason: { type: 'string' }
      }
    })
    const [command, sub, arg] = positionals
    if (values.help || command === undefined) {
      io.stdout(`${USAGE}\n`)
      return values.help ? 0 : 2
    }
    const base = values.url ?? `http://127.0.0.1:${io.env.PORT ?? '3000'}`
    const print = (json: unknown, human: string) => io.stdout(values.json ? `${JSON.stringify(json)}\n` : `${human}\n`)

    switch (`${command} ${sub ?? ''}`.trim()) {
      case 'migrate': {
        const { createStore, migrate } = await import('./plugins/store/index.js')
        const store = await createStore(loadConfig(io.env))
        try {
          const applied = await migrate(store)
          print({ applied, store: store.kind }, applied.length === 0 ? 'The database is up to date.' : `Applied migrations ${applied.join(', ')}.`)
        } finally {
          await store.close()
        }
        return 0
      }
      case 'licenses grant': {
        const user = need(values.user, '--user')
        const license = await call(io, base, 'PUT', `/v1/admin/licenses/${encodeURIComponent(user)}`,
          { plan: need(values.plan, '--plan'), status: 'active', validUntil: values.until ?? null }) as License
        print(license, `Granted: ${describeLicense(license)}`)
        return 0
      }
      case 'licenses suspend': {
        const path = `/v1/admin/licenses/${encodeURIComponent(need(values.user, '--user'))}`
        const current = await call(io, base, 'GET', path) as License
        const license = await call(io, base, 'PUT', path, { plan: current.plan, status: 'suspended', validUntil: current.validUntil }) as License
        print(license, `Suspended: ${describeLicense(license)}`)
        return 0
      }
      case 'keys create': {
        const mode = need(values.mode, '--mode')
        if (mode !== 'live' && mode !== 'test') throw new CliError('--mode must be live or test.', 2)
        const key = await call(io, base, 'POST', '/v1/admin/keys',
          { userId: need(values.user, '--user'), mode, ...(values.name === undefined ? {} : { name: values.name }) }) as Key
        print(key, `Created ${key.mode} key ${key.id} for ${key.userId}:\n\n  ${key.key as string}\n\nStore it now: it is not shown again.`)
        return 0
      }
      case 'keys list': {
        const list = await call(io, base, 'GET', `/v1/admin/keys?userId=${encodeURIComponent(need(values.user, '--user'))}`) as { keys: Key[] }
        const lines = list.keys.map((k) => [k.id, k.prefix + '…', k.mode, k.name ?? '-', k.createdAt, k.lastUsedAt ?? 'never',
          k.revokedAt === null ? 'active' : `revoked ${k.revokedAt}`].join('  '))
        print(list, lines.length === 0 ? 'No keys.' : ['id  prefix  mode  name  created  last used  state', ...lines].join('\n'))
        return 0
      }
      case 'keys revoke': {
        const key = await call(io, base, 'DELETE', `/v1/admin/keys/${encodeURIComponent(need(arg, 'KEY_ID'))}`) as Key
        print(key, `Revoked ${key.id} (${key.prefix}…) of ${key.userId}.`)
        return 0
      }
      case 'usage': {
        const query = new URLSearchParams({ userId: need(values.user, '--user'), mode: values.mode ?? 'live' })
        const usage = await call(io, base, 'GET', `/v1/admin/usage?${query.toString()}`) as Usage
        const lines = usage.features.map((f) => `${f.id}: ${f.used} of ${f.limit} ${f.unit} used this ${f.period}` +
          `${f.reserved > 0 ? ` (${f.reserved} in flight)` : ''}, ${f.remaining} left, resets ${f.resetsAt}`)
        print(usage, [`${usage.userId} (${usage.plan}, ${usage.mode}):`, ...lines.map((l) => `  ${l}`)].join('\n'))
        return 0
      }
      case 'analytics': {
        const query = new URLSearchParams({ mode: values.mode ?? 'live' })
        if (values.from !== undefined) query.set('from', values.from)
        if (values.to !== undefined) query.set('to', values.to)
        const report = await call(io, base, 'GET', `/v1/admin/analytics/ai?${query.toString()}`) as AiAnalyticsValue
        const lines = report.data.map((r) => [r.vendor, r.model, r.calls, r.completed, r.errors, r.aborted, r.blocked, r.inputTokens + r.outputTokens,
          r.costCents, `${r.ttftP50Ms ?? '-'}/${r.ttftP95Ms ?? '-'}`, `+${r.feedbackUp}/-${r.feedbackDown}`].join('  '))
        print(report, [`${report.mode} calls from ${report.from} to ${report.to}:`,
          ...(lines.length === 0 ? ['  none'] : ['  vendor  model  calls  completed  errors  aborted  blocked  tokens  cents  ttft p50/p95 ms  feedback', ...lines.map((l) => `  ${l}`)])].join('\n'))
        return 0
      }
      case 'credits grant':
      case 'credits show': {
        const userId = encodeURIComponent(need(values.user, '--user'))
        const mode = values.mode ?? 'live'
        const account = sub === 'grant'
          ? await call(io, base, 'POST', `/v1/admin/credits/${userId}`, { amountCents: Number(need(values.cents, '--cents')), reason: need(values.reason, '--reason'), mode }) as CreditAccountValue
          : await call(io, base, 'GET', `/v1/admin/credits/${userId}?mode=${encodeURIComponent(mode)}`) as CreditAccountValue
        const b = account.balance
        const cents = (n: number) => `$${(n / 100).toFixed(2)}`
        print(account, [
          `${account.userId} (${account.plan ?? 'no license'}, ${account.mode})${account.grantId === undefined ? '' : `: added, ${account.grantId}`}`,
          `  balance ${cents(b.balanceCents)}: free ${cents(b.freeCreditsRemainingCents)} until ${b.freeCreditsResetAt}, purchased ${cents(b.purchasedCreditsCents)}; charged so far ${cents(b.lifetimeUsageCents)}`,
          ...(b.billed ? [] : ['  (the plan is not billed in credits: calls are limited by quotas only)'])
        ].join('\n'))
        return 0
      }
      case 'jobs list': {
        const query = new URLSearchParams()
        if (values.queue !== undefined) query.set('queue', values.queue)
        if (values.state !== undefined) query.set('state', values.state)
        if (values.limit !== undefined) query.set('limit', values.limit)
        const list = await call(io, base, 'GET', `/v1/admin/jobs?${query.toString()}`) as { data: Job[] }
        const lines = list.data.map((j) => [j.id, j.queue, j.state, `${j.retryCount}/${j.retryLimit}`, j.createdAt, j.errorCode ?? '-'].join('  '))
        print(list, lines.length === 0 ? 'No jobs.' : ['id  queue  state  retries  created  error', ...lines].join('\n'))
        return 0
      }
      case 'jobs retry': {
        const job = await call(io, base, 'POST', `/v1/admin/jobs/${encodeURIComponent(need(arg, 'JOB_ID'))}/retry`) as Job
        print(job, `Job ${job.id} (${job.queue}) is queued again.`)
        return 0
      }
      case 'content rekey': {
        const result = await call(io, base, 'POST', '/v1/admin/content/rekey') as { keyId: string, rekeyed: Record<string, number> }
        const total = Object.values(result.rekeyed).reduce((a, b) => a + b, 0)
        print(result, `Re-encrypted ${total} rows under key ${result.keyId}` +
          `${total === 0 ? '' : ` (${Object.entries(result.rekeyed).filter(([, n]) => n > 0).map(([table, n]) => `${table} ${n}`).join(', ')})`}.`)
        return 0
      }
      default:
        throw new CliError(`Unknown command: ${positionals.join(' ')}\n\n${USAGE}`, 2)
    }
  } catch (err) {
    if (err instanceof CliError) {
      io.stderr(`portal-ai-api: ${err.message}\n`)
      return err.exitCode
    }
    if ((err as Error).name === 'ConfigError') {
      io.stderr(`portal-ai-api: ${(err as Error).message}\n`)
      return 1
    }
    const code = (err as { code?: string }).code
    if (code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.stderr(`portal-ai-api: ${(err as Error).message}\n\n${USAGE}\n`)
      return 2
    }
    io.stderr(`portal-ai-api: failed: ${(err as Error).message}\n`)
    return 1
  }
}

/* c8 ignore start -- the process entry point; the tests call runCli and also spawn this file */
// Run as a program (also through a bin symlink, hence realpath), not when imported by the tests.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  const io: CliIo = { env: process.env, stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s), fetch }
  process.exitCode = await runCli(process.argv.slice(2), io)
}
/* c8 ignore stop */
