/**
 * The feature registry (SPEC §8): every AI feature is one entry here. Entitlements, tokens, metering and the
 * generated docs read it; adding a feature means adding an entry and its route plugin.
 */
export const FEATURES = {
  'settings-assistant': {
    id: 'settings-assistant',
    name: 'Settings Assistant',
    description: 'Chat that explains LightLane settings and suggests setting changes the app can apply in one click.',
    unit: 'tokens'
  },
  'background-removal': {
    id: 'background-removal',
    name: 'Background removal',
    description: 'Cuts the subject of one image out of its background (a PNG cut-out or a mask).',
    unit: 'images'
  }
} as const

export type FeatureId = keyof typeof FEATURES
export const FEATURE_IDS = Object.keys(FEATURES) as FeatureId[]

export function isFeatureId (value: string): value is FeatureId {
  return Object.hasOwn(FEATURES, value)
}
