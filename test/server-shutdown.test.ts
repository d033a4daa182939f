import { mkdtempSync } from 'node:fs'
import { once } from 'node:events'
import { Agent, get as httpGet, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createEmbeddedStore } from '../plugins/store/index.js'
import { createFakeUpstream } from './fake-upstream.js'
import { TEST_SECRETS } from './helper.js'
import { start } from './server-process.js'

/** The real entry point shutting down while streams are in flight (server.ts: drain notice, stop margin, grace). */
t.test('SIGTERM during streams: readiness turns 503 first, a stream that can finish finishes, a held one ends with an error event, and every call has its ledger row', async (t) => {
  const upstream = createFakeUpstream().listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.closeAllConnections(); upstream.close() })
  const up = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`
  const control = (change: Record<string, unknown>) => fetch(`${up}/_control`, { method: 'POST', body: JSON.stringify(change) })
  await control({ hold: true })

  const dataDir = mkdtempSync(join(tmpdir(), 'portal-ai-api-shutdown-'))
  const { child, lines, address } = await start(t, { ...TEST_SECRETS, DATA_DIR: dataDir, OPENAI_API_KEY: 'sk-shutdown-test', OPENAI_BASE_URL: `${up}/v1` })
  const admin = { authorization: `Bearer ${TEST_SECRETS.ADMIN_TOKEN}`, 'content-type': 'application/json' }
  await fetch(`${address}/v1/admin/licenses/shutdown-user`, { method: 'PUT', headers: admin, body: JSON.stringify({ plan: 'pro' }) })
  const { key } = await (await fetch(`${address}/v1/admin/keys`, { method: 'POST', headers: admin, body: JSON.stringify({ userId: 'shutdown-user', mode: 'live' }) })).json() as { key: string }
  const { token } = await (await fetch(`${address}/v1/ai/tokens`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })).json() as { token: string }

  // A kept-alive connection, as a load balancer's health checks have.
  const probeAgent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => probeAgent.destroy())
  const probe = () => new Promise<{ status: number, body: string }>((resolve, reject) => {
    httpGet(`${address}/health/ready`, { agent: probeAgent }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
  t.equal((await probe()).status, 200)

  const stream = () => {
    let text = ''
    let sawDelta: () => void = () => {}
    const firstDelta = new Promise<void>((resolve) => { sawDelta = resolve })
    const ended = new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${address}/v1/ai/settings-assistant/messages`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' }
      }, (res) => {
        res.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk
          if (text.includes('event: delta')) sawDelta()
        }).on('end', () => resolve(text))
      })
      req.on('error', reject)
      req.end(JSON.stringify({ message: 'How do I make my exports sharper?' }))
    })
    return { firstDelta, ended }
  }
  const finishing = stream()
  await finishing.firstDelta
  const held = stream()
  await held.firstDelta

  child.kill('SIGTERM')
  await once(child.stdout, 'data')
  const draining = await probe()
  t.equal(draining.status, 503, 'readiness turns 503 while the instance drains')
  t.match(JSON.parse(draining.body), { status: 'draining' })
  await control({ release: 1 })

  t.match(await finishing.ended, /event: done\ndata: \{"id":/, 'the released stream finishes normally')
  const cut = await held.ended
  t.match(cut, /event: error\ndata: \{"error":\{"code":"PROVIDER_UNAVAILABLE","message":"The service is restarting: ask again in a moment\."/,
    'the held stream ends with an error event before the grace period runs out')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, 'a clean exit, within the grace period')
  t.ok(lines.some((l) => l.msg === 'assistant call settled' && l.outcome === 'shutdown'))

  const store = await createEmbeddedStore(dataDir)
  t.teardown(() => store.close())
  const { rows } = await store.query<{ estimated: boolean }>("SELECT estimated FROM usage_ledger WHERE user_id = 'shutdown-user' ORDER BY id")
  t.same(rows.map((r) => r.estimated), [false, true], 'both calls are in the ledger; the stopped one estimated from what it generated')
})
