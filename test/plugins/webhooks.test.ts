import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import t, { type Test } from 'tap'
import { createContentCrypto, parseKeyRing, type KeyRing } from '../../plugins/content-crypto.js'
import type { Jobs } from '../../plugins/jobs.js'
import { createWebhooks, guardedLookup, isPublicAddress, refuseTarget } from '../../plugins/webhooks.js'
import { createTestStore, TEST_SECRETS } from '../helper.js'

interface Received { headers: IncomingHttpHeaders, body: string }

/** A receiver on loopback that answers with `status()` (or holds the request when it says 'hold'). */
async function receiver (t: Test, status: () => number | 'hold' | 'redirect' = () => 204) {
  const received: Received[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => {
      received.push({ headers: req.headers, body })
      const s = status()
      if (s === 'hold') return
      if (s === 'redirect') { res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data' }).end(); return }
      res.writeHead(s, { 'content-type': 'text/plain' }).end('x'.repeat(100_000))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received }
}

async function setup (t: Test, opts: { now?: () => number, allowPrivate?: boolean } = {}) {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const sent: Array<{ deliveryId: string }> = []
  const jobs = { send: async (_queue: string, data: { deliveryId: string }) => { sent.push(data); return 'job' } } as unknown as Jobs
  const disabled: string[] = []
  const webhooks = createWebhooks({
    db: store,
    crypto: createContentCrypto(parseKeyRing(TEST_SECRETS.CONTENT_KEYS) as KeyRing),
    jobs,
    allowPrivate: opts.allowPrivate ?? true,
    onDisabled: async (e) => { disabled.push(e.id) },
    timeoutMs: 300,
    ...(opts.now === undefined ? {} : { now: opts.now })
  })
  t.teardown(() => webhooks.close())
  const attempt = async (retryCount = 0, signal = new AbortController().signal) => webhooks.queue.handler({ data: sent[sent.length - 1] as { deliveryId: string }, retryCount, signal })
  return { store, webhooks, sent, disabled, attempt }
}

t.test('public addresses only, resolved: loopback, private, link-local, metadata, mapped and unique-local refused', async (t) => {
  for (const a of ['8.8.8.8', '2606:4700:4700::1111']) t.ok(isPublicAddress(a), a)
  for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '224.0.0.1', 'nonsense']) {
    t.notOk(isPublicAddress(a), a)
  }
  const lookup = async (host: string) => ({ 'public.example': ['93.184.215.14'], 'inside.example': ['93.184.215.14', '10.0.0.5'] } as Record<string, string[]>)[host] ?? Promise.reject(new Error('ENOTFOUND'))
  t.equal(await refuseTarget('https://public.example/hook', false, lookup), null)
  t.equal(await refuseTarget('https://[2606:4700:4700::1111]/hook', false, lookup), null)
  t.match(await refuseTarget('http://public.example/hook', false, lookup), /https/)
  t.match(await refuseTarget('https://inside.example/hook', false, lookup), /public address/, 'one private address among several is enough to refuse')
  t.match(await refuseTarget('https://127.0.0.1/hook', false, lookup), /public address/)
  t.match(await refuseTarget('https://[::ffff:169.254.169.254]/latest', false, lookup), /public address/)
  t.match(await refuseTarget('https://localhost/hook', false), /public address/, 'the real resolver: localhost is loopback')
  t.match(await refuseTarget('https://nowhere.invalid/hook', false), /does not resolve/, 'the real resolver: a reserved name that never resolves')
  t.match(await refuseTarget('https://nowhere.invalid/hook', false, lookup), /does not resolve/)
  t.match(await refuseTarget('https://user:pw@public.example/hook', false, lookup), /user name or password/)
  t.match(await refuseTarget('ftp://public.example/x', true, lookup), /https/)
  t.match(await refuseTarget('not a url', true, lookup), /not a URL/)
  t.equal(await refuseTarget('http://127.0.0.1:9/hook', true, lookup), null, 'allowed when the operator says so')
})

t.test('the connection-time lookup refuses a name that now resolves to a private address (DNS rebinding)', async (t) => {
  const refusedLookup = await new Promise<NodeJS.ErrnoException | null>((resolve) => guardedLookup(false)('localhost', {}, (err) => resolve(err)))
  t.match(refusedLookup, { code: 'EPRIVATEADDR' })
  const allowed = await new Promise<unknown[]>((resolve) => guardedLookup(true)('localhost', { all: true }, (_err, addresses) => resolve(addresses as unknown[])))
  t.ok(allowed.length > 0)
  const single = await new Promise<[unknown, unknown]>((resolve) => guardedLookup(true)('localhost', {}, (_err, address, family) => resolve([address, family])))
  t.match(single, [/^(127\.0\.0\.1|::1)$/, /^[46]$/])
  const failed = await new Promise<NodeJS.ErrnoException | null>((resolve) => guardedLookup(true)('nowhere.invalid', {}, (err) => resolve(err)))
  t.ok(failed)
})

t.test('a delivery is signed per Standard Webhooks and carries ids and statuses only', async (t) => {
  const { webhooks, sent, attempt, store } = await setup(t)
  const hook = await receiver(t)
  const created = await webhooks.create('u1', { url: hook.url, events: ['staging.completed'] })
  t.match(created.secret, /^whsec_[A-Za-z0-9+/]{43}=$/)
  t.same(await webhooks.emit('u1', 'staging.failed', { stagingId: 's1' }), [], 'not subscribed')
  t.same(await webhooks.emit('u2', 'staging.completed', { stagingId: 's1' }), [], 'another user\'s event')
  const [deliveryId] = await webhooks.emit('u1', 'staging.completed', { stagingId: 's1', status: 'completed' })
  t.same(sent, [{ deliveryId }])
  t.same(await attempt(), { outcome: 'delivered' })
  const [got] = hook.received
  t.match(got?.headers, { 'webhook-id': deliveryId, 'content-type': 'application/json', 'user-agent': /^portal-ai-api-webhooks/ })
  t.match(JSON.parse(got?.body as string), { type: 'staging.completed', timestamp: /Z$/, data: { stagingId: 's1', status: 'completed' } })
  const verified = new StandardWebhook(created.secret.slice('whsec_'.length)).verify(got?.body as string, got?.headers as Record<string, string>)
  t.match(verified, { type: 'staging.completed' }, 'the receiver verifies it with the secret it was shown')
  t.same(await attempt(), { outcome: 'gone' }, 'a repeat of a finished delivery sends nothing')
  t.equal(hook.received.length, 1)
  const { rows } = await store.query<{ status: string, attempts: number, last_status: number }>('SELECT status, attempts, last_status FROM webhook_deliveries')
  t.same(rows, [{ status: 'delivered', attempts: 1, last_status: 204 }])
  const dump = JSON.stringify((await store.query('SELECT * FROM webhook_endpoints')).rows)
  t.notOk(dump.includes(created.secret.slice(6)), 'the secret is stored only encrypted')
  t.notOk(dump.includes('127.0.0.1'), 'and so is the url')
})

t.test('receiver down, failing, slow or redirecting: retried; past 24 h the delivery fails; failing 3 days disables the endpoint', async (t) => {
  let clock = Date.now()
  const { webhooks, attempt, store, disabled } = await setup(t, { now: () => clock })
  let status: number | 'hold' | 'redirect' = 500
  const hook = await receiver(t, () => status)
  const created = await webhooks.create('u1', { url: hook.url, events: ['scan.completed'] })
  await webhooks.emit('u1', 'scan.completed', { scanId: 'x' })
  await t.rejects(attempt(0), { code: 'DELIVERY_FAILED' }, 'HTTP 500: retried later')
  status = 'redirect'
  await t.rejects(attempt(1), { code: 'DELIVERY_FAILED' }, 'a redirect is not followed')
  t.equal(hook.received.length, 2, 'the redirect target was never called')
  status = 'hold'
  await t.rejects(attempt(2), { code: 'DELIVERY_FAILED' }, 'no answer within the timeout')
  const row = async () => (await store.query<{ status: string, attempts: number, last_status: number | null, last_error: string }>('SELECT status, attempts, last_status, last_error FROM webhook_deliveries')).rows[0]
  t.match(await row(), { status: 'pending', attempts: 3, last_error: 'timeout' })
  status = 204
  t.same(await attempt(3), { outcome: 'delivered' }, 'the receiver is back')
  t.match((await store.query('SELECT failing_since FROM webhook_endpoints')).rows, [{ failing_since: null }], 'a success clears the failing state')

  status = 503
  await webhooks.emit('u1', 'scan.completed', { scanId: 'y' })
  clock += 25 * 3600_000
  t.same(await attempt(5), { outcome: 'failed' }, 'past 24 hours: given up')
  await webhooks.emit('u1', 'scan.completed', { scanId: 'z' })
  t.same(await attempt(30), { outcome: 'failed' }, 'the last retry')

  await webhooks.emit('u1', 'scan.completed', { scanId: 'w' })
  clock += 3 * 86_400_000
  t.same(await attempt(0), { outcome: 'disabled' }, 'failing for 3 days')
  t.same(disabled, [created.id])
  t.match(await webhooks.get('u1', created.id), { enabled: false, disabledReason: 'failing' })
  t.match(await webhooks.update('u1', created.id, { description: 'still off' }), { enabled: false, disabledReason: 'failing' }, 'another change keeps it off, and why')
  await webhooks.emit('u1', 'scan.completed', { scanId: 'v' })
  t.same((await store.query('SELECT count(*)::int AS n FROM webhook_deliveries WHERE status = $1', ['pending'])).rows, [{ n: 0 }], 'a disabled endpoint gets no deliveries')
  t.match(await webhooks.update('u1', created.id, { enabled: true }), { enabled: true, disabledReason: null })
})

t.test('a receiver that is down: connection refused, retried later', async (t) => {
  const { webhooks, attempt, store } = await setup(t)
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as AddressInfo).port
  await new Promise((resolve) => closed.close(resolve))
  await webhooks.create('u1', { url: `http://127.0.0.1:${port}/hook`, events: ['scan.completed'] })
  await webhooks.emit('u1', 'scan.completed', { scanId: 'x' })
  await t.rejects(attempt(0), { code: 'DELIVERY_FAILED' })
  t.match((await store.query('SELECT status, last_status, last_error FROM webhook_deliveries')).rows, [{ status: 'pending', last_status: null, last_error: 'ECONNREFUSED' }])
  const stopped = new AbortController()
  stopped.abort()
  await t.rejects(attempt(1, stopped.signal), { code: 'DELIVERY_FAILED' }, 'a job stopped at shutdown is retried later')
  t.match((await store.query('SELECT last_error FROM webhook_deliveries')).rows, [{ last_error: 'AbortError' }])
})

t.test('a delivery to an endpoint turned off or on a refused address fails without a call', async (t) => {
  const { webhooks, attempt } = await setup(t)
  const hook = await receiver(t)
  const created = await webhooks.create('u1', { url: hook.url, events: ['ping'] })
  await webhooks.test('u1', created.id)
  await webhooks.update('u1', created.id, { enabled: false })
  t.same(await attempt(), { outcome: 'disabled' })
  // Saved while the operator allowed private addresses; the guard is on now.
  const crypto = createContentCrypto(parseKeyRing(TEST_SECRETS.CONTENT_KEYS) as KeyRing)
  const guarded = await setup(t, { allowPrivate: false })
  const bind = (column: string) => ({ table: 'webhook_endpoints', column, rowId: 'wh_0000000000000000', userId: 'u1' })
  const row = await guarded.store.query('INSERT INTO webhook_endpoints (id, user_id, events, key_id, url_sealed, secret_sealed) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
    ['wh_0000000000000000', 'u1', ['ping'], 'test1', crypto.seal(hook.url, bind('url_sealed')).data, crypto.seal('whsec_AAAA', bind('secret_sealed')).data])
  t.equal(row.rowCount, 1)
  await guarded.webhooks.test('u1', 'wh_0000000000000000')
  t.same(await guarded.attempt(), { outcome: 'refused' }, 'saved before the guard was on: refused at delivery')
  t.equal(hook.received.length, 0)
})
