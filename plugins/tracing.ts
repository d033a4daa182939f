import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace'
import type { ExportResult } from '@opentelemetry/core'
import type { Config } from './config.js'
import type { Queryable, Store } from './store/index.js'

/**
 * Attributes that may leave the service on a span: methods, statuses, route patterns, database and vendor names,
 * models, token counts, and the service's own `portal.*` ones (request id, feature, mode, outcome, queue). Anything
 * else an instrumentation sets (a URL with its query, a path holding a user id, a host a user named, an SQL
 * statement) is dropped before export, so nothing a user wrote or who they are can reach a collector.
 */
const KEPT = new Set(['http.request.method', 'http.response.status_code', 'http.route', 'db.system.name', 'db.operation.name',
  'gen_ai.system', 'gen_ai.request.model', 'gen_ai.usage.input_tokens', 'gen_ai.usage.output_tokens'])
const kept = (key: string) => KEPT.has(key) || key.startsWith('portal.') || key.startsWith('fastify.') || key === 'hook.name'

/** A span as exported: allowlisted attributes, exception events with their type only, no status message. */
function scrubbed (span: ReadableSpan): ReadableSpan {
  const attributes = Object.fromEntries(Object.entries(span.attributes).filter(([key]) => kept(key)))
  const events = span.events.filter((e) => e.name === 'exception').map((e) => ({
    ...e,
    attributes: e.attributes?.['exception.type'] === undefined ? {} : { 'exception.type': e.attributes['exception.type'] }
  }))
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => span.spanContext(),
    parentSpanContext: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status: { code: span.status.code },
    attributes,
    links: span.links,
    events,
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount
  }
}

/** The exporter behind the allowlist. */
export function scrubbingExporter (next: SpanExporter): SpanExporter {
  return {
    export: (spans: ReadableSpan[], done: (result: ExportResult) => void) => { next.export(spans.map(scrubbed), done) },
    shutdown: async () => next.shutdown(),
    forceFlush: async () => next.forceFlush?.()
  }
}

let tracer: Tracer | null = null

/** The service's tracer while tracing is on; null (and nothing of the SDK loaded) when it is off. */
export const activeTracer = (): Tracer | null => tracer

export interface Tracing {
  /** Registered first on the app: a span per request (route pattern, method, status, request id). */
  fastifyPlugin: FastifyPluginAsync
  /** Exports what is left and stops. */
  shutdown: () => Promise<void>
}

/**
 * OpenTelemetry tracing, on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and
 * OTEL_SDK_DISABLED is not true): spans are batched to the collector over OTLP/HTTP (JSON), which reads the other
 * standard OTEL_EXPORTER_OTLP_* variables itself (headers, timeout). Off, nothing of the SDK is loaded.
 */
export async function startTracing (config: Config, env: NodeJS.ProcessEnv = process.env): Promise<Tracing | null> {
  if (env.OTEL_SDK_DISABLED === 'true') return null
  if (config.OTEL_EXPORTER_OTLP_ENDPOINT === undefined && env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT === undefined) return null
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { W3CTraceContextPropagator }, { AsyncLocalStorageContextManager },
    { UndiciInstrumentation }, { FastifyOtelInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-trace'), import('@opentelemetry/exporter-trace-otlp-http'), import('@opentelemetry/resources'),
    import('@opentelemetry/core'), import('@opentelemetry/context-async-hooks'), import('@opentelemetry/instrumentation-undici'), import('@fastify/otel')
  ])
  // The traces endpoint as the OTLP spec derives it: the signal's own variable, else the base with /v1/traces.
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${(config.OTEL_EXPORTER_OTLP_ENDPOINT as string).replace(/\/+$/, '')}/v1/traces`
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.OTEL_SERVICE_NAME }),
    spanProcessors: [new BatchSpanProcessor({ exporter: scrubbingExporter(new OTLPTraceExporter({ url })) })]
  })
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  trace.setGlobalTracerProvider(provider)
  // Outgoing calls (model vendors, remove.bg, Google, webhooks) through fetch and undici, as client spans.
  const undici = new UndiciInstrumentation()
  undici.setTracerProvider(provider)
  undici.enable()
  const fastifyOtel = new FastifyOtelInstrumentation({
    instrumentHooks: false,
    // Named by method and route pattern (never the path, which may hold ids); the request id links it to the logs.
    requestHook: (span: Span, request: FastifyRequest) => {
      span.updateName(`${request.method} ${request.routeOptions.url ?? '(unmatched)'}`)
      span.setAttribute('portal.request_id', request.id)
    }
  })
  fastifyOtel.setTracerProvider(provider)
  tracer = provider.getTracer('portal-ai-api')
  return {
    fastifyPlugin: fastifyOtel.plugin() as unknown as FastifyPluginAsync,
    async shutdown () {
      undici.disable()
      tracer = null
      await provider.shutdown()
    }
  }
}

/** A finished piece of work as a span that started `seconds` ago, under the active span (the request's, or the job's). */
export function recordSpan (name: string, seconds: number, attributes: Attributes, failed: boolean) {
  if (tracer === null) return
  const end = Date.now()
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, startTime: end - seconds * 1000, attributes })
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR })
  span.end(end)
}

/** `work` in a span of its own under the active one; the span ends with it. */
async function inSpan<T> (active: Tracer, name: string, attributes: Attributes, work: () => Promise<T>): Promise<T> {
  return ended(active.startSpan(name, { kind: SpanKind.CLIENT, attributes }), work)
}

/** Ends `span` when `work` settles: an error span when it rejects (the rejection passes on). */
async function ended<T> (span: Span, work: () => Promise<T>): Promise<T> {
  let result: T
  try {
    result = await work()
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR })
    span.end()
    throw err
  }
  span.end()
  return result
}

/** What an SQL statement does (its first word), never the statement. */
const operation = (sql: string) => /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? 'SQL'

/** A store whose queries are spans (`db.query`: the system and the operation, never the statement or its values). */
export function tracedStore (store: Store, active: Tracer): Store {
  const system = { 'db.system.name': 'postgresql' }
  const traced = (q: Queryable): Queryable => ({
    query: async (sql, params) => inSpan(active, 'db.query', { ...system, 'db.operation.name': operation(sql) }, async () => q.query(sql, params)),
    exec: async (sql) => inSpan(active, 'db.query', { ...system, 'db.operation.name': operation(sql) }, async () => q.exec(sql))
  })
  return {
    ...store,
    ...traced(store),
    transaction: async <T>(fn: (tx: Queryable) => Promise<T>) => inSpan(active, 'db.transaction', system, async () => store.transaction(async (tx) => fn(traced(tx))))
  }
}

/** A Redis client's commands as spans (`redis`: the command's name, never its keys or values). */
export function traceRedis (client: { sendCommand: (command: { name: string, promise: Promise<unknown> }, ...rest: unknown[]) => unknown }, active: Tracer) {
  const send = client.sendCommand.bind(client)
  client.sendCommand = (command, ...rest) => {
    const span = active.startSpan('redis', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'redis', 'db.operation.name': command.name.toUpperCase() } })
    command.promise.then(() => span.end(), () => { span.setStatus({ code: SpanStatusCode.ERROR }); span.end() })
    return send(command, ...rest)
  }
}

/** The active trace context as a carrier a job keeps with its data (W3C traceparent: ids only); empty when off. */
export function traceCarrier (): Record<string, string> {
  const carrier: Record<string, string> = {}
  if (tracer !== null) propagation.inject(context.active(), carrier)
  return carrier
}

/** Runs a job attempt in a span that continues the trace its carrier names (the request that queued it). */
export async function inJobSpan<T> (queue: string, attributes: Attributes, carrier: Record<string, string> | undefined, work: () => Promise<T>): Promise<T> {
  if (tracer === null) return work()
  const active = tracer
  // From the root: the worker's own context may be whatever woke it, not the job's sender.
  const parent: Context = propagation.extract(ROOT_CONTEXT, carrier ?? {})
  return active.startActiveSpan(`job ${queue}`, { kind: SpanKind.CONSUMER, attributes: { 'portal.job.queue': queue, ...attributes } }, parent,
    async (span) => ended(span, work))
}
