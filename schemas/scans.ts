import Type, { type Static } from 'typebox'
import { Page, PageQuery } from './pagination.js'
import { isoTime } from './refs.js'

/** Document risk scans (SPEC §13). */
export const MAX_SCAN_TEXT = 100_000
export const MAX_FILENAME = 255

export const Risk = Type.Object({
  risk: Type.String({ description: 'The risk, in a sentence.' }),
  category: Type.String({ description: 'What kind of risk: schedule, cost, scope, technical, resources, legal, compliance, safety, quality, stakeholders or other (the risk AI service may use its own words).' }),
  context: Type.String({ description: 'The passage of the document it comes from.' })
}, { $id: 'Risk', title: 'Risk', additionalProperties: false })

export const Scan = Type.Object({
  id: Type.String({ pattern: '^scn_[0-9A-Za-z]{16}$', examples: ['scn_4fQ2kV9xT1bN7cLm'] }),
  filename: Type.Union([Type.String({ maxLength: MAX_FILENAME }), Type.Null()], { description: 'The uploaded file\'s name; null for a scan of text.' }),
  data: Type.Array(Type.Unsafe<Static<typeof Risk>>(Type.Ref('Risk')), { description: 'The risks found, in the order the scanner gave them, without duplicates; may be empty.' }),
  source: Type.Union([Type.Literal('llm'), Type.Literal('model')], { description: '`llm` when a language model read the text, `model` when the risk AI service\'s own model did (and the test-mode sandbox).' }),
  createdAt: isoTime('When the scan was made.')
}, { $id: 'Scan', title: 'Scan', additionalProperties: false })
export type ScanValue = Static<typeof Scan>

export const ScanList = Page(Type.Unsafe<ScanValue>(Type.Ref('Scan')), { $id: 'ScanList', description: 'Your scans, newest first.' })
export const ScanListQuery = Type.Object(PageQuery, { additionalProperties: false })

export const ScanText = Type.Object({
  text: Type.String({ minLength: 1, maxLength: MAX_SCAN_TEXT, description: 'The text to scan, 1 to 100,000 characters.' }),
  forceLlm: Type.Optional(Type.Boolean({ default: false, description: 'Ask the risk AI service to use its language model rather than its own model.' }))
}, { $id: 'ScanText', title: 'ScanText', additionalProperties: false })

export const scanSchemas = [Risk, Scan, ScanList, ScanText]
