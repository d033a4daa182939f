import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { generateOpenApi, OPENAPI_FILE } from './contract.js'

// `npm run openapi`: write the contract the routes define; commit the result with the route change.
writeFileSync(OPENAPI_FILE, await generateOpenApi())
process.stdout.write(`wrote ${fileURLToPath(OPENAPI_FILE)}\n`)
