import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { SANDBOX_CHAT_MODEL } from '../providers/sandbox-chat.js'
import { FEATURES } from './features.js'
import { recordSpan } from './tracing.js'

/** Buckets of call and request durations, in seconds: from a cached answer to a long document scan. */
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
/** Buckets of time to first token, in seconds. */
const FIRST_TOKEN = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30]
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
/** The error codes that refuse a caller (as opposed to failing them), counted by feature. */
const REFUSALS = new Set(['QUOTA_EXCEEDED', 'INSUFFICIENT_CREDITS', 'RATE_LIMITED', 'NOT_ENTITLED'])
/** A label value the service itself wrote (a vendor, a provider, a code): short lower-case or upper-case words. */
const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,47}$/

/**
 * Labels are bounded sets only: a route pattern (never the path), a method, a status, a feature of the registry,
 * a vendor or provider name, a model of the catalog, an error code. Anything else becomes `other`, so nothing a
 * user wrote, and no user, key, request or file, can become a series.
 */
const name = (value: string | undefined | null) => value !== undefined && value !== null && NAME.test(value) ? value : 'other'
const feature = (value: unknown) => typeof value === 'string' && Object.hasOwn(FEATURES, value) ? value : 'none'

/** Process metrics (CPU, memory, event loop, GC, handles) are the process's: one registry, however many apps it builds. */
let processRegistry: Registry | undefined
function processMetrics (): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

/** The outcome label of a recorded model call: `ok`, its error code, or how it ended (client-aborted, shutdown, blocked). */
export const callOutcome = (outcome: string, errorCode: string | undefined): string => outcome === 'completed' ? 'ok' : errorCode ?? outcome

/** One provider call as the metrics see it. `model` only for calls to a model of the catalog. */
export interface ProviderCallObservation {
  feature: string
  mode: 'live' | 'test'
  vendor: string
  model?: string
  /** `ok`, or what ended it: an error code, `client-aborted`, `shutdown`, `blocked`. */
  outcome: string
  seconds?: number
  firstTokenSeconds?: number
  /** Tokens of a model call, where the vendor said (for its span). */
  tokensIn?: number
  tokensOut?: number
}

/** A settled call: its units, tokens and cost. */
export interface SettlementObservation {
  feature: string
  vendor: string
  model?: string | null
  /** Tokens, for features counted in tokens. */
  tokensIn?: number | undefined
  tokensOut?: number | undefined
  costMicroUsd?: number | undefined
}

/**
 * The service's metric families in one registry of its own (prom-client), with process metrics. Gauges that
 * describe state (breakers, queues, settlements waiting) are read when Prometheus scrapes, from `sources`.
 */
export function createMetrics (opts: { knownModel: (id: string) => boolean }) {
  const registry = new Registry()
  const registers = [registry]
  const model = (id: string | null | undefined) => id !== undefined && id !== null && opts.knownModel(id) ? id : (id === undefined || id === null ? '' : 'other')

  // `feature` is the route's (none for the platform's own routes): one per route, so it adds no series.
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests answered, by route pattern, feature, method and status.', labelNames: ['route', 'feature', 'method', 'status_code'], registers })
  const requestSeconds = new Histogram({ name: 'http_request_duration_seconds', help: 'Time to answer an HTTP request (for a stream: until it ended), by route pattern, feature, method and status.', labelNames: ['route', 'feature', 'method', 'status_code'], buckets: SECONDS, registers })
  const errors = new Counter({ name: 'portal_http_errors_total', help: 'Error answers by route pattern, feature and error code of the envelope.', labelNames: ['route', 'feature', 'code'], registers })
  const refusals = new Counter({ name: 'portal_refusals_total', help: 'Calls refused for quota, credits, rate limits or entitlement, by feature and code.', labelNames: ['feature', 'code'], registers })
  const providerCalls = new Counter({ name: 'portal_provider_calls_total', help: 'Calls to providers and model vendors, by feature, mode, vendor, model and outcome (ok or what ended it).', labelNames: ['feature', 'mode', 'vendor', 'model', 'outcome'], registers })
  const providerSeconds = new Histogram({ name: 'portal_provider_call_duration_seconds', help: 'Duration of provider calls, by feature, mode (test-mode calls go to the sandbox), vendor and model.', labelNames: ['feature', 'mode', 'vendor', 'model'], buckets: SECONDS, registers })
  const firstToken = new Histogram({ name: 'portal_provider_first_token_seconds', help: 'Time to the first token of model calls, by feature, mode, vendor and model.', labelNames: ['feature', 'mode', 'vendor', 'model'], buckets: FIRST_TOKEN, registers })
  const tokens = new Counter({ name: 'portal_tokens_total', help: 'Tokens of settled calls, by feature, vendor, model and direction (input, output).', labelNames: ['feature', 'vendor', 'model', 'direction'], registers })
  const cost = new Counter({ name: 'portal_cost_micro_usd_total', help: 'Provider cost of settled calls in micro-USD (list price, before any markup), by feature, vendor and model.', labelNames: ['feature', 'vendor', 'model'], registers })
  const settled = new Counter({ name: 'portal_settled_calls_total', help: 'Calls settled (charged to quota), by feature and vendor.', labelNames: ['feature', 'vendor'], registers })
  const jobRuns = new Counter({ name: 'portal_job_runs_total', help: 'Job attempts that ended, by queue and outcome (completed, failed).', labelNames: ['queue', 'outcome'], registers })
  const jobSeconds = new Histogram({ name: 'portal_job_duration_seconds', help: 'Duration of job attempts, by queue and outcome.', labelNames: ['queue', 'outcome'], buckets: SECONDS, registers })
  const webhookAttempts = new Counter({ name: 'portal_webhook_attempts_total', help: 'Webhook delivery attempts, by result: delivered; failed (for good); retry (failed, tried again later); disabled, refused (the endpoint or its address); gone (deleted or done meanwhile).', labelNames: ['result'], registers })

  /** What the scrape-time gauges read; set by the plugins that own them once they are registered. */
  const sources: {
    breakers?: () => Record<string, { configured: boolean, breaker: 'closed' | 'half-open' | 'open' }>
    queues?: () => Promise<Record<string, { queued: number, active: number }>>
    pendingSettlements?: () => number
  } = {}
  const BREAKER = { closed: 0, 'half-open': 1, open: 2 }
  /* eslint-disable no-new -- a gauge with a collect function lives in its registry */
  new Gauge({
    name: 'portal_circuit_breaker_state',
    help: 'Circuit breaker of each configured model vendor: 0 closed, 1 half-open, 2 open.',
    labelNames: ['vendor'],
    registers,
    collect () {
      this.reset()
      for (const [vendor, health] of Object.entries(sources.breakers?.() ?? {})) {
        if (health.configured) this.set({ vendor: name(vendor) }, BREAKER[health.breaker])
      }
    }
  })
  const queued = new Gauge({ name: 'portal_jobs_queued', help: 'Jobs waiting in each queue (created or waiting to be retried).', labelNames: ['queue'], registers })
  const active = new Gauge({ name: 'portal_jobs_active', help: 'Jobs running in each queue, on every instance.', labelNames: ['queue'], registers })
  new Gauge({
    name: 'portal_settlements_pending',
    help: 'Charged calls waiting in memory for the database to take their ledger row.',
    registers,
    collect () { this.set(sources.pendingSettlements?.() ?? 0) }
  })
  /* eslint-enable no-new */

  return {
    registry,
    sources,

    /** One answered request: its route pattern (unmatched routes are one series), status, time and error code. */
    request (r: { route: string | undefined, method: string, status: number, seconds: number, errorCode: string | null, feature: unknown }) {
      const labels = { route: r.route ?? '(unmatched)', feature: feature(r.feature), method: METHODS.has(r.method) ? r.method : 'OTHER', status_code: String(r.status) }
      requests.inc(labels)
      requestSeconds.observe(labels, r.seconds)
      if (r.errorCode === null) return
      errors.inc({ route: labels.route, feature: labels.feature, code: name(r.errorCode) })
      if (REFUSALS.has(r.errorCode)) refusals.inc({ feature: labels.feature, code: r.errorCode })
    },

    providerCall (c: ProviderCallObservation) {
      const labels = { feature: feature(c.feature), mode: c.mode === 'test' ? 'test' : 'live', vendor: name(c.vendor), model: model(c.model) }
      providerCalls.inc({ ...labels, outcome: name(c.outcome) })
      // The same call as a span of the request (or job) it served, when tracing is on.
      recordSpan('provider.call', c.seconds ?? 0, {
        'portal.feature': labels.feature,
        'portal.mode': labels.mode,
        'gen_ai.system': labels.vendor,
        'gen_ai.request.model': labels.model,
        'portal.outcome': name(c.outcome),
        ...(c.tokensIn === undefined ? {} : { 'gen_ai.usage.input_tokens': c.tokensIn }),
        ...(c.tokensOut === undefined ? {} : { 'gen_ai.usage.output_tokens': c.tokensOut })
      }, c.outcome !== 'ok')
      if (c.seconds !== undefined) providerSeconds.observe(labels, c.seconds)
      if (c.firstTokenSeconds !== undefined) firstToken.observe(labels, c.firstTokenSeconds)
    },

    settlement (s: SettlementObservation) {
      const labels = { feature: feature(s.feature), vendor: name(s.vendor), model: model(s.model) }
      settled.inc({ feature: labels.feature, vendor: labels.vendor })
      const add = (counter: Counter, extra: Record<string, string>, value: number | undefined) => {
        if (value !== undefined && value > 0) counter.inc({ ...labels, ...extra }, value)
      }
      add(tokens, { direction: 'input' }, s.tokensIn)
      add(tokens, { direction: 'output' }, s.tokensOut)
      add(cost, {}, s.costMicroUsd)
    },

    job (queue: string, outcome: 'completed' | 'failed', seconds: number) {
      const labels = { queue: name(queue), outcome }
      jobRuns.inc(labels)
      jobSeconds.observe(labels, seconds)
    },

    webhookAttempt (result: string) {
      webhookAttempts.inc({ result: name(result) })
    },

    /** The registry in Prometheus text, with the queue gauges read first (a store that does not answer leaves them as they were). */
    async scrape (): Promise<string> {
      if (sources.queues !== undefined) {
        try {
          const figures = await sources.queues()
          queued.reset()
          active.reset()
          for (const [queue, q] of Object.entries(figures)) {
            queued.set({ queue: name(queue) }, q.queued)
            active.set({ queue: name(queue) }, q.active)
          }
        } catch {}
      }
      return Registry.merge([processMetrics(), registry]).metrics()
    },

    contentType: registry.contentType
  }
}

export type Metrics = ReturnType<typeof createMetrics>

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics & {
      /** Opens the metrics listener (METRICS_HOST:METRICS_PORT) unless METRICS_PORT is 0; its address, or null. */
      listen: () => Promise<string | null>
    }
  }
}

/** The internal listener: GET /metrics in Prometheus text, nothing else. */
function metricsServer (app: FastifyInstance, metrics: Metrics): Server {
  return createServer((req, res) => {
    // A server request always has its URL.
    if (req.method !== 'GET' || (req.url as string).split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Only GET /metrics is served here.\n')
      return
    }
    metrics.scrape().then((text) => {
      res.writeHead(200, { 'content-type': metrics.contentType }).end(text)
    }, (err: unknown) => {
      app.log.error({ err }, 'metrics scrape failed')
      res.writeHead(500, { 'content-type': 'text/plain' }).end('The metrics could not be read.\n')
    })
  })
}

/**
 * Prometheus metrics (issue 25): every answered request by route pattern, and the families other plugins feed
 * (providers, settlements, jobs, webhooks). Served on a listener of its own, never on the public port.
 */
export default fp(async function metricsPlugin (app) {
  // The models an operator set up (the catalog's, and those of staging, scans and the assistant's default) and the sandbox's.
  const configured = new Set([app.config.OPENAI_MODEL, app.config.STAGING_MODEL, app.config.STAGING_VISION_MODEL, app.config.SCAN_MODEL, SANDBOX_CHAT_MODEL])
  // Asked only while calls run, when the models plugin (registered after this one) is there.
  const metrics = createMetrics({ knownModel: (id) => configured.has(id) || app.models.get(id) !== undefined })
  let server: Server | null = null
  app.decorate('metrics', Object.assign(metrics, {
    async listen () {
      if (app.config.METRICS_PORT === 0) return null
      server = metricsServer(app, metrics)
      const listening = server
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject)
        listening.listen(app.config.METRICS_PORT, app.config.METRICS_HOST, () => { listening.off('error', reject); resolve() })
      })
      const { address, port } = listening.address() as AddressInfo
      const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics`
      app.log.info({ url }, 'metrics listening')
      return url
    }
  }))
  app.addHook('onResponse', async (request, reply) => {
    metrics.request({
      route: request.routeOptions.url,
      method: request.method,
      status: reply.statusCode,
      seconds: reply.elapsedTime / 1000,
      errorCode: request.errorCode,
      feature: request.routeOptions.config?.feature
    })
  })
  app.addHook('onClose', async () => {
    const open = server
    if (open !== null) await new Promise((resolve) => open.close(resolve))
  })
}, { name: 'metrics', fastify: '5.x', dependencies: ['config', 'errors'] })
