import Type, { type Static } from 'typebox'
import type { FeatureId } from '../plugins/features.js'
import type { ModeSchema } from './identity.js'
import { isoTime, ref } from './refs.js'

export const FeatureUsage = Type.Object({
  id: Type.Unsafe<FeatureId>(Type.Ref('FeatureId')),
  unit: Type.Union([Type.Literal('tokens'), Type.Literal('images'), Type.Literal('stagings'), Type.Literal('scans'), Type.Literal('requests')]),
  period: Type.Union([Type.Literal('day'), Type.Literal('month')], { description: 'UTC calendar day or month.' }),
  limit: Type.Integer(),
  used: Type.Integer({ description: 'Settled units of the current period.' }),
  reserved: Type.Integer({ description: 'Units held by calls in flight.' }),
  remaining: Type.Integer({ description: 'limit − used − reserved, never below 0.' }),
  resetsAt: isoTime('Start of the next period.')
}, { $id: 'FeatureUsage', title: 'FeatureUsage', additionalProperties: false })

export const UsageEvent = Type.Object({
  id: Type.String({ description: 'Increasing id; also the pagination cursor.' }),
  at: isoTime('When the call was settled.'),
  feature: Type.String(),
  provider: Type.String({ description: 'openai, removebg, rembg or sandbox.' }),
  model: Type.Union([Type.String(), Type.Null()]),
  unitsIn: Type.Integer(),
  unitsOut: Type.Integer(),
  units: Type.Integer({ description: 'Units charged against the quota.' }),
  costMicroUsd: Type.Integer({ description: 'Cost in millionths of a US dollar.' }),
  requestId: Type.Union([Type.String(), Type.Null()]),
  estimated: Type.Boolean({ description: 'The provider sent no usage: the units were counted by the service.' })
}, { $id: 'UsageEvent', title: 'UsageEvent', additionalProperties: false })

export const Usage = Type.Object({
  userId: Type.String(),
  plan: Type.String(),
  mode: Type.Unsafe<Static<typeof ModeSchema>>(Type.Ref('Mode')),
  features: Type.Array(ref(FeatureUsage)),
  events: Type.Array(ref(UsageEvent), { description: 'Settled calls, newest first. Never content.' }),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for older events; null on the last page.' })
}, {
  $id: 'Usage',
  title: 'Usage',
  additionalProperties: false,
  examples: [{
    userId: 'user-42',
    plan: 'free',
    mode: 'test',
    features: [{ id: 'background-removal', unit: 'images', period: 'day', limit: 5, used: 2, reserved: 0, remaining: 3, resetsAt: '2026-11-23T00:00:00.000Z' }],
    events: [{
      id: '17',
      at: '2026-11-22T10:00:00.000Z',
      feature: 'background-removal',
      provider: 'sandbox',
      model: null,
      unitsIn: 1,
      unitsOut: 1,
      units: 1,
      costMicroUsd: 0,
      requestId: '7f2c1f9e-3b7a-4c59-9d43-6f0b1c2a9e10',
      estimated: false
    }],
    nextCursor: null
  }]
})

export const UsageQuery = Type.Object({
  cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'From `nextCursor`.' })),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20, description: 'Events per page.' })
}, { additionalProperties: false })

export const usageSchemas = [FeatureUsage, UsageEvent, Usage]
