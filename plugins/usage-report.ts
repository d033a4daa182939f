import type { FastifyInstance } from 'fastify'
import type { FeatureId } from './features.js'
import { FEATURES } from './features.js'
import type { Mode } from '../schemas/principal.js'

/** The usage answer shared by GET /v1/ai/usage and GET /v1/admin/usage. */
export async function usageReport (app: FastifyInstance, who: { userId: string, plan: string, mode: Mode, features: FeatureId[] },
  page: { cursor?: string, limit: number }) {
  const features = []
  for (const id of who.features) {
    const featurePlan = app.entitlements.featurePlan(who.plan, id)
    if (featurePlan === undefined) continue
    const { used, reserved, resetsAt } = await app.metering.usage({ userId: who.userId, mode: who.mode, feature: id }, featurePlan.quota)
    features.push({
      id,
      unit: FEATURES[id].unit,
      period: featurePlan.quota.period,
      limit: featurePlan.quota.limit,
      used,
      reserved,
      remaining: Math.max(0, featurePlan.quota.limit - used - reserved),
      resetsAt: resetsAt.toISOString()
    })
  }
  const { events, nextCursor } = await app.metering.events(who.userId, who.mode, { before: page.cursor, limit: page.limit })
  return { userId: who.userId, plan: who.plan, mode: who.mode, features, events, nextCursor }
}
