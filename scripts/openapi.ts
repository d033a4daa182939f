import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { CLIENT_TYPES_FILE, generateClientTypes } from './client-types.js'
import { generateOpenApi, OPENAPI_FILE } from './contract.js'

// `npm run openapi`: write the contract the routes define, and the TypeScript client's types generated from it;
// commit both with the route change.
const contract = await generateOpenApi()
writeFileSync(OPENAPI_FILE, contract)
process.stdout.write(`wrote ${fileURLToPath(OPENAPI_FILE)}\n`)
writeFileSync(CLIENT_TYPES_FILE, await generateClientTypes(contract))
process.stdout.write(`wrote ${fileURLToPath(CLIENT_TYPES_FILE)}\n`)
