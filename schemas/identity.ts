import Type, { type Static } from 'typebox'
import { isoTime } from './refs.js'
import { FEATURE_IDS, type FeatureId } from '../plugins/features.js'

const refTo = <T>(id: string) => Type.Unsafe<T>(Type.Ref(id))

export const FeatureIdSchema = Type.Union(FEATURE_IDS.map((id) => Type.Literal(id)), {
  $id: 'FeatureId',
  title: 'FeatureId',
  description: 'An AI feature. New features are only ever added.',
  examples: ['settings-assistant']
})
export const ModeSchema = Type.Union([Type.Literal('live'), Type.Literal('test')], {
  $id: 'Mode',
  title: 'Mode',
  description: '`live` calls reach real providers; `test` calls go to offline sandbox providers and are metered apart.'
})

export const TokenRequest = Type.Object({
  features: Type.Optional(Type.Array(refTo<FeatureId>('FeatureId'), {
    minItems: 1,
    maxItems: FEATURE_IDS.length,
    uniqueItems: true,
    description: 'Narrow the token to these features (each must be in the plan). Default: every feature of the plan.'
  }))
}, {
  $id: 'TokenRequest',
  title: 'TokenRequest',
  additionalProperties: false,
  examples: [{ features: ['settings-assistant'] }]
})

export const TokenResponse = Type.Object({
  token: Type.String({ description: 'The AI token (a JWT). Send it as `Authorization: Bearer …` to the feature routes.' }),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ description: 'Seconds until the token expires.' }),
  expiresAt: isoTime('When the token expires; mint a new one before.'),
  plan: Type.String(),
  features: Type.Array(refTo<FeatureId>('FeatureId')),
  mode: refTo<Static<typeof ModeSchema>>('Mode')
}, {
  $id: 'TokenResponse',
  title: 'TokenResponse',
  additionalProperties: false,
  examples: [{
    token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJl',
    tokenType: 'Bearer',
    expiresIn: 900,
    expiresAt: '2026-11-22T12:15:00.000Z',
    plan: 'pro',
    features: ['settings-assistant', 'background-removal'],
    mode: 'live'
  }]
})

export const FeatureEntitlement = Type.Object({
  id: refTo<FeatureId>('FeatureId'),
  name: Type.String(),
  unit: Type.Union([Type.Literal('tokens'), Type.Literal('images'), Type.Literal('stagings'), Type.Literal('scans'), Type.Literal('requests')], { description: 'What the quota counts.' }),
  quota: Type.Object({
    limit: Type.Integer({ description: 'Units per period.' }),
    period: Type.Union([Type.Literal('day'), Type.Literal('month')], { description: 'UTC calendar day or month.' }),
    resetsAt: isoTime('Start of the next period.')
  }, { additionalProperties: false }),
  rateLimitPerMinute: Type.Integer()
}, { $id: 'FeatureEntitlement', title: 'FeatureEntitlement', additionalProperties: false })

export const Entitlements = Type.Object({
  userId: Type.String(),
  plan: Type.String(),
  planName: Type.String(),
  mode: refTo<Static<typeof ModeSchema>>('Mode'),
  features: Type.Array(refTo<Static<typeof FeatureEntitlement>>('FeatureEntitlement'), { description: 'The features this token may use.' })
}, {
  $id: 'Entitlements',
  title: 'Entitlements',
  additionalProperties: false,
  examples: [{
    userId: 'user-42',
    plan: 'free',
    planName: 'Free',
    mode: 'test',
    features: [{
      id: 'background-removal',
      name: 'Background removal',
      unit: 'images',
      quota: { limit: 5, period: 'day', resetsAt: '2026-11-23T00:00:00.000Z' },
      rateLimitPerMinute: 3
    }]
  }]
})

export const identitySchemas = [FeatureIdSchema, ModeSchema, TokenRequest, TokenResponse, FeatureEntitlement, Entitlements]
