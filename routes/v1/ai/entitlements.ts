import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { quotaPeriod } from '../../../plugins/metering.js'
import { FEATURES } from '../../../plugins/features.js'
import { errorResponses } from '../../../schemas/errors.js'
import { Entitlements } from '../../../schemas/identity.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'

const entitlements: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/entitlements', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'getEntitlements',
      summary: 'What this AI token may use',
      description: 'The plan, and for each feature of the token: its quota (limit, UTC period, next reset) and rate limit.',
      tags: ['tokens'],
      security: [{ aiToken: [] }],
      response: {
        200: ref(Entitlements),
        ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED')
      }
    }
  }, async (request) => {
    const principal = request.principal as Principal
    const now = new Date()
    const plan = app.entitlements.plans.plans[principal.plan]
    const features = principal.features.flatMap((id) => {
      const featurePlan = app.entitlements.featurePlan(principal.plan, id)
      if (featurePlan === undefined) return []
      return [{
        id,
        name: FEATURES[id].name,
        unit: FEATURES[id].unit,
        quota: { ...featurePlan.quota, resetsAt: quotaPeriod(featurePlan.quota.period, now).end.toISOString() },
        rateLimitPerMinute: featurePlan.rateLimitPerMinute
      }]
    })
    return { userId: principal.userId, plan: principal.plan, planName: plan?.name ?? principal.plan, mode: principal.mode, features }
  })
}

export default entitlements
