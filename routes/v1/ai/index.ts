import type { FastifyPluginAsync } from 'fastify'
import entitlements from './entitlements.js'
import tokens from './tokens.js'
import usage from './usage.js'

/** /v1/ai: the routes the desktop app calls. */
const ai: FastifyPluginAsync = async (app) => {
  await app.register(tokens)
  await app.register(entitlements)
  await app.register(usage)
}

export default ai
