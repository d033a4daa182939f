import type { FastifyPluginAsync } from 'fastify'
import backgroundRemoval from './background-removal.js'
import entitlements from './entitlements.js'
import estimate from './estimate.js'
import features from './features.js'
import files from './files.js'
import me from './me.js'
import models from './models.js'
import settingsAssistant from './settings-assistant/index.js'
import staging from './staging.js'
import stagings from './stagings.js'
import scans from './scans.js'
import tokens from './tokens.js'
import usage from './usage.js'

/** /v1/ai: the routes the desktop app calls. */
const ai: FastifyPluginAsync = async (app) => {
  await app.register(tokens)
  await app.register(entitlements)
  await app.register(usage)
  await app.register(features)
  await app.register(files)
  await app.register(me)
  await app.register(models)
  await app.register(estimate)
  await app.register(settingsAssistant, { prefix: '/settings-assistant' })
  await app.register(backgroundRemoval)
  await app.register(staging)
  await app.register(stagings)
  await app.register(scans)
}

export default ai
