import { readFileSync } from 'node:fs'
import t from 'tap'
import { ERROR_STATUS } from '../../schemas/errors.js'
import { checkAssistantStream, Contract, parseSse } from '../smoke/contract.js'

/**
 * docs/api.md cannot drift from the contract: every JSON example is checked against the operation and status
 * its annotation names, every operation and error code is documented, and every curl example calls a real path.
 */
const API_DOC = new URL('../../docs/api.md', import.meta.url)

interface Block { line: number, info: string, annotation: string | undefined, body: string }

/** The fenced code blocks of a Markdown text, with the `<!-- example: … -->` comment right above each, if any. */
function codeBlocks (markdown: string): Block[] {
  const lines = markdown.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*$/.exec(lines[i] as string)
    if (open === null) continue
    const indent = (open[1] as string).length
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i] as string); i++) body.push((lines[i] as string).slice(indent))
    let above = start - 1
    while (above >= 0 && (lines[above] as string).trim() === '') above--
    const annotation = /^\s*<!-- example: (.+?) -->\s*$/.exec(lines[above] ?? '')?.[1]
    blocks.push({ line: start + 1, info: open[2] as string, annotation, body: body.join('\n') })
  }
  return blocks
}

/** Problems of one annotated example against the contract. */
function checkExample (contract: Contract, block: Block): string[] {
  const where = `docs/api.md:${block.line}`
  if (block.annotation === undefined) return block.info === 'json' ? [`${where}: a JSON example without an <!-- example: operationId status --> annotation`] : []
  const [operationId = '', what = '', media = 'application/json'] = block.annotation.split(/\s+/)
  try {
    if (media === 'text/event-stream') {
      return [...contract.check(operationId, Number(what), media, block.body), ...checkAssistantStream(contract, parseSse(block.body))].map((p) => `${where}: ${p}`)
    }
    const value = JSON.parse(block.body) as unknown
    const problems = what === 'request' ? contract.checkRequest(operationId, media, value) : contract.check(operationId, Number(what), media, value)
    return problems.map((p) => `${where}: ${p}`)
  } catch (err) {
    return [`${where}: ${(err as Error).message}`]
  }
}

const contract = Contract.committed()
const doc = readFileSync(API_DOC, 'utf8')
const blocks = codeBlocks(doc)

t.test('every JSON example of docs/api.md conforms to the contract', async (t) => {
  const annotated = blocks.filter((b) => b.annotation !== undefined)
  t.ok(annotated.length >= 25, `${annotated.length} annotated examples are checked`)
  t.same(blocks.flatMap((b) => checkExample(contract, b)), [])
  const operations = new Set(annotated.map((b) => (b.annotation as string).split(' ')[0]))
  t.same([...contract.operations.keys()].filter((id) => !operations.has(id)), [], 'every operation has at least one checked example')
})

t.test('the checker catches a wrong example', async (t) => {
  const block = (annotation: string | undefined, body: string, info = 'json'): Block => ({ line: 7, info, annotation, body })
  t.same(checkExample(contract, block(undefined, '{}')), ['docs/api.md:7: a JSON example without an <!-- example: operationId status --> annotation'])
  t.same(checkExample(contract, block(undefined, 'npm start', 'sh')), [], 'shell blocks need no annotation')
  t.match(checkExample(contract, block('getHealthLive 200', '{"status":"ok",}'))[0], /^docs\/api\.md:7: .*JSON/)
  t.match(checkExample(contract, block('getHealthLive 200', '{"status":"fine"}'))[0], /getHealthLive 200 application\/json: \/status must be equal to one of the allowed values/)
  t.match(checkExample(contract, block('getHealthLive 418', '{"status":"ok"}'))[0], /does not document status 418/)
  t.match(checkExample(contract, block('askSettingsAssistant request', '{"message":""}'))[0], /askSettingsAssistant request: \/message must NOT have fewer than 1 characters/)
  t.match(checkExample(contract, block('getHealthLive request', '{}'))[0], /getHealthLive takes no application\/json body/)
  t.match(checkExample(contract, block('askSettingsAssistant 200 text/event-stream', 'event: delta\ndata: {"text":"Hi"}\n', 'text'))[0], /does not end with a done or error event/)
})

t.test('every operation and every error code is documented', async (t) => {
  for (const { method, path } of contract.operations.values()) t.match(doc, `\n### ${method} ${path}\n`, `${method} ${path} has a section`)
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    t.match(doc, `\n| \`${code}\` | ${status} | `, `${code} (${status}) is in the error table`)
  }
})

t.test('every curl example calls a path of the contract', async (t) => {
  const templates = Object.keys(contract.document.paths).map((p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`))
  const called = [...doc.matchAll(/curl [^\n]*?\$BASE(\/[^\s"'?]*)/g)].map((m) => m[1] as string)
  t.ok(called.length >= 15, `${called.length} curl examples`)
  t.same(called.filter((path) => !templates.some((re) => re.test(path))), [], 'no curl example calls a path the contract lacks')
})
