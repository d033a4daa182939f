import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ENV_DOC_FILE, generateEnvDoc, generatePrivacyDoc, PRIVACY_DOC_FILE } from './contract.js'

// `npm run docs`: regenerate the documents derived from code; commit the result with the change.
writeFileSync(ENV_DOC_FILE, generateEnvDoc())
process.stdout.write(`wrote ${fileURLToPath(ENV_DOC_FILE)}\n`)
writeFileSync(PRIVACY_DOC_FILE, generatePrivacyDoc())
process.stdout.write(`wrote ${fileURLToPath(PRIVACY_DOC_FILE)}\n`)
