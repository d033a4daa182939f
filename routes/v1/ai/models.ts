import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponses } from '../../../schemas/errors.js'
import { ModelList } from '../../../schemas/models.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'

const models: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/models', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'listModels',
      summary: 'The models this caller can use',
      description: 'The model catalog for the plan of the AI token: limits, list prices (USD per million tokens, before any markup), ' +
        'whether each model is accessible now and why not (`premium`, `vendor-not-configured`, `vendor-unavailable`), and the model ' +
        'chosen for each task class when a call names none. Test-mode tokens see every vendor as accessible: the sandbox answers for all.',
      tags: ['models'],
      security: [{ aiToken: [] }],
      response: {
        200: ref(ModelList),
        ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED')
      }
    }
  }, async (request) => {
    const principal = request.principal as Principal
    const routing = app.models.routing(principal.plan)
    return { data: app.models.list(principal.plan, principal.mode), routing: { premium: routing.premium, routes: { ...routing.routes } } }
  })
}

export default models
