import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { chatReservation, replyLimit } from '../../../plugins/chats.js'
import { planCreditTerms } from '../../../plugins/credits.js'
import { AppError } from '../../../plugins/errors.js'
import type { ModelEntry } from '../../../plugins/models.js'
import { toCents, withMarkup } from '../../../plugins/money.js'
import { Estimate, EstimateRequest } from '../../../schemas/billing.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'

const invalid = (path: string, message: string, text: string) =>
  new AppError('VALIDATION_ERROR', text, { fields: [{ location: 'body', path, message }] })

/** POST /v1/ai/estimate: what a chat call would reserve, by the same rules the call uses (SPEC §16). */
const estimate: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/estimate', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'estimateCost',
      summary: 'What a chat call on a model would cost at most',
      description: 'Counts the prompt as a chat call counts it (`messages`: the conversation, its last message the new one; or `inputTokens`), ' +
        'takes the reply limit of the model unless `estimatedOutputTokens` is given, and prices it at the list prices with your plan\'s markup. ' +
        'This is what the call reserves before the model is called: the dearest of the model and its fallbacks. Nothing is charged.',
      tags: ['billing'],
      security: [{ aiToken: [] }],
      body: ref(EstimateRequest),
      response: { 200: ref(Estimate), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'PROVIDER_NOT_CONFIGURED', 'RATE_LIMITED') }
    }
  }, async (request) => {
    const principal = request.principal as Principal
    const body = request.body
    if ((body.inputTokens === undefined) === (body.messages === undefined)) {
      throw invalid('/', 'give inputTokens or messages', 'Give either `inputTokens` or `messages`, not both and not neither.')
    }
    if (app.models.get(body.model) === undefined) throw invalid('/model', 'is not a model of the catalog', 'There is no such model: GET /v1/ai/models lists them.')
    const last = body.messages?.at(-1)
    if (last !== undefined && last.role !== 'user') throw invalid('/messages', 'must end with a user message', 'The last message is the new one: it must be the user\'s.')
    const route = app.models.route({ plan: principal.plan, mode: principal.mode, model: body.model, text: last?.content ?? '' })
    const entries: Array<{ model: ModelEntry, promptTokens: number, outputTokens?: number }> = []
    for (const model of [route.model, ...route.chain]) {
      const messages = body.messages
      const promptTokens = messages === undefined
        ? body.inputTokens as number
        : (await app.chats.prompt(model, messages.slice(0, -1), (last as { content: string }).content, replyLimit(model))).tokens
      entries.push({ model, promptTokens, ...(body.estimatedOutputTokens === undefined ? {} : { outputTokens: body.estimatedOutputTokens }) })
    }
    const reserved = chatReservation(entries)
    const markupPercent = planCreditTerms(app.entitlements.plans, principal.plan)?.markupPercent ?? 0
    const charged = withMarkup(reserved.costMicroUsd, markupPercent)
    const own = entries[0] as (typeof entries)[number]
    return {
      model: route.model.id,
      inputTokens: own.promptTokens,
      outputTokens: body.estimatedOutputTokens ?? replyLimit(route.model),
      inputCostPer1M: route.model.inputCostPer1M,
      outputCostPer1M: route.model.outputCostPer1M,
      markupPercent,
      estimatedCostMicroUsd: charged,
      estimatedCostCents: toCents(charged)
    }
  })
}

export default estimate
