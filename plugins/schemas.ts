import fp from 'fastify-plugin'
import { sharedSchemas } from '../schemas/index.js'

/** Registers the shared schemas before any route, so routes and the contract refer to them by name. */
export default fp(async function schemas (app) {
  for (const schema of sharedSchemas) app.addSchema(schema)
}, { name: 'schemas', fastify: '5.x' })
