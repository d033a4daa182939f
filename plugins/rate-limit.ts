import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { FeaturePlanValue } from '../schemas/plans.js'
import type { Principal } from '../schemas/principal.js'
import { AppError } from './errors.js'
import { activeTracer, traceRedis } from './tracing.js'

const MINUTE_MS = 60_000
/** Minting tokens, per client address, before authentication: slows down key guessing. */
export const TOKEN_MINT_PER_MINUTE_PER_IP = 30
/** Other AI-token routes (entitlements, usage, catalog), per user, when the plan sets no `rateLimitPerMinute`. */
export const READ_ROUTES_PER_MINUTE = 120
const REDIS_CONNECT_TIMEOUT_MS = 2_000

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route open without a credential (signed file links): at most this many calls a minute per client address. */
    perAddressPerMinute?: number
  }
}

/** The principal's key (auth has run): one bucket per user and mode, so test calls never use up live limits. */
const principalKey = (request: FastifyRequest) => {
  const principal = request.principal as Principal
  return `${principal.mode}:${principal.userId}`
}

/**
 * Rate limits from policy data: per address on POST /v1/ai/tokens (before authentication), per user and
 * feature from the plan on feature routes, per user on the other AI-token routes. Limits are shared through
 * Redis when REDIS_URL is set; when Redis fails, calls pass (quotas in the database still hold) and it is logged.
 */
export default fp(async function rateLimits (app) {
  app.addHook('onRoute', (route) => {
    const config = route.config ?? {}
    let policy: RateLimitOptions | undefined
    if (config.auth === 'credential') {
      policy = { hook: 'onRequest', max: TOKEN_MINT_PER_MINUTE_PER_IP, keyGenerator: (request) => `ip:${request.ip}` }
    } else if (config.feature !== undefined) {
      const feature = config.feature
      policy = {
        hook: 'preParsing',
        keyGenerator: (request) => `${principalKey(request)}:${feature}`,
        // The entitlement check ran before (onRequest), so the plan has this feature.
        max: (request) => (app.entitlements.featurePlan((request.principal as Principal).plan, feature) as FeaturePlanValue).rateLimitPerMinute
      }
    } else if (config.auth === 'ai-token') {
      policy = {
        hook: 'preParsing',
        keyGenerator: principalKey,
        max: (request) => app.entitlements.plans.plans[(request.principal as Principal).plan]?.rateLimitPerMinute ?? READ_ROUTES_PER_MINUTE
      }
    } else if (config.perAddressPerMinute !== undefined) {
      const url = route.url
      policy = { hook: 'onRequest', max: config.perAddressPerMinute, keyGenerator: (request) => `ip:${request.ip}:${url}` }
    }
    if (policy !== undefined) route.config = { ...config, rateLimit: { timeWindow: MINUTE_MS, ...policy } }
  })

  let redis: Redis | undefined
  if (app.config.REDIS_URL !== undefined) {
    redis = new Redis(app.config.REDIS_URL, {
      connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false
    })
    // ioredis reconnects by itself; the error is logged without the URL (it may hold a password).
    redis.on('error', (err: Error & { code?: string }) => app.log.warn({ code: err.code }, 'redis connection error'))
    const active = activeTracer()
    if (active !== null) traceRedis(redis as unknown as Parameters<typeof traceRedis>[0], active)
    const client = redis
    // Start counting from the first request: wait for the connection, or its first failure (then fail open).
    await new Promise((resolve) => {
      client.once('ready', resolve)
      client.once('error', resolve)
    })
    app.addHook('onClose', async () => { client.disconnect() })
    app.readiness.add('redis', async () => { await client.ping() })
  }

  await app.register(rateLimit, {
    global: false,
    redis,
    nameSpace: 'portal-ai-api:rl:',
    skipOnError: true,
    errorResponseBuilder: (_request, context) => new AppError('RATE_LIMITED',
      `Too many requests: at most ${context.max} per minute. Retry after ${context.after}.`,
      { limit: context.max, retryAfterSeconds: Math.ceil(context.ttl / 1000) })
  })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['config', 'health', 'errors'] })
