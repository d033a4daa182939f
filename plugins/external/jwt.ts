import jwt from '@fastify/jwt'
import fp from 'fastify-plugin'

/** AI tokens: HS256 JWTs signed with AI_TOKEN_SECRET for this service only (`aud=portal-ai`). */
export const AI_TOKEN_AUDIENCE = 'portal-ai'
export const AI_TOKEN_ISSUER = 'portal-ai-api'

export default fp(async function aiTokens (app) {
  await app.register(jwt, {
    secret: app.config.AI_TOKEN_SECRET,
    sign: { algorithm: 'HS256', aud: AI_TOKEN_AUDIENCE, iss: AI_TOKEN_ISSUER, expiresIn: `${app.config.AI_TOKEN_TTL_SECONDS}s` },
    verify: { allowedAud: AI_TOKEN_AUDIENCE, allowedIss: AI_TOKEN_ISSUER, algorithms: ['HS256'], requiredClaims: ['sub', 'jti', 'exp'] }
  })
}, { name: 'ai-tokens', fastify: '5.x', dependencies: ['config'] })
