import { randomBytes } from 'node:crypto'
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns'
import fp from 'fastify-plugin'
import ipaddr from 'ipaddr.js'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import type { Agent } from 'undici'
import type { WebhookBody, WebhookEventType } from '../schemas/webhooks.js'
import { cursorPosition, pageOf } from '../schemas/pagination.js'
import type { ContentCrypto } from './content-crypto.js'
import { AppError } from './errors.js'
import type { Jobs } from './jobs.js'
import type { Queryable } from './store/index.js'

export const DELIVER_QUEUE = 'webhooks.deliver'
/** Each attempt: connect, send and get an answer within this. */
const DELIVERY_TIMEOUT_MS = 10_000
/** Of an endpoint's answer, at most this much is read (and thrown away); the status is what counts. */
const MAX_ANSWER_BYTES = 4096
/** A delivery is retried with exponential backoff (30 s, 1 min, … at most 1 h apart) for this long. */
const RETRY_WINDOW_MS = 24 * 3600_000
const RETRY_LIMIT = 30
const RETRY_FIRST_DELAY_S = 30
const RETRY_MAX_DELAY_S = 3600
/** An endpoint that has failed every delivery for this long is disabled. */
const DISABLE_AFTER_MS = 3 * 86_400_000
/** Endpoints per user: enough for any app, bounded so one user cannot fan an event out without end. */
export const MAX_ENDPOINTS_PER_USER = 20
const SECRET_BYTES = 32
const USER_AGENT = 'portal-ai-api-webhooks/1'

type Lookup = (hostname: string) => Promise<string[]>
const lookupAll: Lookup = async (hostname) => new Promise((resolve, reject) => {
  dnsLookup(hostname, { all: true }, (err, addresses) => { if (err === null) resolve(addresses.map((a) => a.address)); else reject(err) })
})

/**
 * Only public unicast addresses: loopback, private, link-local (cloud metadata at 169.254.169.254), carrier-grade
 * NAT, multicast, reserved and the IPv6 equivalents (unique-local, link-local, mapped and translated IPv4) are not.
 */
export function isPublicAddress (address: string): boolean {
  if (!ipaddr.isValid(address)) return false
  return ipaddr.process(address).range() === 'unicast'
}

/** Why a target is refused, or null. Names are resolved and every address they resolve to must be public. */
export async function refuseTarget (target: string, allowPrivate: boolean, lookup: Lookup = lookupAll): Promise<string | null> {
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return 'is not a URL'
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an https:// URL'
  if (url.username !== '' || url.password !== '') return 'must not carry a user name or password'
  if (allowPrivate) return null
  if (url.protocol !== 'https:') return 'must be an https:// URL'
  const host = url.hostname.replace(/^\[|\]$/g, '')
  let addresses: string[]
  try {
    addresses = ipaddr.isValid(host) ? [host] : await lookup(host)
  } catch {
    return 'has a host name that does not resolve'
  }
  if (!addresses.every(isPublicAddress)) return 'must be on a public address (not loopback, private, link-local or metadata)'
  return null
}

/**
 * The DNS lookup of delivery connections: a name that now resolves to a private address (DNS rebinding after the
 * endpoint was checked) is refused when the connection is made, not only when the endpoint was saved.
 */
export function guardedLookup (allowPrivate: boolean) {
  return (hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err !== null) return callback(err, [])
      if (!allowPrivate && !addresses.every((a) => isPublicAddress(a.address))) {
        return callback(Object.assign(new Error('webhook target resolves to a private address'), { code: 'EPRIVATEADDR' }), [])
      }
      const first = addresses[0] as LookupAddress
      if (options.all === true) return callback(null, addresses)
      return callback(null, first.address, first.family)
    })
  }
}

interface EndpointRow {
  id: string
  user_id: string
  events: WebhookEventType[]
  enabled: boolean
  disabled_reason: 'failing' | 'by-user' | null
  key_id: string
  url_sealed: Uint8Array
  description_sealed: Uint8Array | null
  secret_sealed: Uint8Array
  failing_since: Date | null
  created_at: Date
  updated_at: Date
}

interface DeliveryRow { id: string, endpoint_id: string, user_id: string, event_type: string, payload: unknown, status: string, created_at: Date }

const ENDPOINTS = 'webhook_endpoints'
const SEALED_COLUMNS = ['url_sealed', 'description_sealed', 'secret_sealed'] as const
type SealedColumn = typeof SEALED_COLUMNS[number]
const binding = (row: { id: string, user_id: string }, column: SealedColumn) => ({ table: ENDPOINTS, column, rowId: row.id, userId: row.user_id })
const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, '').slice(0, 16).padEnd(16, '0')}`

const invalidUrl = (reason: string) =>
  new AppError('VALIDATION_ERROR', `The webhook url ${reason}.`, { fields: [{ location: 'body', path: '/url', message: reason }] })

export interface WebhooksOptions {
  db: Queryable
  crypto: ContentCrypto
  jobs: Jobs
  allowPrivate: boolean
  /** What happens to an endpoint that fails for 3 days: the audit trail hears of it. */
  onDisabled: (endpoint: { id: string, userId: string }) => Promise<void>
  lookup?: Lookup
  now?: () => number
  /** Each attempt's limit; 10 s unless a test shortens it. */
  timeoutMs?: number
  /** Told how each delivery attempt ended: delivered, failed (for good), retry, or disabled, refused, gone. */
  observe?: (result: DeliveryAttemptResult) => void
}

export type DeliveryAttemptResult = 'delivered' | 'failed' | 'retry' | 'disabled' | 'refused' | 'gone'

/** Webhook endpoints and deliveries (SPEC §11): signed per Standard Webhooks, delivered by the job queue. */
export function createWebhooks (opts: WebhooksOptions) {
  const { db, crypto, jobs } = opts
  const now = opts.now ?? Date.now
  const timeoutMs = opts.timeoutMs ?? DELIVERY_TIMEOUT_MS
  // The connection pool of deliveries (undici, loaded with the first delivery: an instance that sends none saves its memory).
  let dispatcher: Agent | undefined
  async function pool (): Promise<Agent> {
    const { Agent } = await import('undici')
    dispatcher ??= new Agent({
      connect: { lookup: guardedLookup(opts.allowPrivate), timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs
    })
    return dispatcher
  }

  /** One sealed column of an endpoint row, opened. */
  const open = (row: { id: string, user_id: string, key_id: string }, column: SealedColumn, data: Uint8Array) =>
    crypto.openText({ keyId: row.key_id, data: Buffer.from(data) }, binding(row, column))

  /** The three values of an endpoint sealed under the primary key, as the columns store them. */
  function sealAll (row: { id: string, user_id: string }, values: { url: string, description: string | null, secret: string }) {
    return {
      keyId: crypto.primaryKeyId,
      url: crypto.seal(values.url, binding(row, 'url_sealed')).data,
      description: values.description === null ? null : crypto.seal(values.description, binding(row, 'description_sealed')).data,
      secret: crypto.seal(values.secret, binding(row, 'secret_sealed')).data
    }
  }

  const toWebhook = (row: EndpointRow): WebhookBody => ({
    id: row.id,
    url: open(row, 'url_sealed', row.url_sealed),
    events: row.events,
    description: row.description_sealed === null ? null : open(row, 'description_sealed', row.description_sealed),
    enabled: row.enabled,
    disabledReason: row.disabled_reason,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  })

  async function checkUrl (url: string) {
    const reason = await refuseTarget(url, opts.allowPrivate, opts.lookup)
    if (reason !== null) throw invalidUrl(reason)
  }

  async function endpoint (userId: string, id: string): Promise<EndpointRow> {
    const { rows } = await db.query<EndpointRow>(`SELECT * FROM ${ENDPOINTS} WHERE id = $1 AND user_id = $2`, [id, userId])
    if (rows[0] === undefined) throw new AppError('NOT_FOUND', 'No such webhook.')
    return rows[0]
  }

  /** Records one delivery per endpoint and queues it, in the caller's transaction when one is given. */
  async function enqueue (tx: Queryable, endpoints: Array<{ id: string, user_id: string }>, type: WebhookEventType, data: Record<string, unknown>) {
    const ids: string[] = []
    for (const e of endpoints) {
      const id = newId('msg')
      const payload = { type, timestamp: new Date(now()).toISOString(), data }
      await tx.query(
        'INSERT INTO webhook_deliveries (id, endpoint_id, user_id, event_type, payload, status) VALUES ($1, $2, $3, $4, $5, \'pending\')',
        [id, e.id, e.user_id, type, JSON.stringify(payload)])
      await jobs.send(DELIVER_QUEUE, { deliveryId: id }, { tx })
      ids.push(id)
    }
    return ids
  }

  /** Reads at most MAX_ANSWER_BYTES of an answer and lets the rest go. */
  async function drainAnswer (res: Response) {
    const reader = res.body?.getReader()
    if (reader === undefined) return
    let read = 0
    while (read < MAX_ANSWER_BYTES) {
      const { done, value } = await reader.read()
      if (done) return
      read += value.byteLength
    }
    await reader.cancel()
  }

  async function settle (deliveryId: string, status: 'delivered' | 'failed' | 'pending', httpStatus: number | null, error: string | null) {
    await db.query(
      `UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_status = $3, last_error = $4,
       delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END WHERE id = $1`,
      [deliveryId, status, httpStatus, error])
  }

  /** One attempt of a delivery (the job handler). Throws to be retried later. */
  async function deliver (deliveryId: string, attempt: number, signal: AbortSignal): Promise<Exclude<DeliveryAttemptResult, 'retry'>> {
    const { rows } = await db.query<DeliveryRow & { enabled: boolean, key_id: string, url_sealed: Uint8Array, secret_sealed: Uint8Array }>(
      `SELECT d.*, e.enabled, e.key_id, e.url_sealed, e.secret_sealed
       FROM webhook_deliveries d JOIN ${ENDPOINTS} e ON e.id = d.endpoint_id WHERE d.id = $1`, [deliveryId])
    const d = rows[0]
    // The endpoint (and its deliveries) was deleted meanwhile, or this attempt is a repeat of a finished one.
    if (d === undefined || d.status !== 'pending') return 'gone'
    if (!d.enabled) {
      await settle(deliveryId, 'failed', null, 'endpoint disabled')
      return 'disabled'
    }
    const endpointRow = { id: d.endpoint_id, user_id: d.user_id, key_id: d.key_id }
    const url = open(endpointRow, 'url_sealed', d.url_sealed)
    const refused = await refuseTarget(url, opts.allowPrivate, opts.lookup)
    if (refused !== null) {
      await settle(deliveryId, 'failed', null, 'target refused')
      return 'refused'
    }
    const secret = open(endpointRow, 'secret_sealed', d.secret_sealed)
    const body = JSON.stringify(d.payload)
    const sentAt = new Date(now())
    let httpStatus: number | null = null
    let error: string | null = null
    // Before the attempt's clock starts: loading the pool the first time is not the receiver's time.
    const dispatcher = await pool()
    try {
      const res = await fetch(url, {
        method: 'POST',
        body,
        redirect: 'manual',
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          'webhook-id': deliveryId,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': new StandardWebhook(secret.slice('whsec_'.length)).sign(deliveryId, sentAt, body)
        },
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        dispatcher
      } as RequestInit)
      httpStatus = res.status
      await drainAnswer(res).catch(() => {})
      if (res.status >= 200 && res.status < 300) {
        await settle(deliveryId, 'delivered', httpStatus, null)
        await db.query(`UPDATE ${ENDPOINTS} SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, [d.endpoint_id])
        return 'delivered'
      }
      error = res.status >= 300 && res.status < 400 ? 'redirect (not followed)' : `HTTP ${res.status}`
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } }
      // A network failure names its code (ECONNREFUSED, …); a stop of the job is an AbortError.
      error = e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? e.name)
    }
    // Failed: the endpoint is failing since its first failure; after 3 days it is disabled.
    const { rows: failing } = await db.query<{ failing_since: Date, user_id: string }>(
      `UPDATE ${ENDPOINTS} SET failing_since = COALESCE(failing_since, now()) WHERE id = $1 RETURNING failing_since, user_id`, [d.endpoint_id])
    const since = failing[0]?.failing_since
    if (since !== undefined && now() - since.getTime() >= DISABLE_AFTER_MS) {
      const { rowCount } = await db.query(
        `UPDATE ${ENDPOINTS} SET enabled = false, disabled_reason = 'failing', updated_at = now() WHERE id = $1 AND enabled`, [d.endpoint_id])
      if (rowCount > 0) await opts.onDisabled({ id: d.endpoint_id, userId: d.user_id })
      await settle(deliveryId, 'failed', httpStatus, error)
      return 'disabled'
    }
    const lastAttempt = attempt >= RETRY_LIMIT || now() - d.created_at.getTime() >= RETRY_WINDOW_MS
    await settle(deliveryId, lastAttempt ? 'failed' : 'pending', httpStatus, error)
    if (lastAttempt) return 'failed'
    throw Object.assign(new Error('webhook delivery failed'), { code: 'DELIVERY_FAILED' })
  }

  return {
    queue: {
      name: DELIVER_QUEUE,
      retryLimit: RETRY_LIMIT,
      retryDelaySeconds: RETRY_FIRST_DELAY_S,
      retryBackoff: true,
      retryDelayMaxSeconds: RETRY_MAX_DELAY_S,
      expireInSeconds: 60,
      handler: async ({ data, retryCount, signal }: { data: { deliveryId: string }, retryCount: number, signal: AbortSignal }) => {
        let outcome: Awaited<ReturnType<typeof deliver>>
        try {
          outcome = await deliver(data.deliveryId, retryCount, signal)
        } catch (err) {
          opts.observe?.('retry')
          throw err
        }
        opts.observe?.(outcome)
        return { outcome }
      }
    },

    async create (userId: string, input: { url: string, events: WebhookEventType[], description?: string }) {
      await checkUrl(input.url)
      const { rows: count } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${ENDPOINTS} WHERE user_id = $1`, [userId])
      if (Number(count[0]?.n) >= MAX_ENDPOINTS_PER_USER) {
        throw new AppError('CONFLICT', `You have ${MAX_ENDPOINTS_PER_USER} webhooks, the most there may be: delete one first.`)
      }
      const id = newId('wh')
      const secret = `whsec_${randomBytes(SECRET_BYTES).toString('base64')}`
      const sealed = sealAll({ id, user_id: userId }, { url: input.url, description: input.description ?? null, secret })
      const { rows } = await db.query<EndpointRow>(
        `INSERT INTO ${ENDPOINTS} (id, user_id, events, key_id, url_sealed, description_sealed, secret_sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
        [id, userId, input.events, sealed.keyId, sealed.url, sealed.description, sealed.secret])
      return { ...toWebhook(rows[0] as EndpointRow), secret }
    },

    async list (userId: string, page: { cursor?: string, limit: number }) {
      const after = page.cursor === undefined ? null : cursorPosition(page.cursor)
      const { rows } = await db.query<EndpointRow>(
        `SELECT * FROM ${ENDPOINTS} WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4`, [userId, after?.createdAt ?? null, after?.id ?? '', page.limit + 1])
      return pageOf(rows, page.limit, toWebhook)
    },

    get: async (userId: string, id: string) => toWebhook(await endpoint(userId, id)),

    async update (userId: string, id: string, patch: { url?: string, events?: WebhookEventType[], description?: string | null, enabled?: boolean }) {
      const current = await endpoint(userId, id)
      if (patch.url !== undefined) await checkUrl(patch.url)
      const before = toWebhook(current)
      const enabled = patch.enabled ?? current.enabled
      const reason = enabled ? null : patch.enabled === false ? 'by-user' : current.disabled_reason
      // Every value is sealed again under the primary key: one key id covers the whole row.
      const sealed = sealAll(current, {
        url: patch.url ?? before.url,
        description: patch.description === undefined ? before.description : patch.description,
        secret: open(current, 'secret_sealed', current.secret_sealed)
      })
      const { rows } = await db.query<EndpointRow>(
        `UPDATE ${ENDPOINTS} SET events = $3, enabled = $4, disabled_reason = $5, key_id = $6, url_sealed = $7, description_sealed = $8,
         secret_sealed = $9, failing_since = CASE WHEN $4 AND NOT enabled THEN NULL ELSE failing_since END, updated_at = now()
         WHERE id = $1 AND user_id = $2 RETURNING *`,
        [id, userId, patch.events ?? current.events, enabled, reason, sealed.keyId, sealed.url, sealed.description, sealed.secret])
      return toWebhook(rows[0] as EndpointRow)
    },

    async delete (userId: string, id: string) {
      const { rowCount } = await db.query(`DELETE FROM ${ENDPOINTS} WHERE id = $1 AND user_id = $2`, [id, userId])
      if (rowCount === 0) throw new AppError('NOT_FOUND', 'No such webhook.')
    },

    /** Sends a `ping` to one endpoint now (whatever its events), for the developer to check their receiver. */
    async test (userId: string, id: string) {
      const e = await endpoint(userId, id)
      if (!e.enabled) throw new AppError('CONFLICT', 'This webhook is disabled: turn it on with PATCH {"enabled": true} first.')
      const [deliveryId] = await enqueue(db, [e], 'ping', { webhookId: e.id })
      return { deliveryId: deliveryId as string, status: 'queued' as const }
    },

    /**
     * What features call when something happened: one signed delivery to each enabled endpoint of the user that
     * subscribed to `type`. `data` carries ids, types and statuses only — never content. With `tx`, the deliveries
     * exist only if the caller's transaction commits.
     */
    async emit (userId: string, type: WebhookEventType, data: Record<string, unknown>, tx: Queryable = db): Promise<string[]> {
      const { rows } = await tx.query<{ id: string, user_id: string }>(
        `SELECT id, user_id FROM ${ENDPOINTS} WHERE user_id = $1 AND enabled AND $2 = ANY(events) ORDER BY created_at`, [userId, type])
      return enqueue(tx, rows, type, data)
    },

    async exportForUser (userId: string) {
      const { rows } = await db.query<EndpointRow>(`SELECT * FROM ${ENDPOINTS} WHERE user_id = $1 ORDER BY created_at, id`, [userId])
      return rows.map(toWebhook)
    },

    async deleteForUser (userId: string) {
      const { rowCount } = await db.query(`DELETE FROM ${ENDPOINTS} WHERE user_id = $1`, [userId])
      return rowCount
    },

    close: async () => { await dispatcher?.close() }
  }
}

export type Webhooks = ReturnType<typeof createWebhooks>

declare module 'fastify' {
  interface FastifyInstance {
    webhooks: Webhooks
  }
}

export default fp(async function webhooks (app) {
  const webhooks = createWebhooks({
    db: app.store,
    crypto: app.contentCrypto,
    jobs: app.jobs,
    allowPrivate: app.config.WEBHOOK_ALLOW_PRIVATE === 'true',
    observe: (result) => { app.metrics.webhookAttempt(result) },
    onDisabled: async (endpoint) => app.audit.record({
      actor: 'system',
      action: 'webhook.disabled',
      target: `webhook:${endpoint.id}`,
      outcome: 'ok',
      requestId: null,
      details: { userId: endpoint.userId, reason: 'failing for 3 days' }
    })
  })
  app.decorate('webhooks', webhooks)
  app.jobs.define(webhooks.queue)
  app.contentCrypto.registerTable({ table: ENDPOINTS, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: [...SEALED_COLUMNS] })
  app.userData.register({ name: 'webhooks', export: webhooks.exportForUser, delete: webhooks.deleteForUser })
  app.addHook('onClose', async () => { await webhooks.close() })
}, { name: 'webhooks', fastify: '5.x', dependencies: ['config', 'store', 'jobs', 'content-crypto', 'user-data', 'audit', 'metrics'] })
