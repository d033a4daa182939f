import Type, { type Static } from 'typebox'

export const FeaturePlan = Type.Object({
  quota: Type.Object({
    limit: Type.Integer({ minimum: 0, description: 'Units per period (the unit is the feature\'s: tokens, images, stagings or requests).' }),
    period: Type.Union([Type.Literal('day'), Type.Literal('month')], { description: 'A UTC calendar day or month.' })
  }, { additionalProperties: false }),
  rateLimitPerMinute: Type.Integer({ minimum: 1, maximum: 100_000, description: 'Calls per minute per user.' })
}, { additionalProperties: false })
export type FeaturePlanValue = Static<typeof FeaturePlan>

const microUsd = (description: string) => Type.Optional(Type.Number({ minimum: 0, maximum: 1e9, description }))

/** Price of a provider's (or one model's) calls, in micro-USD: per input unit, per output unit and per call. */
export const Price = Type.Object({
  perInputUnit: microUsd('Per input unit (token or image); for OpenAI models, micro-USD per token = USD per million tokens.'),
  perOutputUnit: microUsd('Per output unit (token or image).'),
  perImageInputUnit: microUsd('Image models: per input image token (text input tokens take perInputUnit).'),
  perImageOutputUnit: microUsd('Image models: per output image token (text output tokens take perOutputUnit).'),
  perCall: microUsd('Per settled call.')
}, { additionalProperties: false })
export type PriceValue = Static<typeof Price>

/** Billing in money (SPEC §16): a plan with `credits` pays for its calls from a balance; one without pays nothing. */
export const PlanCredits = Type.Object({
  monthlyFreeCents: Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'Free credits each UTC month, in cents; unused ones do not carry over.' }),
  markupPercent: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, default: 40, description: 'Added to the provider\'s list price of a call (40: a call costing the service 100 µUSD is charged 140).' })),
  dailyTokenLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1e12, description: 'At most this many tokens a UTC day over the token-priced features (a hard limit). Absent: none.' })),
  monthlyCostLimitCents: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000_000, description: 'At most this much charged a UTC month, in cents: a soft limit, enforced graceHours after the call that first reached it. Absent: none.' })),
  graceHours: Type.Optional(Type.Integer({ minimum: 0, maximum: 720, default: 24, description: 'Hours calls still pass after the monthly cost limit was first reached (0: refused at once).' }))
}, { additionalProperties: false })
export type PlanCreditsValue = Static<typeof PlanCredits>

/** The plans file (PLANS_FILE, default defaults/plans.json): plan → features → quota and rate limit; provider prices. */
export const PlansFile = Type.Object({
  plans: Type.Record(Type.String(), Type.Object({
    name: Type.String({ minLength: 1, maxLength: 80 }),
    features: Type.Record(Type.String(), FeaturePlan),
    rateLimitPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'Calls per minute per user on the AI-token routes that are not a feature (balance, usage, models, chats\' reads…); absent: 120. Feature routes use their own limit.' })),
    credits: Type.Optional(PlanCredits)
  }, { additionalProperties: false }), { minProperties: 1 }),
  prices: Type.Optional(Type.Record(Type.String({ pattern: '^[a-z0-9-]+(/[A-Za-z0-9._:-]+)?$' }), Price, {
    description: 'Keyed `provider/model` or `provider`; the ledger\'s cost_micro_usd comes from here (no entry: 0).'
  }))
}, { additionalProperties: false })
export type PlansFileValue = Static<typeof PlansFile>

/** Plan ids appear in tokens and URLs: short, lowercase. */
export const PLAN_ID_PATTERN = /^[a-z][a-z0-9-]{0,31}$/
