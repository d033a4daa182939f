import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import { AppError } from '../../../plugins/errors.js'
import { usageReport } from '../../../plugins/usage-report.js'
import { UserId } from '../../../schemas/admin.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { ModeSchema } from '../../../schemas/identity.js'
import { ref } from '../../../schemas/refs.js'
import { Usage, UsageQuery } from '../../../schemas/usage.js'

const adminUsage: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/usage', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'getUserUsage',
      summary: 'A user\'s usage in the current period',
      description: 'The same answer as GET /v1/ai/usage, for the features of the user\'s licensed plan, in `live` (default) or `test` mode.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      querystring: Type.Object({
        ...UsageQuery.properties,
        userId: UserId,
        mode: Type.Optional(Type.Unsafe<Static<typeof ModeSchema>>(Type.Ref('Mode')))
      }, { additionalProperties: false }),
      response: { 200: ref(Usage), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'NOT_FOUND') }
    }
  }, async (request) => {
    const { userId, mode, cursor, limit } = request.query
    const license = await app.entitlements.getLicense(userId)
    if (license === null) throw new AppError('NOT_FOUND', 'This user has no license.')
    const features = app.entitlements.planFeatures(license.plan)
    return usageReport(app, { userId, plan: license.plan, mode: mode ?? 'live', features }, { cursor, limit })
  })
}

export default adminUsage
