import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ENV_DOC_FILE, generateEnvDoc } from './contract.js'

// `npm run docs`: regenerate the documents derived from code; commit the result with the change.
writeFileSync(ENV_DOC_FILE, generateEnvDoc())
process.stdout.write(`wrote ${fileURLToPath(ENV_DOC_FILE)}\n`)
