import { adminSchemas } from './admin.js'
import { ErrorCode, ErrorResponse } from './errors.js'
import { CheckResult, HealthLive, HealthReady } from './health.js'
import { identitySchemas } from './identity.js'
import { featureSchemas } from './features.js'
import { settingsAssistantSchemas } from './settings-assistant.js'
import { usageSchemas } from './usage.js'
import { jobSchemas } from './jobs.js'
import { userDataSchemas } from './user-data.js'
import { webhookSchemas } from './webhooks.js'
import { modelSchemas } from './models.js'
import { chatSchemas } from './chats.js'
import { analyticsSchemas } from './analytics.js'
import { billingSchemas } from './billing.js'
import { stagingSchemas } from './staging.js'
import { scanSchemas } from './scans.js'

/** Named components: added once with `addSchema`, referred to by `$ref`, published under components.schemas. */
export const sharedSchemas = [ErrorCode, ErrorResponse, HealthLive, CheckResult, HealthReady, ...identitySchemas, ...adminSchemas, ...usageSchemas, ...featureSchemas, ...settingsAssistantSchemas, ...jobSchemas, ...userDataSchemas, ...webhookSchemas, ...modelSchemas, ...chatSchemas, ...analyticsSchemas, ...billingSchemas, ...stagingSchemas, ...scanSchemas]
