import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { createServer } from 'node:net'
import t from 'tap'
import { TEST_SECRETS } from './helper.js'
import { otlpCollector } from './otlp-collector.js'
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

t.test('a metrics port in use stops startup naming METRICS_PORT; a free one serves Prometheus text, not on the public port', async (t) => {
  const blocker = createServer()
  blocker.listen(0, '127.0.0.1')
  await once(blocker, 'listening')
  t.teardown(() => blocker.close())
  const taken = String((blocker.address() as { port: number }).port)
  const run = spawnSync(process.execPath, SERVER, { cwd: root, env: baseEnv({ ...TEST_SECRETS, METRICS_PORT: taken }), encoding: 'utf8' })
  t.equal(run.status, 1)
  t.match(run.stderr, new RegExp(`cannot open the metrics listener on 127\\.0\\.0\\.1:${taken} \\(EADDRINUSE\\).*Set METRICS_PORT`))

  blocker.close()
  await once(blocker, 'close')
  const { lines, address } = await start(t, { ...TEST_SECRETS, METRICS_PORT: taken })
  t.ok(lines.some((l) => l.msg === 'metrics listening' && l.url === `http://127.0.0.1:${taken}/metrics`))
  await fetch(`${address}/health/live`)
  const metrics = await fetch(`http://127.0.0.1:${taken}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /http_requests_total\{route="\/health\/live",feature="none",method="GET",status_code="200"\} 1/)
  t.equal((await fetch(`${address}/metrics`)).status, 404)
})

t.test('with OTEL_EXPORTER_OTLP_ENDPOINT the real server exports its spans, the last ones at shutdown', async (t) => {
  const { endpoint, bodies } = await otlpCollector(t)
  // A trailing slash, as operators write it: the traces path is added once.
  const { child, lines, address } = await start(t, { ...TEST_SECRETS, OTEL_EXPORTER_OTLP_ENDPOINT: `${endpoint}/` })
  t.ok(lines.some((l) => l.msg === 'tracing: spans are exported over OTLP/HTTP'))
  const res = await fetch(`${address}/health/live`)
  child.kill('SIGTERM')
  await once(child, 'exit')
  const exported = bodies.join('\n')
  t.match(exported, /"name":"GET \/health\/live"/)
  t.ok(exported.includes(String(res.headers.get('x-request-id'))), 'the span carries the request id')
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
