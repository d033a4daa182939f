import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponses } from '../../../../schemas/errors.js'
import { ref } from '../../../../schemas/refs.js'
import { SettingsCatalog } from '../../../../schemas/settings-assistant.js'
import messages from './messages.js'

/** /v1/ai/settings-assistant: the catalog the assistant suggests from, and the chat itself. */
const settingsAssistant: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/catalog', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'getSettingsCatalog',
      summary: 'The settings the assistant may suggest',
      description: 'Every setting the assistant knows, with its type and allowed values. Suggestions are checked against it ' +
        'before they reach the app, so the app can apply any suggestion it receives.',
      tags: ['settings-assistant'],
      security: [{ aiToken: [] }],
      response: { 200: ref(SettingsCatalog), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async () => app.settingsAssistant.catalog)

  await app.register(messages)
}

export default settingsAssistant
