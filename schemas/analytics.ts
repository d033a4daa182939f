import Type, { type Static } from 'typebox'
import { isoTime } from './refs.js'

const count = (description: string) => Type.Integer({ minimum: 0, description })
const ms = (description: string) => Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description })

export const AnalyticsQuery = Type.Object({
  from: Type.Optional(isoTime('Start of the period (inclusive). Default: 30 days before `to`.')),
  to: Type.Optional(isoTime('End of the period (exclusive). Default: now.')),
  mode: Type.Optional(Type.Union([Type.Literal('live'), Type.Literal('test')], { description: '`live` (default) or `test` calls.' }))
}, { additionalProperties: false })

const Figures = {
  calls: count('Calls to the vendor in the period, whatever their outcome (a fallback makes two).'),
  completed: count('Calls that answered in full.'),
  errors: count('Calls the vendor failed (before or after its first byte).'),
  aborted: count('Calls stopped because the client left or the instance shut down.'),
  blocked: count('Replies blocked by moderation.'),
  inputTokens: count('Prompt tokens charged.'),
  outputTokens: count('Reply tokens charged.'),
  costMicroUsd: count('Cost at the list prices, in micro-USD.'),
  costCents: count('The same, rounded to whole cents.'),
  feedbackUp: count('Replies rated 1 in the period (by when the rating was last given).'),
  feedbackDown: count('Replies rated -1 in the period.')
}

export const AnalyticsRow = Type.Object({
  model: Type.String(),
  vendor: Type.String(),
  ...Figures,
  ttftP50Ms: ms('Median time to the first token of completed calls; null without any.'),
  ttftP95Ms: ms('95th percentile of the same.')
}, { $id: 'AnalyticsRow', title: 'AnalyticsRow', additionalProperties: false })

export const AiAnalytics = Type.Object({
  from: isoTime('Start of the period.'),
  to: isoTime('End of the period.'),
  mode: Type.Union([Type.Literal('live'), Type.Literal('test')]),
  data: Type.Array(Type.Unsafe<Static<typeof AnalyticsRow>>(Type.Ref('AnalyticsRow')), { description: 'One row per model and vendor that had a call or a rating, most calls first.' }),
  totals: Type.Object(Figures, { additionalProperties: false })
}, {
  $id: 'AiAnalytics',
  title: 'AiAnalytics',
  additionalProperties: false,
  examples: [{
    from: '2026-11-02T00:00:00.000Z',
    to: '2026-12-02T00:00:00.000Z',
    mode: 'live',
    data: [{
      model: 'gpt-4o-mini',
      vendor: 'openai',
      calls: 3,
      completed: 2,
      errors: 1,
      aborted: 0,
      blocked: 0,
      inputTokens: 2400,
      outputTokens: 600,
      costMicroUsd: 720,
      costCents: 0,
      feedbackUp: 1,
      feedbackDown: 0,
      ttftP50Ms: 380,
      ttftP95Ms: 910
    }],
    totals: { calls: 3, completed: 2, errors: 1, aborted: 0, blocked: 0, inputTokens: 2400, outputTokens: 600, costMicroUsd: 720, costCents: 0, feedbackUp: 1, feedbackDown: 0 }
  }]
})
export type AiAnalyticsValue = Static<typeof AiAnalytics>

export const analyticsSchemas = [AnalyticsRow, AiAnalytics]
