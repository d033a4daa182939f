import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { usageReport } from '../../../plugins/usage-report.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { Usage, UsageQuery } from '../../../schemas/usage.js'

const usage: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/usage', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'getUsage',
      summary: 'Usage of the current period',
      description: 'For each feature of the token: used, reserved (calls in flight), limit, remaining and the next reset (UTC); ' +
        'then the settled calls of this mode, newest first, paged with `cursor`. Test-mode usage is counted apart from live.',
      tags: ['tokens'],
      security: [{ aiToken: [] }],
      querystring: UsageQuery,
      response: { 200: ref(Usage), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async (request) => usageReport(app, request.principal as Principal, request.query))
}

export default usage
