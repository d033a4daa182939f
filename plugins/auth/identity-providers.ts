import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose'
import Type, { type Static } from 'typebox'
import Value from 'typebox/value'
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
const MIN_SECRET_LENGTH = 32
/** The longest user id a claim may carry (ids are stored in every table of the user). */
export const MAX_USER_ID_LENGTH = 256

/** One trusted issuer of sign-in tokens, as IDENTITY_PROVIDERS lists them (SPEC §17). */
export const IdentityProviderSchema = Type.Object({
  issuer: Type.String({ minLength: 1, maxLength: 512 }),
  audience: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 16 })]),
  jwksUrl: Type.Optional(Type.String({ pattern: '^https?://[^\\s]+$' })),
  secret: Type.Optional(Type.String({ minLength: MIN_SECRET_LENGTH })),
  userIdClaim: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  requiredClaims: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.Union([Type.String(), Type.Number(), Type.Boolean()]), { maxProperties: 16 }))
}, { additionalProperties: false })
export type IdentityProvider = Static<typeof IdentityProviderSchema>
/** The portal shorthand (PORTAL_*) may leave the issuer and audience unchecked, as it always could. */
type Verifiable = Omit<IdentityProvider, 'issuer' | 'audience'> & { issuer?: string, audience?: string | string[] }
const MAX_PROVIDERS = 16

/**
 * IDENTITY_PROVIDERS parsed and checked; a list of problems instead (never quoting the value: it may hold secrets).
 * An issuer named twice, or also by PORTAL_JWT_ISSUER, is a problem: a token is routed to its verifier by `iss`.
 */
export function parseIdentityProviders (value: string, portalIssuer?: string): IdentityProvider[] | string[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch {
    return ['IDENTITY_PROVIDERS must be a JSON array of {issuer, audience, jwksUrl | secret, userIdClaim?, requiredClaims?}: it is not valid JSON.']
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || parsed.length > MAX_PROVIDERS) {
    return [`IDENTITY_PROVIDERS must be a JSON array of 1 to ${MAX_PROVIDERS} providers {issuer, audience, jwksUrl | secret, userIdClaim?, requiredClaims?}.`]
  }
  const problems: string[] = []
  const seen = new Set(portalIssuer === undefined ? [] : [portalIssuer])
  for (const [index, entry] of parsed.entries()) {
    const where = `IDENTITY_PROVIDERS entry ${index + 1}`
    const failures = [...Value.Errors(IdentityProviderSchema, entry)]
    if (failures.length > 0) {
      const first = failures[0] as { instancePath: string, message: string }
      problems.push(`${where}: ${first.instancePath === '' ? 'the entry' : first.instancePath.slice(1)} ${first.message} ` +
        '(fields: issuer, audience, jwksUrl or secret of at least 32 characters, userIdClaim, requiredClaims).')
      continue
    }
    const provider = entry as IdentityProvider
    if ((provider.jwksUrl === undefined) === (provider.secret === undefined)) {
      problems.push(`${where}: set exactly one of jwksUrl (RS256/ES256 keys) and secret (HS256).`)
    }
    if (seen.has(provider.issuer)) problems.push(`${where}: the issuer ${provider.issuer} is trusted twice (here, in another entry or as PORTAL_JWT_ISSUER).`)
    seen.add(provider.issuer)
  }
  return problems.length > 0 ? problems : parsed as IdentityProvider[]
}

/** The portal shorthand as a provider, or null when neither PORTAL_JWKS_URL nor PORTAL_JWT_SECRET is set. */
export function portalProvider (config: Pick<Config, 'PORTAL_JWKS_URL' | 'PORTAL_JWT_SECRET' | 'PORTAL_JWT_ISSUER' | 'PORTAL_JWT_AUDIENCE'>): Verifiable | null {
  if (config.PORTAL_JWKS_URL === undefined && config.PORTAL_JWT_SECRET === undefined) return null
  return { issuer: config.PORTAL_JWT_ISSUER, audience: config.PORTAL_JWT_AUDIENCE, jwksUrl: config.PORTAL_JWKS_URL, secret: config.PORTAL_JWT_SECRET }
}

/** Who a verified sign-in token names, and all its claims (for ENTITLEMENTS_SOURCE=claims). */
export interface VerifiedIdentity { userId: string, claims: JWTPayload }
export type IdentityVerifier = (token: string) => Promise<VerifiedIdentity>

const UNAVAILABLE = new Set(['ERR_JWKS_TIMEOUT', 'ERR_JOSE_GENERIC'])

/**
 * Verifies the tokens of one identity provider: signature (its JWKS, refetched when a token names an unknown `kid`
 * at most once per cooldown, or its HS256 secret), expiry, issuer, audience, the required claims, and the user id claim.
 * `label` names the provider in error messages ("portal", or its issuer).
 */
export function createIdentityVerifier (provider: Verifiable, label: string, { cooldownMs = JWKS_COOLDOWN_MS } = {}): IdentityVerifier {
  const userIdClaim = provider.userIdClaim ?? 'sub'
  const options = {
    issuer: provider.issuer,
    audience: provider.audience,
    requiredClaims: ['exp'],
    clockTolerance: CLOCK_TOLERANCE_S
  }
  let verify: (token: string) => Promise<{ payload: JWTPayload }>
  if (provider.jwksUrl !== undefined) {
    const jwks = createRemoteJWKSet(new URL(provider.jwksUrl), {
      timeoutDuration: JWKS_TIMEOUT_MS,
      cooldownDuration: cooldownMs,
      cacheMaxAge: JWKS_MAX_AGE_MS
    })
    verify = async (token) => jwtVerify(token, jwks, { ...options, algorithms: JWKS_ALGORITHMS })
  } else {
    const secret = new TextEncoder().encode(provider.secret)
    verify = async (token) => jwtVerify(token, secret, { ...options, algorithms: SECRET_ALGORITHMS })
  }
  const required = Object.entries(provider.requiredClaims ?? {})

  return async (token) => {
    let payload: JWTPayload
    try {
      payload = (await verify(token)).payload
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new AppError('TOKEN_EXPIRED', `The ${label} token has expired: sign in again.`)
      const code = (err as { code?: string }).code
      if (!(err instanceof errors.JOSEError) || (code !== undefined && UNAVAILABLE.has(code))) {
        // The JWKS could not be fetched: the provider's problem, not the caller's.
        throw new AppError('PROVIDER_UNAVAILABLE', `The signing keys of the ${label} cannot be fetched right now: retry shortly.`)
      }
      throw new AppError('UNAUTHENTICATED', `The ${label} token is not valid.`)
    }
    for (const [claim, expected] of required) {
      // Names the claim the deployment requires, never the value the token carried.
      if (payload[claim] !== expected) throw new AppError('UNAUTHENTICATED', `The ${label} token lacks the claim ${claim}=${String(expected)} this deployment requires.`)
    }
    const userId = payload[userIdClaim]
    if (typeof userId !== 'string' || userId === '' || userId.length > MAX_USER_ID_LENGTH) {
      throw new AppError('UNAUTHENTICATED', `The ${label} token names no user (claim ${userIdClaim}).`)
    }
    return { userId, claims: payload }
  }
}
