import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { AppError } from '../../../plugins/errors.js'
import { AiAnalytics, AnalyticsQuery } from '../../../schemas/analytics.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'

const MAX_PERIOD_DAYS = 366

/** GET /v1/admin/analytics/ai: how the model vendors served, for operators (no user, no content). */
const analytics: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/analytics/ai', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'getAiAnalytics',
      summary: 'Model calls by model and vendor',
      description: 'Calls, outcomes, tokens, cost, feedback counts and time to the first token (p50, p95) of chat calls by model and ' +
        `vendor over [from, to) — by default the last 30 days, at most ${MAX_PERIOD_DAYS} days — in \`live\` (default) or \`test\` mode. ` +
        'A call a fallback took over counts once for each vendor tried. Rows are kept CHAT_RETENTION_DAYS.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      querystring: AnalyticsQuery,
      response: { 200: ref(AiAnalytics), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request) => {
    const { from, to } = request.query
    const start = from === undefined ? null : Date.parse(from)
    const end = to === undefined ? Date.now() : Date.parse(to)
    if (start !== null && (start >= end || end - start > MAX_PERIOD_DAYS * 86_400_000)) {
      throw new AppError('VALIDATION_ERROR', `The period must start before it ends and last at most ${MAX_PERIOD_DAYS} days.`, {
        fields: [{ location: 'querystring', path: '/from', message: `must be before to, at most ${MAX_PERIOD_DAYS} days` }]
      })
    }
    return app.aiCalls.report(request.query)
  })
}

export default analytics
