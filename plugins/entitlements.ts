import fp from 'fastify-plugin'
import Value from 'typebox/value'
import defaultPlans from '../defaults/plans.json' with { type: 'json' }
import { PLAN_ID_PATTERN, PlansFile, type FeaturePlanValue, type PlansFileValue } from '../schemas/plans.js'
import type { Principal } from '../schemas/principal.js'
import { ConfigError, readJsonFile } from './config.js'
import { AppError } from './errors.js'
import { FEATURES, isFeatureId, type FeatureId } from './features.js'
import type { Queryable } from './store/index.js'

export type LicenseStatus = 'active' | 'suspended' | 'expired'
export interface License { userId: string, plan: string, status: LicenseStatus, validUntil: string | null, updatedAt: string }

/** Reads and checks a plans file (or the bundled one); every problem is listed at once, as for the environment. */
export function loadPlans (file?: string): PlansFileValue {
  const raw = readJsonFile('PLANS_FILE', file, defaultPlans)
  const problems = Value.Errors(PlansFile, raw).map((e) => `PLANS_FILE ${e.instancePath === '' ? '(top level)' : e.instancePath} ${e.message}.`)
  if (problems.length === 0) {
    for (const [planId, plan] of Object.entries((raw as PlansFileValue).plans)) {
      if (!PLAN_ID_PATTERN.test(planId)) problems.push(`PLANS_FILE /plans/${planId}: a plan id is 1 to 32 lowercase letters, digits or dashes, starting with a letter.`)
      for (const feature of Object.keys(plan.features)) {
        if (!isFeatureId(feature)) problems.push(`PLANS_FILE /plans/${planId}/features/${feature}: no such feature (known: ${Object.keys(FEATURES).join(', ')}).`)
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return raw as PlansFileValue
}

interface LicenseRow { user_id: string, plan: string, status: LicenseStatus, valid_until: Date | null, updated_at: Date }
const toLicense = (row: LicenseRow): License => ({
  userId: row.user_id,
  plan: row.plan,
  status: row.status,
  validUntil: row.valid_until?.toISOString() ?? null,
  updatedAt: row.updated_at.toISOString()
})

/** Plans, licenses and the checks built on them. */
export function createEntitlements (db: Queryable, plans: PlansFileValue, source: 'db' | 'claims') {
  const planFeatures = (plan: string): FeatureId[] =>
    Object.keys(plans.plans[plan]?.features ?? {}).filter(isFeatureId)

  return {
    plans,
    source,
    planFeatures,
    featurePlan: (plan: string, feature: FeatureId): FeaturePlanValue | undefined => plans.plans[plan]?.features[feature],

    async getLicense (userId: string): Promise<License | null> {
      const { rows } = await db.query<LicenseRow>('SELECT * FROM licenses WHERE user_id = $1', [userId])
      return rows[0] === undefined ? null : toLicense(rows[0])
    },

    async putLicense (userId: string, input: { plan: string, status: LicenseStatus, validUntil?: string | null }, within: Queryable = db): Promise<License> {
      if (plans.plans[input.plan] === undefined) {
        throw new AppError('VALIDATION_ERROR', `This plan is not configured: the plans are ${Object.keys(plans.plans).join(', ')}.`,
          { fields: [{ location: 'body', path: '/plan', message: 'is not a configured plan' }] })
      }
      const { rows } = await within.query<LicenseRow>(`
        INSERT INTO licenses (user_id, plan, status, valid_until) VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id) DO UPDATE SET plan = EXCLUDED.plan, status = EXCLUDED.status,
          valid_until = EXCLUDED.valid_until, updated_at = now()
        RETURNING *`, [userId, input.plan, input.status, input.validUntil ?? null])
      return toLicense(rows[0] as LicenseRow)
    },

    /** Removes a user's license (their account is deleted); true when there was one. */
    async deleteLicense (userId: string, within: Queryable = db): Promise<boolean> {
      return (await within.query('DELETE FROM licenses WHERE user_id = $1', [userId])).rowCount > 0
    },

    /**
     * The plan a user may use right now, checked when an AI token is minted: from the licenses table, or
     * (ENTITLEMENTS_SOURCE=claims) from the `plan` claim of a portal token.
     */
    async activePlan (userId: string, claimedPlan: unknown, now = new Date()): Promise<string> {
      let plan: string
      if (source === 'claims' && claimedPlan !== undefined) {
        if (typeof claimedPlan !== 'string') throw new AppError('LICENSE_INACTIVE', 'The portal token carries no valid `plan` claim.')
        plan = claimedPlan
      } else {
        const license = await this.getLicense(userId)
        if (license === null) throw new AppError('LICENSE_INACTIVE', 'No AI license for this user: ask for one in the portal.')
        if (license.status !== 'active') throw new AppError('LICENSE_INACTIVE', `The AI license is ${license.status}.`, { status: license.status })
        if (license.validUntil !== null && new Date(license.validUntil) <= now) {
          throw new AppError('LICENSE_INACTIVE', 'The AI license has expired.', { status: 'expired', validUntil: license.validUntil })
        }
        plan = license.plan
      }
      if (plans.plans[plan] === undefined) throw new AppError('LICENSE_INACTIVE', 'The licensed plan is not offered any more.')
      return plan
    },

    /** The check a feature route runs: the token's scope and the plan both include the feature. */
    check (principal: Principal, feature: FeatureId) {
      if (!principal.features.includes(feature) || plans.plans[principal.plan]?.features[feature] === undefined) {
        throw new AppError('NOT_ENTITLED', `This token does not include the feature ${feature}.`, { feature, plan: principal.plan })
      }
    }
  }
}

export type Entitlements = ReturnType<typeof createEntitlements>

declare module 'fastify' {
  interface FastifyInstance {
    entitlements: Entitlements
  }
  interface FastifyContextConfig {
    /** The AI feature a route serves: the route then needs an AI token whose scope and plan include it. */
    feature?: FeatureId
  }
}

/** Plans and licenses; attaches the feature check to every route that declares `config.feature`. */
export default fp(async function entitlements (app) {
  const plans = loadPlans(app.config.PLANS_FILE)
  app.decorate('entitlements', createEntitlements(app.store, plans, app.config.ENTITLEMENTS_SOURCE))

  app.addHook('onRoute', (route) => {
    const feature = route.config?.feature
    if (feature === undefined) return
    // After authentication (the auth plugin's onRoute hook ran first and put its check in onRequest).
    const check = async (request: { principal: Principal | null }) => { app.entitlements.check(request.principal as Principal, feature) }
    route.onRequest = [route.onRequest, check].flat().filter((hook) => hook !== undefined)
  })
}, { name: 'entitlements', fastify: '5.x', dependencies: ['config', 'store'] })
