import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose'
import type { Config } from '../config.js'
import { AppError } from '../errors.js'

/** Asymmetric algorithms accepted from a JWKS; HS256 only with a shared secret. Never `none`, never mixed. */
export const JWKS_ALGORITHMS = ['RS256', 'ES256']
export const SECRET_ALGORITHMS = ['HS256']
const JWKS_TIMEOUT_MS = 5_000
/** A kid the cache does not know triggers a refetch (key rotation), at most once per cooldown. */
const JWKS_COOLDOWN_MS = 30_000
const JWKS_MAX_AGE_MS = 10 * 60_000
const CLOCK_TOLERANCE_S = 5

export type PortalVerifier = (token: string) => Promise<JWTPayload & { sub: string }>

const UNAVAILABLE = new Set(['ERR_JWKS_TIMEOUT', 'ERR_JOSE_GENERIC'])

/** Verifies portal access tokens with the configured JWKS or HS256 secret; null when neither is configured. */
export function createPortalVerifier (
  config: Pick<Config, 'PORTAL_JWKS_URL' | 'PORTAL_JWT_SECRET' | 'PORTAL_JWT_ISSUER' | 'PORTAL_JWT_AUDIENCE'>,
  { cooldownMs = JWKS_COOLDOWN_MS } = {}
): PortalVerifier | null {
  const options = {
    issuer: config.PORTAL_JWT_ISSUER,
    audience: config.PORTAL_JWT_AUDIENCE,
    requiredClaims: ['sub', 'exp'],
    clockTolerance: CLOCK_TOLERANCE_S
  }
  let verify: (token: string) => Promise<{ payload: JWTPayload }>
  if (config.PORTAL_JWKS_URL !== undefined) {
    const jwks = createRemoteJWKSet(new URL(config.PORTAL_JWKS_URL), {
      timeoutDuration: JWKS_TIMEOUT_MS,
      cooldownDuration: cooldownMs,
      cacheMaxAge: JWKS_MAX_AGE_MS
    })
    verify = async (token) => jwtVerify(token, jwks, { ...options, algorithms: JWKS_ALGORITHMS })
  } else if (config.PORTAL_JWT_SECRET !== undefined) {
    const secret = new TextEncoder().encode(config.PORTAL_JWT_SECRET)
    verify = async (token) => jwtVerify(token, secret, { ...options, algorithms: SECRET_ALGORITHMS })
  } else {
    return null
  }

  return async (token) => {
    try {
      const { payload } = await verify(token)
      return payload as JWTPayload & { sub: string }
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new AppError('TOKEN_EXPIRED', 'The portal token has expired: sign in to the portal again.')
      const code = (err as { code?: string }).code
      if (!(err instanceof errors.JOSEError) || (code !== undefined && UNAVAILABLE.has(code))) {
        // The JWKS could not be fetched: the portal's problem, not the caller's.
        throw new AppError('PROVIDER_UNAVAILABLE', 'The portal\'s signing keys cannot be fetched right now: retry shortly.')
      }
      throw new AppError('UNAUTHENTICATED', 'The portal token is not valid.')
    }
  }
}
