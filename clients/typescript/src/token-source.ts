import createClient from 'openapi-fetch'
import { PortalApiError } from './errors.js'
import { retryingFetch, type Fetch, type RetryOptions } from './retry.js'
import type { components, paths } from './schema.js'

export type FeatureId = components['schemas']['FeatureId']
export type TokenResponse = components['schemas']['TokenResponse']

export interface TokenSourceOptions {
  /** The service's address, e.g. https://ai.example.com */
  baseUrl: string
  /** An API key (pak_…) or the user's portal sign-in token; a function is asked each time a token is minted. */
  credential: string | (() => string | Promise<string>)
  /** Mint tokens for these features only (default: every feature the license has). */
  features?: FeatureId[]
  /** Mint a new token this long before the current one expires (default 60 s, at most half the token's life). */
  refreshMarginMs?: number
  /** Retries of the mint on 429/503 (see retryingFetch); false turns them off. */
  retry?: RetryOptions | false
  fetch?: Fetch
  /** The clock (tests). */
  now?: () => number
}

/** A function answering a valid AI token, minting one when there is none or it is about to expire. */
export interface TokenSource {
  (): Promise<string>
  /** Forget the current token (the service refused it): the next call mints a new one. */
  invalidate: () => void
  /** The last mint's answer (plan, features, expiry), once there has been one. */
  readonly current: TokenResponse | undefined
}

/**
 * Mints AI tokens from a credential with POST /v1/ai/tokens and keeps the current one until shortly before it
 * expires. Concurrent callers share one mint; a refused mint rejects with PortalApiError.
 */
export function aiTokenSource (options: TokenSourceOptions): TokenSource {
  const now = options.now ?? Date.now
  const base = options.fetch ?? ((request: Request) => fetch(request))
  const api = createClient<paths>({ baseUrl: options.baseUrl, fetch: options.retry === false ? base : retryingFetch(options.retry, base) })
  let current: TokenResponse | undefined
  let refreshAt = 0
  let minting: Promise<string> | undefined

  async function mint (): Promise<string> {
    const credential = typeof options.credential === 'string' ? options.credential : await options.credential()
    const { data: minted, error, response } = await api.POST('/v1/ai/tokens', {
      headers: { authorization: `Bearer ${credential}` },
      body: options.features === undefined ? {} : { features: options.features }
    })
    if (minted === undefined) throw new PortalApiError(response.status, error, response.headers)
    const margin = Math.min(options.refreshMarginMs ?? 60_000, minted.expiresIn * 500)
    current = minted
    refreshAt = Date.parse(minted.expiresAt) - margin
    return minted.token
  }

  const source = (async () => {
    if (current !== undefined && now() < refreshAt) return current.token
    minting ??= mint().finally(() => { minting = undefined })
    return await minting
  }) as TokenSource
  source.invalidate = () => { current = undefined }
  Object.defineProperty(source, 'current', { get: () => current })
  return source
}
