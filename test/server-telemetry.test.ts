import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import t from 'tap'
import { TEST_SECRETS } from './helper.js'
import { otlpCollector } from './otlp-collector.js'
import { baseEnv, root, SERVER, start } from './server-process.js'

// The real server's telemetry: the metrics listener and the OTLP export (a file of its own, so that each of the
// files that start server processes stays well inside tap's per-file time limit on a busy machine).

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
