import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import type { HealthLive, HealthReady } from '../../schemas/health.js'

const live = Type.Unsafe<Static<typeof HealthLive>>(Type.Ref('HealthLive'))
const ready = Type.Unsafe<Static<typeof HealthReady>>(Type.Ref('HealthReady'))

/** Liveness and readiness for orchestrators and load balancers; no auth, and no provider is ever called. */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/live', {
    schema: {
      operationId: 'getHealthLive',
      summary: 'The process is up',
      description: 'Answers 200 while the process serves HTTP. Checks nothing else: use it for restarts, not for routing.',
      tags: ['health'],
      response: { 200: live }
    }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: {
      operationId: 'getHealthReady',
      summary: 'The instance can serve feature calls',
      description: 'Checks the database (and Redis when configured) and that providers are configured, without calling them. ' +
        '503 while a dependency fails or while the instance drains before shutdown.',
      tags: ['health'],
      response: {
        200: { ...ready, description: 'Ready.' },
        503: { ...ready, description: 'Not ready or draining: route traffic elsewhere.' }
      }
    }
  }, async (request, reply) => {
    const { body, failures } = await app.readiness.run()
    for (const { name, err } of failures) request.log.warn({ check: name, err }, 'readiness check failing')
    return reply.code(body.status === 'ready' ? 200 : 503).send(body)
  })
}

export default health
