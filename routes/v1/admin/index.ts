import type { FastifyPluginAsync } from 'fastify'
import analytics from './analytics.js'
import audit from './audit.js'
import credits from './credits.js'
import keys from './keys.js'
import licenses from './licenses.js'
import platform from './platform.js'
import usage from './usage.js'

/** /v1/admin: licenses, API keys and the audit trail, behind ADMIN_TOKEN. The CLI is its client. */
const admin: FastifyPluginAsync = async (app) => {
  await app.register(licenses)
  await app.register(keys)
  await app.register(audit)
  await app.register(usage)
  await app.register(platform)
  await app.register(analytics)
  await app.register(credits)
}

export default admin
