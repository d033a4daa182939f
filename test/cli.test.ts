import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { runCli, USAGE, type CliIo } from '../cli.js'
import { createPostgresStore } from '../plugins/store/index.js'
import { build, newUserId, TEST_SECRETS, TEST_DATABASE_URL } from './helper.js'

/** Runs the CLI in-process against `url`, capturing its output. */
async function cli (args: string[], env: NodeJS.ProcessEnv = { ADMIN_TOKEN: TEST_SECRETS.ADMIN_TOKEN }) {
  let stdout = ''
  let stderr = ''
  const io: CliIo = { env, stdout: (s) => { stdout += s }, stderr: (s) => { stderr += s }, fetch }
  const code = await runCli(args, io)
  return { code, stdout, stderr }
}

async function listening (t: Test, env?: Record<string, string>) {
  const { app } = await build(t, env === undefined ? {} : { env })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url }
}

t.test('licenses and keys through the admin API, human and --json output', async (t) => {
  const { app, url } = await listening(t)
  const user = newUserId('cli')
  const granted = await cli(['licenses', 'grant', '--user', user, '--plan', 'pro', '--url', url])
  t.equal(granted.code, 0)
  t.equal(granted.stdout, `Granted: ${user}: plan pro, active\n`)
  const until = await cli(['licenses', 'grant', '--user', user, '--plan', 'team', '--until', '2030-01-01T00:00:00.000Z', '--url', url, '--json'])
  t.match(JSON.parse(until.stdout), { userId: user, plan: 'team', validUntil: '2030-01-01T00:00:00.000Z' })

  const created = await cli(['keys', 'create', '--user', user, '--mode', 'test', '--name', 'qa', '--url', url, '--json'])
  t.equal(created.code, 0)
  const key = JSON.parse(created.stdout)
  t.match(key, { userId: user, mode: 'test', name: 'qa', key: /^pak_test_/ })
  t.equal(created.stdout.trim().split('\n').length, 1, '--json prints one object and nothing else')
  const human = await cli(['keys', 'create', '--user', user, '--mode', 'live', '--url', url])
  t.match(human.stdout, /^Created live key key_\w+ for cli-\w+:\n\n {2}pak_live_\w{40}\n\nStore it now: it is not shown again\.\n$/)

  await fetch(`${url}/v1/ai/tokens`, { method: 'POST', headers: { authorization: `Bearer ${key.key as string}` } })
  await app.apiKeys.flushLastUsed()
  const list = await cli(['keys', 'list', '--user', user, '--url', url])
  t.match(list.stdout, /^id {2}prefix/)
  t.equal(list.stdout.trim().split('\n').length, 3)
  t.notOk(list.stdout.includes(key.key), 'the list never shows a key')
  const listJson = JSON.parse((await cli(['keys', 'list', '--user', user, '--url', url, '--json'])).stdout)
  t.equal(listJson.keys.length, 2)
  t.equal((await cli(['keys', 'list', '--user', newUserId(), '--url', url])).stdout, 'No keys.\n')

  const revoked = await cli(['keys', 'revoke', key.id, '--url', url])
  t.equal(revoked.code, 0)
  t.match(revoked.stdout, new RegExp(`^Revoked ${key.id as string} \\(pak_test_\\w{6}…\\) of ${user}\\.`))
  t.match((await cli(['keys', 'list', '--user', user, '--url', url])).stdout, /revoked /)

  const suspended = await cli(['licenses', 'suspend', '--user', user, '--url', url])
  t.equal(suspended.stdout, `Suspended: ${user}: plan team, suspended, until 2030-01-01T00:00:00.000Z\n`)
})

t.test('usage of the current period', async (t) => {
  const { app, url } = await listening(t)
  const user = newUserId('cli')
  await cli(['licenses', 'grant', '--user', user, '--plan', 'free', '--url', url])
  const quota = { limit: 5, period: 'day' as const }
  const done = await app.metering.reserve({ userId: user, mode: 'test', feature: 'background-removal' }, quota, 1)
  await app.metering.settle(done, { provider: 'sandbox', units: 1 })
  await app.metering.reserve({ userId: user, mode: 'test', feature: 'background-removal' }, quota, 1)
  const human = await cli(['usage', '--user', user, '--mode', 'test', '--url', url])
  t.equal(human.code, 0)
  t.match(human.stdout, new RegExp(`^${user} \\(free, test\\):\n {2}settings-assistant: 0 of 20000 tokens used this day, 20000 left, resets \\S+\n {2}background-removal: 1 of 5 images used this day \\(1 in flight\\), 3 left, resets \\S+\n {2}chat: 0 of 50000 tokens used this day, 50000 left, resets \\S+\n {2}virtual-staging: 0 of 3 stagings used this day, 3 left, resets \\S+\n {2}risk-scan: 0 of 5 scans used this day, 5 left, resets \\S+\n$`))
  const json = JSON.parse((await cli(['usage', '--user', user, '--url', url, '--json'])).stdout)
  t.match(json, { userId: user, mode: 'live', features: [{ used: 0 }, { used: 0 }] })
})

t.test('analytics of chat calls by model and vendor', async (t) => {
  const { app, url } = await listening(t)
  t.match((await cli(['analytics', '--url', url])).stdout, /^live calls from \S+ to \S+:\n {2}none\n$/)
  await app.aiCalls.record({ feature: 'chat', mode: 'test', model: 'gpt-4o-mini', vendor: 'openai', outcome: 'completed', inputTokens: 100, outputTokens: 20, costMicroUsd: 27, ttftMs: 300 })
  await app.aiCalls.record({ feature: 'chat', mode: 'test', model: 'claude-haiku-4-5', vendor: 'anthropic', outcome: 'failed', errorCode: 'PROVIDER_TIMEOUT' })
  const human = await cli(['analytics', '--mode', 'test', '--from', '2026-01-01T00:00:00Z', '--to', '2099-01-01T00:00:00Z', '--url', url])
  t.equal(human.code, 1, 'a period over 366 days is refused')
  const to = new Date(Date.now() + 60_000).toISOString()
  const ok = await cli(['analytics', '--mode', 'test', '--from', new Date(Date.now() - 86_400_000).toISOString(), '--to', to, '--url', url])
  t.match(ok.stdout, /\n {2}anthropic {2}claude-haiku-4-5 {2}1 {2}0 {2}1 {2}0 {2}0 {2}0 {2}0 {2}-\/- {2}\+0\/-0\n {2}openai {2}gpt-4o-mini {2}1 {2}1 {2}0 {2}0 {2}0 {2}120 {2}0 {2}300\/300 {2}\+0\/-0\n$/, 'as many calls: by vendor')
  t.match(JSON.parse((await cli(['analytics', '--mode', 'test', '--json', '--url', url])).stdout), { mode: 'test', totals: { calls: 2, errors: 1 } })
})

t.test('credits grant and show', async (t) => {
  const plans = join(mkdtempSync(join(tmpdir(), 'cli-plans-')), 'plans.json')
  writeFileSync(plans, JSON.stringify({ plans: { billed: { name: 'Billed', features: {}, credits: { monthlyFreeCents: 100 } } } }))
  const { url } = await listening(t, { PLANS_FILE: plans })
  const user = newUserId('cli-credits')
  const shown = await cli(['credits', 'show', '--user', user, '--url', url])
  t.match(shown.stdout, new RegExp(`^${user} \\(no license, live\\)\n {2}balance \\$0\\.00: free \\$0\\.00 until \\S+, purchased \\$0\\.00; charged so far \\$0\\.00\n {2}\\(the plan is not billed in credits`))
  const granted = await cli(['credits', 'grant', '--user', user, '--cents', '1250', '--reason', 'Order 7', '--mode', 'test', '--url', url])
  t.match(granted.stdout, /: added, grant_\d+\n {2}balance \$12\.50: free \$0\.00 until \S+, purchased \$12\.50/)
  t.match(JSON.parse((await cli(['credits', 'show', '--user', user, '--mode', 'test', '--json', '--url', url])).stdout), { userId: user, mode: 'test', balance: { purchasedCreditsCents: 1250 } })
  const bad = await cli(['credits', 'grant', '--user', user, '--cents=-5', '--reason', 'x', '--url', url])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /VALIDATION_ERROR/)
  t.equal((await cli(['credits', 'grant', '--user', user, '--reason', 'x', '--url', url])).code, 2, 'missing --cents')
  await cli(['licenses', 'grant', '--user', user, '--plan', 'billed', '--url', url])
  t.match((await cli(['credits', 'show', '--user', user, '--url', url])).stdout, new RegExp(`^${user} \\(billed, live\\)\n {2}balance \\$1\\.00: free \\$1\\.00 until \\S+, purchased \\$0\\.00; charged so far \\$0\\.00\n$`), 'a billed plan: no note')
})

t.test('errors go to stderr with a non-zero exit code', async (t) => {
  const { url } = await listening(t)
  const notFound = await cli(['licenses', 'suspend', '--user', newUserId(), '--url', url])
  t.equal(notFound.code, 1)
  t.equal(notFound.stdout, '')
  t.match(notFound.stderr, /^portal-ai-api: NOT_FOUND: This user has no license\. \(request [\w-]+\)\n$/)

  const badPlan = await cli(['licenses', 'grant', '--user', 'u', '--plan', 'gold', '--url', url, '--json'])
  t.equal(badPlan.code, 1)
  t.equal(badPlan.stdout, '', 'nothing on stdout, even with --json')
  t.match(badPlan.stderr, /VALIDATION_ERROR: This plan is not configured/)
  t.notMatch(badPlan.stderr, /gold/, 'the request text is not echoed')

  const wrongToken = await cli(['keys', 'list', '--user', 'u', '--url', url], { ADMIN_TOKEN: 'x'.repeat(40) })
  t.match(wrongToken.stderr, /UNAUTHENTICATED/)

  t.equal((await cli(['keys', 'create', '--user', 'u', '--url', url])).code, 2, 'missing --mode')
  t.match((await cli(['keys', 'create', '--user', 'u', '--mode', 'prod', '--url', url])).stderr, /--mode must be live or test/)
  t.equal((await cli(['keys', 'revoke', '--url', url])).code, 2, 'missing key id')
  const unknown = await cli(['keys', 'rotate'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /Unknown command: keys rotate/)
  const badFlag = await cli(['keys', 'list', '--bogus'])
  t.equal(badFlag.code, 2)
  t.match(badFlag.stderr, /Unknown option '--bogus'/)
})

t.test('help, and no command', async (t) => {
  t.same(await cli(['--help']), { code: 0, stdout: `${USAGE}\n`, stderr: '' })
  t.equal((await cli([])).code, 2)
})

t.test('a server that is down, or not ours, or no admin token', async (t) => {
  const down = await cli(['keys', 'list', '--user', 'u', '--url', 'http://127.0.0.1:1'])
  t.equal(down.code, 1)
  t.match(down.stderr, /Cannot reach the server at http:\/\/127\.0\.0\.1:1/)

  const other = createServer((_req, res) => { res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad gateway</h1>') })
  other.listen(0, '127.0.0.1')
  await once(other, 'listening')
  t.teardown(() => other.close())
  const html = await cli(['keys', 'list', '--user', 'u', '--url', `http://127.0.0.1:${(other.address() as AddressInfo).port}`])
  t.match(html.stderr, /answered 502 with something that is not JSON/)

  const dataDir = mkdtempSync(join(tmpdir(), 'cli-'))
  const noToken = await cli(['keys', 'list', '--user', 'u'], { DATA_DIR: dataDir, ADMIN_TOKEN: '' })
  t.equal(noToken.code, 1)
  t.match(noToken.stderr, /No admin token: set ADMIN_TOKEN/)
  writeFileSync(join(dataDir, 'secrets.json'), JSON.stringify({ aiTokenSecret: 'from-file-ai-token-secret-abcdefghijklmnopqrstuvwxyz', adminToken: 'from-file-admin-token-abcdefghijklmnopqrstuvwxyz' }))
  const fromFile = await cli(['keys', 'list', '--user', 'u', '--url', 'http://127.0.0.1:1'], { DATA_DIR: dataDir, PORT: '1' })
  t.match(fromFile.stderr, /Cannot reach/, 'the token was read from DATA_DIR/secrets.json; only the server was missing')
  const errorBody = createServer((_req, res) => { res.writeHead(500, { 'content-type': 'application/json' }).end('{}') })
  errorBody.listen(0, '127.0.0.1')
  await once(errorBody, 'listening')
  t.teardown(() => errorBody.close())
  const bare = await cli(['keys', 'list', '--user', 'u', '--url', `http://127.0.0.1:${(errorBody.address() as AddressInfo).port}`])
  t.equal(bare.stderr, 'portal-ai-api: HTTP 500: request failed\n')
})

t.test('without DATA_DIR the admin token is looked for in ./data of the working directory', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'cli-cwd-'))
  const run = spawnSync(process.execPath, [...process.execArgv, new URL('../cli.ts', import.meta.url).pathname, 'keys', 'list', '--user', 'u'], {
    cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME }, encoding: 'utf8'
  })
  t.equal(run.status, 1)
  t.equal(run.stderr, `portal-ai-api: No admin token: set ADMIN_TOKEN, or run this where the embedded server keeps ${join(cwd, 'data', 'secrets.json')}.\n`)
})

t.test('migrate applies the migrations once, and reports a bad configuration', async (t) => {
  // A database that has never been migrated: a new folder, or an empty schema of its own on PostgreSQL.
  let env: NodeJS.ProcessEnv = { DATA_DIR: mkdtempSync(join(tmpdir(), 'cli-migrate-')) }
  if (TEST_DATABASE_URL !== undefined) {
    const schema = `cli_${newUserId('m').replace('-', '_')}`
    const admin = createPostgresStore(TEST_DATABASE_URL)
    await admin.exec(`CREATE SCHEMA ${schema}`)
    t.teardown(async () => { await admin.exec(`DROP SCHEMA ${schema} CASCADE`); await admin.close() })
    const url = new URL(TEST_DATABASE_URL)
    url.searchParams.set('options', `-c search_path=${schema}`)
    env = { DATABASE_URL: url.toString(), ...TEST_SECRETS }
  }
  const first = await cli(['migrate'], env)
  t.equal(first.code, 0)
  t.equal(first.stdout, 'Applied migrations 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13.\n')
  const second = await cli(['migrate', '--json'], env)
  t.same(JSON.parse(second.stdout), { applied: [], store: TEST_DATABASE_URL === undefined ? 'embedded' : 'postgres' })
  t.equal((await cli(['migrate'], env)).stdout, 'The database is up to date.\n')

  const unreachable = await cli(['migrate'], { DATABASE_URL: 'postgres://127.0.0.1:1/none', ...TEST_SECRETS })
  t.equal(unreachable.code, 1)
  t.match(unreachable.stderr, /^portal-ai-api: failed: .*ECONNREFUSED/)

  const bad = await cli(['migrate'], { PORT: 'abc' })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /PORT must be a whole number/)
})

t.test('acceptance: while the embedded server runs, a test key made with the CLI in another process mints an AI token', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cli-e2e-'))
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: dataDir, PORT: '0', METRICS_PORT: '0' }
  const server = spawn(process.execPath, [...process.execArgv, 'server.ts'], { cwd: new URL('..', import.meta.url), env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (server.exitCode === null) server.kill('SIGKILL') })
  const lines: Array<Record<string, unknown>> = []
  const url = await new Promise<string>((resolve, reject) => {
    let buffer = ''
    server.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffer += chunk
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        const line = JSON.parse(buffer.slice(0, i)) as Record<string, unknown>
        buffer = buffer.slice(i + 1)
        lines.push(line)
        const match = /^Server listening at (\S+)$/.exec(String(line.msg))
        if (match?.[1] !== undefined) resolve(match[1])
      }
    })
    server.once('exit', (code) => reject(new Error(`server exited ${String(code)}`)))
  })
  t.ok(lines.some((l) => /No API keys yet\. .*npm run cli -- keys create --user qa-user --mode test/.test(String(l.msg))), 'the first start says how to make a test key')

  // "Another terminal": the CLI as its own process, with only DATA_DIR to find the admin token.
  const runCliProcess = (args: string[]) => spawnSync(process.execPath, [...process.execArgv, 'cli.ts', ...args, '--url', url], {
    cwd: new URL('..', import.meta.url), env: { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: dataDir }, encoding: 'utf8'
  })
  t.equal(runCliProcess(['licenses', 'grant', '--user', 'qa-user', '--plan', 'pro']).status, 0)
  const created = runCliProcess(['keys', 'create', '--user', 'qa-user', '--mode', 'test', '--json'])
  t.equal(created.status, 0, created.stderr)
  const { key } = JSON.parse(created.stdout) as { key: string }

  const minted = await fetch(`${url}/v1/ai/tokens`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })
  t.equal(minted.status, 201)
  const { token } = await minted.json() as { token: string }
  const claims = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>
  t.match(claims, { sub: 'qa-user', plan: 'pro', features: ['settings-assistant', 'background-removal'], mode: 'test' })

  const entitlements = await fetch(`${url}/v1/ai/entitlements`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(entitlements.status, 200)
  t.match(await entitlements.json(), { plan: 'pro', mode: 'test', features: [{ id: 'settings-assistant', quota: { limit: 2000000, period: 'month' } }, { id: 'background-removal', quota: { limit: 500 } }] })

  server.kill('SIGTERM')
  t.equal((await once(server, 'exit'))[0], 0)
})
