import cors, { type FastifyCorsOptions } from '@fastify/cors'
import fp from 'fastify-plugin'

/** CORS for the browser origins listed in CORS_ORIGINS; none when unset (the desktop app needs none). */
export default fp(async function corsOrigins (app) {
  const origins = app.config.CORS_ORIGINS?.split(',') ?? []
  const options: FastifyCorsOptions = {
    origin: origins.length > 0 ? origins : false,
    exposedHeaders: ['X-Request-Id', 'Retry-After', 'AI-Provider', 'AI-Model', 'AI-Cost-Micro-Usd', 'AI-Cost-Cents', 'X-Quota-Limit', 'X-Quota-Remaining', 'X-Quota-Reset', 'X-Quota-Warning', 'X-Credits-Warning', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'],
    // Browser front ends may send their cookies and Authorization to the listed origins' requests (never to any other origin).
    credentials: origins.length > 0,
    maxAge: 600
  }
  await app.register(cors, options)
}, { name: 'cors', fastify: '5.x', dependencies: ['config'] })
