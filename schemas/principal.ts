import type { FeatureId } from '../plugins/features.js'

export type Mode = 'live' | 'test'

/** Who a request acts for, once authenticated: set by the auth plugin, logged by user id only. */
export interface Principal {
  /** The portal user id (`sub`). */
  userId: string
  plan: string
  /** `test` calls go to sandbox providers only and are metered apart. */
  mode: Mode
  credential: 'portal' | 'api-key' | 'account' | 'ai-token'
  /** Features this credential may use (for an AI token, the scope it was minted with). */
  features: FeatureId[]
  /** The API key used, for audit and lastUsedAt. */
  keyId?: string
  /** The AI token's `jti`. */
  tokenId?: string
}
