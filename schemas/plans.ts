import Type, { type Static } from 'typebox'

export const FeaturePlan = Type.Object({
  quota: Type.Object({
    limit: Type.Integer({ minimum: 0, description: 'Units per period (the unit is the feature\'s: tokens, images or requests).' }),
    period: Type.Union([Type.Literal('day'), Type.Literal('month')], { description: 'A UTC calendar day or month.' })
  }, { additionalProperties: false }),
  rateLimitPerMinute: Type.Integer({ minimum: 1, maximum: 100_000, description: 'Calls per minute per user.' })
}, { additionalProperties: false })
export type FeaturePlanValue = Static<typeof FeaturePlan>

/** The plans file (PLANS_FILE, default defaults/plans.json): plan → features → quota and rate limit. */
export const PlansFile = Type.Object({
  plans: Type.Record(Type.String(), Type.Object({
    name: Type.String({ minLength: 1, maxLength: 80 }),
    features: Type.Record(Type.String(), FeaturePlan)
  }, { additionalProperties: false }), { minProperties: 1 })
}, { additionalProperties: false })
export type PlansFileValue = Static<typeof PlansFile>

/** Plan ids appear in tokens and URLs: short, lowercase. */
export const PLAN_ID_PATTERN = /^[a-z][a-z0-9-]{0,31}$/
