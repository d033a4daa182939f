import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose'
import { http, HttpResponse } from 'msw'

export const PORTAL_ISSUER = 'https://portal.lightlane.example'
export const PORTAL_AUDIENCE = 'lightlane-desktop'
export const JWKS_URL = `${PORTAL_ISSUER}/.well-known/jwks.json`
export const PORTAL_SECRET = 'portal-hs256-secret-abcdefghijklmnopqrstuvwxyz'

/** A portal signing key as the portal would publish it (RS256 or ES256), with its kid. */
export async function portalKey (alg: 'RS256' | 'ES256', kid: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  const jwk: JWK = { ...await exportJWK(publicKey), kid, alg, use: 'sig' }
  return { publicKey, privateKey, jwk, kid, alg }
}
type PortalKey = Awaited<ReturnType<typeof portalKey>>

/** The JWKS endpoint of the portal (RFC 7517 shape); `keys` can be swapped to rotate. */
export function jwksHandler (state: { keys: JWK[], hits: number }) {
  return http.get(JWKS_URL, () => {
    state.hits++
    return HttpResponse.json({ keys: state.keys })
  })
}

export async function signPortal (key: PortalKey, claims: JWTPayload = {}, opts: { exp?: string | number, iss?: string, aud?: string } = {}) {
  return new SignJWT({ sub: 'portal-user', ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuedAt()
    .setIssuer(opts.iss ?? PORTAL_ISSUER)
    .setAudience(opts.aud ?? PORTAL_AUDIENCE)
    .setExpirationTime(opts.exp ?? '5m')
    .sign(key.privateKey)
}

export async function signPortalHs (secret: string, claims: JWTPayload = {}, opts: { exp?: string | number } = {}) {
  return new SignJWT({ sub: 'portal-user', ...claims })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setIssuer(PORTAL_ISSUER)
    .setAudience(PORTAL_AUDIENCE)
    .setExpirationTime(opts.exp ?? '5m')
    .sign(new TextEncoder().encode(secret))
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
/** An unsigned token (`alg: none`). */
export function unsignedToken (payload: JWTPayload) {
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`
}
/** The same token with its payload replaced and the signature kept. */
export function tamper (token: string, change: (payload: Record<string, unknown>) => void) {
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>
  change(claims)
  return `${header}.${b64(claims)}.${signature}`
}
