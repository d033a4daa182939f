import cookie from '@fastify/cookie'
import fp from 'fastify-plugin'

/**
 * Cookie parsing for AUTH_COOKIE. No hook: only the credential check reads the one cookie it needs
 * (`app.parseCookie`), so other requests never pay for parsing their cookies.
 */
export default fp(async function cookies (app) {
  await app.register(cookie, { hook: false })
}, { name: 'cookies', fastify: '5.x' })
