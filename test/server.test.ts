import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { createServer } from 'node:net'
import t from 'tap'
import { TEST_SECRETS } from './helper.js'
import { baseEnv, root, SERVER, start } from './server-process.js'

t.test('PORT=abc stops startup with exit code 1 and names PORT', async (t) => {
  const run = spawnSync(process.execPath, SERVER, { cwd: root, env: baseEnv({ PORT: 'abc' }), encoding: 'utf8' })
  t.equal(run.status, 1)
  t.match(run.stderr, /PORT must be a whole number from 0 to 65535/)
  t.notMatch(run.stderr, /abc/)
})

t.test('two bad variables are both named in one run', async (t) => {
  const run = spawnSync(process.execPath, SERVER, { cwd: root, env: baseEnv({ PORT: 'abc', LOG_LEVEL: 'loud' }), encoding: 'utf8' })
  t.equal(run.status, 1)
  t.match(run.stderr, /2 problems/)
  t.match(run.stderr, /PORT must be/)
  t.match(run.stderr, /LOG_LEVEL must be/)
})

t.test('an unreadable TLS file stops startup naming the variable', async (t) => {
  const run = spawnSync(process.execPath, SERVER, {
    cwd: root,
    env: baseEnv({ TLS_CERT_FILE: '/nonexistent/cert.pem', TLS_KEY_FILE: '/nonexistent/key.pem' }),
    encoding: 'utf8'
  })
  t.equal(run.status, 1)
  t.match(run.stderr, /TLS_CERT_FILE cannot be read \(ENOENT\)/)
})

t.test('a bad plans file or an unreachable database stops startup with a clear message', async (t) => {
  const plans = join(mkdtempSync(join(tmpdir(), 'plans-')), 'plans.json')
  writeFileSync(plans, JSON.stringify({ plans: { pro: { name: 'Pro', features: { 'mind-reading': { quota: { limit: 1, period: 'day' }, rateLimitPerMinute: 1 } } } } }))
  const badPlans = spawnSync(process.execPath, SERVER, { cwd: root, env: baseEnv({ ...TEST_SECRETS, PLANS_FILE: plans }), encoding: 'utf8' })
  t.equal(badPlans.status, 1)
  t.match(badPlans.stderr, /PLANS_FILE \/plans\/pro\/features\/mind-reading: no such feature/)

  const noDb = spawnSync(process.execPath, SERVER, { cwd: root, env: baseEnv({ ...TEST_SECRETS, DATABASE_URL: 'postgres://127.0.0.1:1/none' }), encoding: 'utf8' })
  t.equal(noDb.status, 1)
  t.match(noDb.stderr, /^portal-ai-api: startup failed: .*ECONNREFUSED/)
})

t.test('a port in use stops startup naming it', async (t) => {
  const blocker = createServer().listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  t.teardown(() => blocker.close())
  const port = String((blocker.address() as { port: number }).port)
  const run = spawnSync(process.execPath, SERVER, { cwd: root, env: baseEnv({ ...TEST_SECRETS, PORT: port }), encoding: 'utf8' })
  t.equal(run.status, 1)
  t.match(run.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)`))
})

t.test('the server starts, serves readiness and /docs, and shuts down cleanly on SIGTERM', async (t) => {
  const { child, lines, address } = await start(t, TEST_SECRETS)
  t.match(address, /^http:\/\/127\.0\.0\.1:\d+$/)
  const ready = await fetch(`${address}/health/ready`)
  t.equal(ready.status, 200)
  t.match(await ready.json(), { status: 'ready', checks: { database: { status: 'ok' } } })
  const docs = await fetch(`${address}/docs`, { redirect: 'follow' })
  t.equal(docs.status, 200)
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0)
  t.ok(lines.some((l) => l.msg === 'shutting down: draining in-flight requests' && l.signal === 'SIGTERM'))
  t.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('API reference (Swagger UI) at')))
  const text = JSON.stringify(lines)
  for (const secret of Object.values(TEST_SECRETS)) t.notOk(text.includes(secret), 'no secret in the logs')
})

t.test('TLS_CERT_FILE and TLS_KEY_FILE serve HTTPS', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portal-ai-api-tls-'))
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' })
  t.equal(made.status, 0, 'openssl made a self-signed certificate')
  const { child, address } = await start(t, { ...TEST_SECRETS, TLS_CERT_FILE: cert, TLS_KEY_FILE: key })
  t.match(address, /^https:\/\//)
  child.kill('SIGINT')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0)
})
