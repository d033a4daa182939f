import { readFileSync } from 'node:fs'
import closeWithGrace from 'close-with-grace'
import type { FastifyServerOptions } from 'fastify'
import pino from 'pino'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './plugins/config.js'
import { loggerOptions } from './plugins/privacy.js'
import { startTracing } from './plugins/tracing.js'

/** How long in-flight requests (streams included) get to finish after SIGTERM/SIGINT. */
const SHUTDOWN_GRACE_MS = 10_000
/** Readiness answers 503 this long before the listener closes, so a load balancer sees it and stops sending work. */
const DRAIN_NOTICE_MS = 2_000
/** Calls still waiting on a provider this long before the grace period ends are stopped, settled and told. */
const STOP_MARGIN_MS = 2_000
/** How often connections that became idle during the drain are closed. */
const IDLE_SWEEP_MS = 200
/** An idle socket is closed after this; streams send data well within it. */
const CONNECTION_TIMEOUT_MS = 120_000
/** The whole request must arrive within this (a 12 MB upload at ~200 KB/s). */
const REQUEST_TIMEOUT_MS = 60_000
/** Longer than the usual load balancer idle timeout (60 s), so the balancer closes first. */
const KEEP_ALIVE_TIMEOUT_MS = 72_000

function fail (message: string): never {
  process.stderr.write(`portal-ai-api: ${message}\n`)
  process.exit(1)
}

function tlsOptions (config: Config): Partial<FastifyServerOptions> {
  if (config.TLS_CERT_FILE === undefined || config.TLS_KEY_FILE === undefined) return {}
  const read = (name: 'TLS_CERT_FILE' | 'TLS_KEY_FILE') => {
    try {
      return readFileSync(config[name] as string)
    } catch (err) {
      return fail(`${name} cannot be read (${String((err as NodeJS.ErrnoException).code)}): ${config[name] as string}`)
    }
  }
  return { https: { cert: read('TLS_CERT_FILE'), key: read('TLS_KEY_FILE') } } as Partial<FastifyServerOptions>
}

async function main () {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    // loadConfig throws only ConfigError: a list of problems written for the operator.
    fail((err as ConfigError).message)
  }

  // A person at a terminal gets readable lines; anything else (a container, a file) gets JSON.
  /* c8 ignore next -- the tests read the server's output through a pipe, never a terminal */
  const destination = process.stdout.isTTY ? pino.transport({ target: 'pino-pretty' }) : pino.destination(1)
  const logger = pino(loggerOptions(config), destination)

  // Before the app is built: its request spans, and the spans of its queries and outgoing calls, need the provider.
  const tracing = await startTracing(config)
  if (tracing !== null) logger.info('tracing: spans are exported over OTLP/HTTP')
  let app: Awaited<ReturnType<typeof buildApp>>
  try {
    app = await buildApp(config, logger, {
      ...tlsOptions(config),
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS
    }, undefined, tracing)
  } catch (err) {
    // A plans file with problems, or a database that cannot be reached or migrated: say so and stop.
    return fail((err as Error).name === 'ConfigError' ? (err as Error).message : `startup failed: ${(err as Error).message}`)
  }

  closeWithGrace({ delay: SHUTDOWN_GRACE_MS }, async ({ signal, err }) => {
    /* c8 ignore next -- only an uncaught exception or unhandled rejection gets here, which no code path raises on purpose */
    if (err !== undefined) app.log.error({ err }, 'fatal error, shutting down')
    else app.log.info({ signal }, 'shutting down: draining in-flight requests')
    app.readiness.drain()
    const stop = setTimeout(() => app.readiness.stopInFlight(), SHUTDOWN_GRACE_MS - STOP_MARGIN_MS)
    await new Promise((resolve) => setTimeout(resolve, DRAIN_NOTICE_MS))
    // A kept-alive connection whose last response ends during the drain is closed once idle, not kept open.
    const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS)
    await app.close()
    clearInterval(sweep)
    clearTimeout(stop)
    // The spans of the last calls go out before the process ends.
    await tracing?.shutdown()
  })

  let address: string
  try {
    address = await app.listen({ port: config.PORT, host: config.HOST })
  } catch (err) {
    await app.close()
    return fail(`cannot listen on ${config.HOST}:${config.PORT} (${String((err as NodeJS.ErrnoException).code)}): is another process using the port? Set PORT.`)
  }
  try {
    await app.metrics.listen()
  } catch (err) {
    await app.close()
    return fail(`cannot open the metrics listener on ${config.METRICS_HOST}:${config.METRICS_PORT} (${String((err as NodeJS.ErrnoException).code)}): is another instance using the port? Set METRICS_PORT (0 turns it off).`)
  }
  app.log.info(`API reference (Swagger UI) at ${address}/docs`)
}

await main()
