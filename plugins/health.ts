import type { ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import { AppError } from './errors.js'
import type { HealthReadyBody } from '../schemas/health.js'
import type { QueueHealth } from './jobs.js'
import type { VendorHealth } from './models.js'

const DEFAULT_CHECK_TIMEOUT_MS = 2000

/** A check throws when the dependency fails; it may return figures to show beside its status (the job queues). */
export type ReadinessCheck = (signal: AbortSignal) => Promise<void | { queues: Record<string, QueueHealth> } | { vendors: Record<string, VendorHealth> }>

class CheckTimeout extends Error {
  constructor () {
    super('readiness check timed out')
    this.name = 'CheckTimeout'
  }
}

/**
 * The readiness registry: plugins add a check for what they depend on (database, Redis, provider config);
 * checks run in parallel, each bounded by a timeout, and draining turns readiness off before shutdown.
 */
export function createReadiness (timeoutMs = DEFAULT_CHECK_TIMEOUT_MS) {
  const checks = new Map<string, ReadinessCheck>()
  let draining = false
  const stopping = new AbortController()

  async function runOne (check: ReadinessCheck) {
    const started = performance.now()
    const controller = new AbortController()
    const timedOut = new Promise<never>((_resolve, reject) => {
      controller.signal.addEventListener('abort', () => reject(new CheckTimeout()), { once: true })
    })
    const timer = setTimeout(() => controller.abort(), timeoutMs)
    try {
      const details = await Promise.race([check(controller.signal), timedOut])
      clearTimeout(timer)
      return { status: 'ok' as const, durationMs: Math.round((performance.now() - started) * 100) / 100, ...details }
    } catch (err) {
      clearTimeout(timer)
      const e = err as Error & { code?: unknown }
      const reason = e instanceof CheckTimeout ? 'timeout' : typeof e.code === 'string' ? e.code : 'failed'
      return { status: 'failing' as const, durationMs: Math.round((performance.now() - started) * 100) / 100, reason, err: e }
    }
  }

  return {
    add (name: string, check: ReadinessCheck) {
      if (checks.has(name)) throw new Error(`readiness check "${name}" is already registered`)
      checks.set(name, check)
    },
    /** From now on the instance reports `draining` (503) so a load balancer stops sending it work. */
    drain () { draining = true },
    get draining () { return draining },
    /**
     * Aborted when the shutdown grace period is about to run out: calls still waiting on a provider (streams,
     * mostly) stop, settle what they used and tell their client, instead of being cut when the process exits.
     */
    get stopSignal () { return stopping.signal },
    stopInFlight () { stopping.abort() },
    /**
     * The signal of one call's provider work: aborted when its client leaves before the answer is sent, or when
     * in-flight calls are stopped. The shutdown forgets the call once its response is closed.
     */
    callSignal (res: ServerResponse): AbortSignal {
      const controller = new AbortController()
      const abort = () => controller.abort()
      stopping.signal.addEventListener('abort', abort, { once: true })
      res.on('close', () => {
        stopping.signal.removeEventListener('abort', abort)
        if (!res.writableFinished) abort()
      })
      return controller.signal
    },
    /** What a call that failed reports: "restarting" when the shutdown stopped it, whatever the provider said. */
    failure (err: Error): Error {
      return stopping.signal.aborted ? restarting() : err
    },
    async run (): Promise<{ body: HealthReadyBody, failures: Array<{ name: string, err: Error }> }> {
      const names = [...checks.keys()]
      const results = await Promise.all(names.map(async (name) => runOne(checks.get(name) as ReadinessCheck)))
      const body: HealthReadyBody = { status: 'ready', checks: {} }
      const failures: Array<{ name: string, err: Error }> = []
      results.forEach((result, i) => {
        const name = names[i] as string
        const { err, ...shown } = result as typeof result & { err?: Error }
        body.checks[name] = shown
        if (err !== undefined) failures.push({ name, err })
      })
      if (failures.length > 0) body.status = 'not_ready'
      if (draining) body.status = 'draining'
      return { body, failures }
    }
  }
}

/** What a client is told when its call was stopped because the instance is shutting down. */
const restarting = () => new AppError('PROVIDER_UNAVAILABLE', 'The service is restarting: ask again in a moment.')

declare module 'fastify' {
  interface FastifyInstance {
    readiness: ReturnType<typeof createReadiness>
  }
}

export default fp(async function health (app) {
  app.decorate('readiness', createReadiness())
}, { name: 'health', fastify: '5.x' })
