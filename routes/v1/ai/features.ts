import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { FEATURE_IDS, FEATURES, PROVIDERS, type ProviderId } from '../../../plugins/features.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { FeatureManifestValue } from '../../../schemas/features.js'
import { ref } from '../../../schemas/refs.js'
import { FeatureManifest } from '../../../schemas/features.js'

const features: FastifyPluginAsyncTypebox = async (app) => {
  const vendors = app.models.health()
  const configured: Record<ProviderId, boolean> = {
    openai: app.openaiChat !== null,
    anthropic: vendors.anthropic?.configured === true,
    qwen: vendors.qwen?.configured === true,
    deepseek: vendors.deepseek?.configured === true,
    xai: vendors.xai?.configured === true,
    gemini: vendors.gemini?.configured === true,
    removebg: app.backgroundRemoval.live.some((p) => p.name === 'removebg'),
    rembg: app.backgroundRemoval.live.some((p) => p.name === 'rembg'),
    aiservice: app.config.AI_SERVICE_URL !== undefined,
    sandbox: true
  }
  const assistantModel = app.config.SETTINGS_ASSISTANT_MODEL === undefined ? undefined : app.models.get(app.config.SETTINGS_ASSISTANT_MODEL)
  const liveOf = (id: (typeof FEATURE_IDS)[number], registered: readonly ProviderId[]): readonly ProviderId[] => {
    if (id === 'background-removal') return app.config.BG_REMOVAL_PROVIDERS.split(',') as ProviderId[]
    if (id === 'risk-scan') return app.config.SCAN_PROVIDERS.split(',').map((p) => p === 'llm' ? 'openai' : 'aiservice')
    if (id === 'settings-assistant' && assistantModel !== undefined) return [assistantModel.vendor]
    return registered
  }
  // Built once: the registry and the configuration do not change while the process runs.
  const manifest: FeatureManifestValue = {
    features: FEATURE_IDS.map((id) => {
      const { providers, sends, serverAdds, neverSent, limits, ...rest } = FEATURES[id]
      const live = liveOf(id, providers.live)
      return {
        ...rest,
        providers: [
          ...live.map((p) => ({ ...PROVIDERS[p], mode: 'live' as const, configured: configured[p] })),
          { ...PROVIDERS[providers.test], mode: 'test' as const, configured: true }
        ],
        sends: sends.map((s) => ({ ...s })),
        serverAdds: [...serverAdds],
        neverSent: [...neverSent],
        limits: { ...limits }
      }
    })
  }

  app.get('/features', {
    schema: {
      operationId: 'listFeatures',
      summary: 'The AI features and what each sends where',
      description: 'The disclosure manifest, generated from the feature registry: for each feature, the request fields that go to ' +
        'which provider, what the service adds, what is logged and stored, and its limits. No authentication needed.',
      tags: ['features'],
      response: { 200: ref(FeatureManifest), ...errorResponses() }
    }
  }, async () => manifest)
}

export default features
