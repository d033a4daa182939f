import { createHash, timingSafeEqual } from 'node:crypto'
import { decodeJwt } from 'jose'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Mode, Principal } from '../../schemas/principal.js'
import { AppError } from '../errors.js'
import { isFeatureId } from '../features.js'
import { createApiKeys, LAST_USED_FLUSH_MS } from './api-keys.js'
import { createIdentityVerifier, portalProvider } from './identity-providers.js'

/**
 * How a route authenticates: `ai-token` (feature routes and the rest of /v1/ai), `credential` (a portal
 * token or an API key, only to mint AI tokens) or `admin` (ADMIN_TOKEN). Routes with `feature` need `ai-token`.
 */
export type AuthKind = 'ai-token' | 'credential' | 'admin'

/** The identity behind a portal (or IDENTITY_PROVIDERS) token or an API key, before a license is checked. */
export interface Credential {
  kind: 'portal' | 'api-key' | 'account'
  userId: string
  mode: Mode
  keyId?: string
  /** The portal token's claims (for ENTITLEMENTS_SOURCE=claims). */
  claims?: Record<string, unknown>
}

/** An issuer of credentials besides the portal (built-in accounts): its tokens name it in `iss`. */
export interface CredentialIssuer {
  issuer: string
  /** The credential of a token this issuer signed; throws the contract's error otherwise. */
  verify: (token: string) => Promise<Credential>
}

interface AiClaims { sub: string, plan: string, features: unknown, mode: Mode, jti: string }

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: AuthKind
  }
  interface FastifyRequest {
    credential: Credential | null
  }
  interface FastifyInstance {
    apiKeys: ReturnType<typeof createApiKeys>
    /** Issuers of credentials besides the portal; a token is routed to one by its (unverified) `iss` claim, then verified by it. */
    credentialIssuers: { register: (issuer: CredentialIssuer) => void }
    /** Runs one kind of authentication inside a handler, for a route that accepts more than one (signed file links). */
    authenticate: (request: FastifyRequest, reply: FastifyReply, kind: AuthKind) => Promise<void>
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
const BEARER = /^Bearer ([\x21-\x7e]{1,4096})$/

/** The bearer credential of a request; UNAUTHENTICATED (with WWW-Authenticate) naming what was `expected` when there is none. */
export function bearer (request: FastifyRequest, expected: string): string {
  const header = request.headers.authorization
  const match = typeof header === 'string' ? BEARER.exec(header) : null
  if (match?.[1] === undefined) {
    throw new AppError('UNAUTHENTICATED', `Send \`Authorization: Bearer <${expected}>\`.`, undefined, { 'www-authenticate': 'Bearer' })
  }
  return match[1]
}

/** The `iss` of a JWT, read without verifying it (only to pick the verifier); undefined for anything else. */
function issuerOf (token: string): string | undefined {
  try {
    const iss = decodeJwt(token).iss
    return typeof iss === 'string' ? iss : undefined
  } catch {
    return undefined
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/** Portal tokens, API keys, AI tokens and the admin token; sets `request.principal` or `request.credential`. */
export default fp(async function auth (app) {
  const apiKeys = createApiKeys(app.store)
  const portal = portalProvider(app.config)
  const verifyPortal = portal === null ? null : createIdentityVerifier(portal, 'portal')
  const adminDigest = digest(app.config.ADMIN_TOKEN)
  app.decorate('apiKeys', apiKeys)
  const issuers = new Map<string, CredentialIssuer>()
  app.decorate('credentialIssuers', {
    register (issuer: CredentialIssuer) {
      if (issuers.has(issuer.issuer)) throw new Error(`credential issuer ${issuer.issuer} is registered twice`)
      issuers.set(issuer.issuer, issuer)
    }
  })
  app.decorateRequest('credential', null)
  // The trusted issuers of IDENTITY_PROVIDERS: their tokens are credentials like the portal's.
  for (const provider of app.config.identityProviders) {
    const verify = createIdentityVerifier(provider, provider.issuer)
    issuers.set(provider.issuer, {
      issuer: provider.issuer,
      async verify (token) {
        const { userId, claims } = await verify(token)
        return { kind: 'portal', userId, mode: 'live', claims }
      }
    })
  }

  // lastUsedAt is coalesced: one batched write per interval, and a last one at shutdown.
  const flush = () => apiKeys.flushLastUsed().catch((err: unknown) => app.log.warn({ err }, 'could not record API key use'))
  const timer = setInterval(flush, LAST_USED_FLUSH_MS).unref()
  app.addHook('preClose', async () => {
    clearInterval(timer)
    await flush()
  })

  async function aiToken (request: FastifyRequest) {
    const token = bearer(request, 'AI token')
    let claims: AiClaims
    try {
      claims = app.jwt.verify<AiClaims>(token)
    } catch (err) {
      if ((err as { code?: string }).code === 'FAST_JWT_EXPIRED') {
        throw new AppError('TOKEN_EXPIRED', 'The AI token has expired: mint a new one at POST /v1/ai/tokens.')
      }
      throw new AppError('UNAUTHENTICATED', 'This route needs an AI token from POST /v1/ai/tokens (a portal token or an API key is not accepted here).')
    }
    const features = Array.isArray(claims.features) ? claims.features.filter((f): f is string => typeof f === 'string').filter(isFeatureId) : []
    const principal: Principal = {
      userId: claims.sub,
      plan: claims.plan,
      mode: claims.mode === 'test' ? 'test' : 'live',
      credential: 'ai-token',
      features,
      tokenId: claims.jti
    }
    request.principal = principal
  }

  const cookieName = app.config.AUTH_COOKIE
  /**
   * The credential of a request: its bearer token, or, with AUTH_COOKIE, the cookie of that name when no
   * Authorization header is sent. A cookie is sent by the browser to any request, so a state-changing one must
   * also carry X-Requested-With, which a cross-site form cannot send (and CORS preflights for any other origin).
   */
  function credentialToken (request: FastifyRequest) {
    if (cookieName !== undefined && request.headers.authorization === undefined && typeof request.headers.cookie === 'string') {
      const value = app.parseCookie(request.headers.cookie)[cookieName]
      if (value !== undefined && value !== '') {
        if (!SAFE_METHODS.has(request.method) && (request.headers['x-requested-with'] ?? '') === '') {
          throw new AppError('UNAUTHENTICATED', `A ${request.method} authenticated by the ${cookieName} cookie must also send the X-Requested-With header (CSRF protection).`)
        }
        return value
      }
    }
    return bearer(request, 'portal access token or API key')
  }

  async function credential (request: FastifyRequest) {
    const token = credentialToken(request)
    if (token.startsWith('pak_')) {
      const key = await apiKeys.verify(token)
      if (key === null) throw new AppError('UNAUTHENTICATED', 'The API key is unknown or revoked.')
      request.credential = { kind: 'api-key', userId: key.userId, mode: key.mode, keyId: key.id }
      return
    }
    const issuer = issuers.get(issuerOf(token) ?? '')
    if (issuer !== undefined) {
      request.credential = await issuer.verify(token)
      return
    }
    if (verifyPortal === null) {
      throw new AppError('UNAUTHENTICATED', 'Portal tokens are not accepted by this deployment (no PORTAL_JWKS_URL or PORTAL_JWT_SECRET): use an API key.')
    }
    const { userId, claims } = await verifyPortal(token)
    request.credential = { kind: 'portal', userId, mode: 'live', claims }
  }

  async function admin (request: FastifyRequest) {
    const token = bearer(request, 'admin token')
    if (!timingSafeEqual(digest(token), adminDigest)) throw new AppError('UNAUTHENTICATED', 'The admin token is not valid.')
  }

  const checks: Record<AuthKind, (request: FastifyRequest, reply: FastifyReply) => Promise<void>> = {
    'ai-token': aiToken,
    credential,
    admin
  }

  app.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply, kind: AuthKind) => checks[kind](request, reply))

  app.addHook('onReady', async () => {
    if (await apiKeys.count() > 0) return
    app.log.info('No API keys yet. For a test key, in another terminal: `npm run cli -- licenses grant --user qa-user --plan pro` ' +
      'then `npm run cli -- keys create --user qa-user --mode test`.')
  })

  app.addHook('onRoute', (route) => {
    const kind = route.config?.auth ?? (route.config?.feature === undefined ? undefined : 'ai-token')
    if (kind === undefined) return
    route.config = { ...route.config, auth: kind }
    route.onRequest = [route.onRequest, checks[kind]].flat().filter((hook) => hook !== undefined)
  })
}, { name: 'auth', fastify: '5.x', dependencies: ['config', 'store', 'ai-tokens', 'privacy', 'cookies'] })
