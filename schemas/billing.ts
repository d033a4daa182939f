import Type, { type Static } from 'typebox'
import { UserId } from './admin.js'
import { Page, PageQuery } from './pagination.js'
import { isoTime } from './refs.js'

// Billing in money (SPEC §16). Amounts are integers: micro-USD, and the same rounded to whole cents.
const micro = (description: string) => Type.Integer({ description: `${description}, in micro-USD.` })
const cents = (description: string) => Type.Integer({ description: `${description}, in whole cents (rounded half up).` })
const nullable = <T extends ReturnType<typeof Type.Integer> | ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()])

export const Balance = Type.Object({
  billed: Type.Boolean({ description: 'Whether your plan pays for its calls in credits; when false every amount is 0 and calls are limited by quotas only.' }),
  balanceCents: cents('What you can spend now: free credits left this month plus purchased credits, less what calls under way hold'),
  balanceMicroUsd: micro('The same'),
  freeCreditsRemainingCents: cents('Free credits left this month'),
  freeCreditsResetAt: isoTime('When the free credits are renewed: the start of the next UTC month.'),
  purchasedCreditsCents: cents('Purchased credits left (they never expire)'),
  lifetimeUsageCents: cents('Everything charged so far')
}, {
  $id: 'Balance',
  title: 'Balance',
  additionalProperties: false,
  examples: [{ billed: true, balanceCents: 1243, balanceMicroUsd: 12_431_250, freeCreditsRemainingCents: 243, freeCreditsResetAt: '2027-01-01T00:00:00.000Z', purchasedCreditsCents: 1000, lifetimeUsageCents: 257 }]
})

export const BillingPeriod = Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month')], { description: 'The current UTC day, ISO week (from Monday) or month.' })

export const BillingUsageQuery = Type.Object({ period: Type.Optional(BillingPeriod) }, { additionalProperties: false })

export const BillingUsage = Type.Object({
  period: BillingPeriod,
  from: isoTime('Start of the period.'),
  to: isoTime('End of the period (exclusive).'),
  costMicroUsd: micro('Charged in the period'),
  costCents: cents('Charged in the period'),
  data: Type.Array(Type.Object({
    feature: Type.String(),
    model: Type.Union([Type.String(), Type.Null()], { description: 'The model, or null for a feature without one (background removal: the provider is in the transactions).' }),
    calls: Type.Integer({ minimum: 0 }),
    tokensInput: Type.Integer({ minimum: 0 }),
    tokensOutput: Type.Integer({ minimum: 0 }),
    costMicroUsd: micro('Charged'),
    costCents: cents('Charged')
  }, { additionalProperties: false }), { description: 'By feature and model, dearest first.' })
}, {
  $id: 'BillingUsage',
  title: 'BillingUsage',
  additionalProperties: false,
  examples: [{ period: 'month', from: '2026-12-01T00:00:00.000Z', to: '2027-01-01T00:00:00.000Z', costMicroUsd: 2_568_750, costCents: 257, data: [{ feature: 'chat', model: 'claude-sonnet-4-5', calls: 12, tokensInput: 40_210, tokensOutput: 9_300, costMicroUsd: 2_568_750, costCents: 257 }] }]
})

export const TransactionId = Type.String({ pattern: '^(use|grant)_[0-9]{1,18}$', description: 'A transaction id: `use_…` for a charged call, `grant_…` for credits added.' })

export const Transaction = Type.Object({
  id: TransactionId,
  timestamp: isoTime('When it happened.'),
  operationType: Type.Union([Type.Literal('usage'), Type.Literal('credit-grant')], { description: '`usage`: a call was charged; `credit-grant`: credits were added by an operator.' }),
  operationId: Type.String({ description: 'The request id of the call (its X-Request-Id), or the grant\'s id.' }),
  feature: nullable(Type.String()),
  model: nullable(Type.String()),
  provider: nullable(Type.String()),
  tokensInput: Type.Integer({ minimum: 0 }),
  tokensOutput: Type.Integer({ minimum: 0 }),
  costMicroUsd: micro('Charged for the call (0 for a grant)'),
  costCents: cents('Charged for the call (0 for a grant)'),
  creditMicroUsd: micro('Credits added (0 for a call)'),
  creditCents: cents('Credits added (0 for a call)'),
  markupPercent: nullable(Type.Integer({ description: 'The markup the call was charged with.' })),
  inputCostPer1M: Type.Union([Type.Number(), Type.Null()], { description: 'The list price per million input tokens (USD) the call was charged at; a later price change does not rewrite it.' }),
  outputCostPer1M: Type.Union([Type.Number(), Type.Null()], { description: 'The list price per million output tokens (USD) the call was charged at.' }),
  sessionId: Type.Optional(Type.String({ description: 'The chat the call belongs to.' })),
  reason: Type.Optional(Type.String({ description: 'Why credits were added (a grant\'s reason).' }))
}, {
  $id: 'Transaction',
  title: 'Transaction',
  additionalProperties: false,
  examples: [{ id: 'use_4812', timestamp: '2026-12-03T08:10:22.481Z', operationType: 'usage', operationId: '5c0b1a8e-1f9d-4c55-9b58-2f1e0e1a7c3d', feature: 'chat', model: 'gpt-4o-mini', provider: 'openai', tokensInput: 1200, tokensOutput: 300, costMicroUsd: 504, costCents: 0, creditMicroUsd: 0, creditCents: 0, markupPercent: 40, inputCostPer1M: 0.15, outputCostPer1M: 0.6, sessionId: 'chat_4Gm2Qz8LwP1vXk7R' }]
})

export const TransactionPage = Page(Transaction, { $id: 'TransactionPage', description: 'Charged calls and credits added, newest first.' })
export const TransactionQuery = Type.Object(PageQuery, { additionalProperties: false })

export const BillingLimits = Type.Object({
  billed: Type.Boolean({ description: 'Whether your plan pays for its calls in credits (the limits below apply only then).' }),
  markupPercent: nullable(Type.Integer({ description: 'Added to the providers\' list prices.' })),
  monthlyFreeCents: nullable(Type.Integer({ description: 'Free credits each UTC month.' })),
  dailyTokenLimit: nullable(Type.Integer({ description: 'Tokens a UTC day (a hard limit); null: none.' })),
  dailyTokensUsed: Type.Integer({ minimum: 0, description: 'Tokens today, calls under way included.' }),
  dailyResetAt: isoTime('The start of the next UTC day.'),
  monthlyCostLimitCents: nullable(Type.Integer({ description: 'Charges a UTC month (a soft limit, with a grace period); null: none.' })),
  monthlyChargedCents: Type.Integer({ minimum: 0, description: 'Charged this month, calls under way included.' }),
  graceHours: nullable(Type.Integer({ description: 'Hours calls still pass after the monthly cost limit was first reached.' })),
  graceEndsAt: Type.Union([isoTime('When the grace period ends (the limit was reached this month).'), Type.Null()]),
  monthlyResetAt: isoTime('The start of the next UTC month.')
}, {
  $id: 'BillingLimits',
  title: 'BillingLimits',
  additionalProperties: false,
  examples: [{ billed: true, markupPercent: 40, monthlyFreeCents: 500, dailyTokenLimit: 200_000, dailyTokensUsed: 18_450, dailyResetAt: '2026-12-04T00:00:00.000Z', monthlyCostLimitCents: 5000, monthlyChargedCents: 257, graceHours: 24, graceEndsAt: null, monthlyResetAt: '2027-01-01T00:00:00.000Z' }]
})

export const EstimateRequest = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 100, description: 'A model id of GET /v1/ai/models.' }),
  inputTokens: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'Tokens of the prompt; or give `messages`.' })),
  messages: Type.Optional(Type.Array(Type.Object({
    role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
    content: Type.String({ maxLength: 100_000 })
  }, { additionalProperties: false }), { minItems: 1, maxItems: 200, description: 'A conversation whose last message is the new one, counted as a chat call would count it (with the system prompt).' })),
  estimatedOutputTokens: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'Tokens of the reply; absent: the reply limit of a chat call on this model (what a call reserves).' }))
}, {
  $id: 'EstimateRequest',
  title: 'EstimateRequest',
  additionalProperties: false,
  examples: [{ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Summarise chapter one.' }] }]
})

export const Estimate = Type.Object({
  model: Type.String(),
  inputTokens: Type.Integer({ minimum: 0 }),
  outputTokens: Type.Integer({ minimum: 0 }),
  inputCostPer1M: Type.Number({ description: 'List price, USD per million input tokens.' }),
  outputCostPer1M: Type.Number({ description: 'List price, USD per million output tokens.' }),
  markupPercent: Type.Integer({ minimum: 0, description: 'Your plan\'s markup (0 when the plan is not billed in credits).' }),
  estimatedCostMicroUsd: micro('What such a call would be charged at most: what it reserves before the model is called'),
  estimatedCostCents: cents('The same')
}, {
  $id: 'Estimate',
  title: 'Estimate',
  additionalProperties: false,
  examples: [{ model: 'gpt-4o-mini', inputTokens: 62, outputTokens: 4096, inputCostPer1M: 0.15, outputCostPer1M: 0.6, markupPercent: 40, estimatedCostMicroUsd: 3454, estimatedCostCents: 0 }]
})

export const CreditGrantInput = Type.Object({
  amountCents: Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'Credits to add, in whole cents (at most 100,000 USD at once).' }),
  reason: Type.String({ minLength: 1, maxLength: 200, description: 'Why (a purchase reference, a goodwill credit); shown to the user in the transactions and audited.' }),
  mode: Type.Optional(Type.Union([Type.Literal('live'), Type.Literal('test')], { description: 'Which balance: live (when absent), or test (for test-mode keys).' }))
}, { $id: 'CreditGrantInput', title: 'CreditGrantInput', additionalProperties: false, examples: [{ amountCents: 1000, reason: 'Order 2026-1187' }] })

export const CreditAccount = Type.Object({
  userId: UserId,
  mode: Type.Union([Type.Literal('live'), Type.Literal('test')]),
  plan: Type.Union([Type.String(), Type.Null()], { description: 'The user\'s licensed plan; null without a license.' }),
  balance: Type.Unsafe<Static<typeof Balance>>(Type.Ref('Balance')),
  grantId: Type.Optional(TransactionId)
}, {
  $id: 'CreditAccount',
  title: 'CreditAccount',
  additionalProperties: false,
  examples: [{ userId: 'user-42', mode: 'live', plan: 'pro', grantId: 'grant_17', balance: { billed: true, balanceCents: 1500, balanceMicroUsd: 15_000_000, freeCreditsRemainingCents: 500, freeCreditsResetAt: '2027-01-01T00:00:00.000Z', purchasedCreditsCents: 1000, lifetimeUsageCents: 0 } }]
})

export type BalanceValue = Static<typeof Balance>
export type TransactionValue = Static<typeof Transaction>
export type BillingLimitsValue = Static<typeof BillingLimits>
export type BillingUsageValue = Static<typeof BillingUsage>

export const billingSchemas = [Balance, BillingUsage, Transaction, TransactionPage, BillingLimits, EstimateRequest, Estimate, CreditGrantInput, CreditAccount]
