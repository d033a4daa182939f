import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import sharp from 'sharp'
import t from 'tap'
import ts from 'typescript'
import { build, userWithKey } from '../helper.js'
import { Contract } from '../smoke/contract.js'

/**
 * The TypeScript client's examples in docs/api.md (the blocks under `<!-- client-example -->`) run, in order and
 * as one program, against a listening service in test mode: an example that no longer works fails the build.
 */
const API_DOC = new URL('../../docs/api.md', import.meta.url)
const CLIENT = new URL('../../clients/typescript/src/index.ts', import.meta.url)

/** The examples' code: their imports (from '@portal-ai/client') and their statements, in the order of the page. */
export function clientExamples (markdown: string): { imports: string[], body: string[] } {
  const imports = new Set<string>()
  const body: string[] = []
  const pattern = /<!-- client-example -->\n```ts\n([\s\S]*?)\n```/g
  for (const [, code = ''] of markdown.matchAll(pattern)) {
    for (const line of code.split('\n')) {
      const named = /^import \{ (.+) \} from '@portal-ai\/client'$/.exec(line)
      if (named !== null) for (const name of (named[1] as string).split(',')) imports.add(name.trim())
      else body.push(line)
    }
  }
  return { imports: [...imports], body }
}

t.test('every TypeScript client example of docs/api.md runs against the service', async (t) => {
  const { app } = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { key } = await userWithKey(app, { plan: 'pro', mode: 'test' })
  const dir = mkdtempSync(join(tmpdir(), 'client-examples-'))
  const photo = join(dir, 'room.jpg')
  writeFileSync(photo, await sharp({ create: { width: 320, height: 240, channels: 3, background: '#d9c8b0' } }).jpeg().toBuffer())
  const { imports, body } = clientExamples(readFileSync(API_DOC, 'utf8'))
  t.ok(imports.includes('createPortalClient') && body.length > 20, 'the examples are found')
  const program = [
    `import { ${imports.join(', ')} } from ${JSON.stringify(CLIENT.href)}`,
    'export async function run (BASE: string, KEY: string, PHOTO_PATH: string, WEBHOOK_SECRET: string, console: { log: (...args: unknown[]) => void }) {',
    ...body.map((line) => `  ${line}`),
    '}'
  ].join('\n')
  const file = join(dir, 'examples.ts')
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}')
  writeFileSync(file, program)
  const { run } = await import(pathToFileURL(file).href) as { run: (...args: unknown[]) => Promise<void> }
  const printed: unknown[][] = []
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`
  await run(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`, key, photo, secret, { log: (...args: unknown[]) => printed.push(args) })
  const lines = printed.map((args) => args.map(String).join(' '))
  t.match(lines[0], /^pro settings-assistant,/, 'the entitlements')
  t.ok(lines.some((line) => /^image\/png \d+$/.test(line)), 'the cut-out')
  t.ok(lines.some((line) => /^completed \/v1\/ai\/files\//.test(line)), 'the staging completed with its link')
  t.ok(lines.some((line) => /^stg_\S+ completed$/.test(line)), 'the pages of stagings')
  t.ok(lines.some((line) => /^400 VALIDATION_ERROR \S+ \[object Object\]/.test(line)), 'the error')
  t.equal(lines.at(-1), '400', 'an unsigned delivery is refused')
})

/** Each operation's client call in part 4 of docs/api.md (the blocks under `<!-- client: operationId -->`), with its line. */
export function clientCalls (markdown: string): Array<{ operationId: string, code: string, line: number }> {
  const calls: Array<{ operationId: string, code: string, line: number }> = []
  for (const match of markdown.matchAll(/<!-- client: (\S+) -->\n```ts\n([\s\S]*?)\n```/g)) {
    calls.push({ operationId: match[1] as string, code: match[2] as string, line: markdown.slice(0, match.index).split('\n').length + 2 })
  }
  return calls
}

/** The names the calls of part 4 use, as section 2a introduces them. */
const CALL_CONTEXT = [
  `import { createPortalClient, fileFrom, type PortalClient } from ${JSON.stringify(CLIENT.pathname)}`,
  'declare const BASE: string',
  'declare const KEY: string',
  '/** The client of section 2a: an AI token source. */',
  'declare const portal: PortalClient',
  '/** token: ADMIN_TOKEN */',
  'declare const admin: PortalClient',
  '/** token: a built-in account\'s access token */',
  'declare const account: PortalClient',
  '/** no token */',
  'declare const anonymous: PortalClient'
]

/** The type errors of the calls, compiled together against the generated types, each with its line in docs/api.md. */
function typeErrors (calls: Array<{ operationId: string, code: string, line: number }>): string[] {
  const file = new URL('./__client_calls__.ts', import.meta.url).pathname
  const header = [...CALL_CONTEXT, 'void createPortalClient', 'void fileFrom']
  const source: string[] = [...header]
  const origin: Array<{ from: number, line: number }> = []
  calls.forEach(({ code, line }, i) => {
    source.push(`export async function call${i} () {`)
    origin.push({ from: source.length, line })
    source.push(...code.split('\n'), '}')
  })
  const text = source.join('\n')
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts'],
    types: ['node'],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    allowImportingTsExtensions: true
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, version, ...rest) => name === file ? ts.createSourceFile(name, text, version) : getSourceFile(name, version, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file).map((d) => {
    const at = d.file?.getLineAndCharacterOfPosition(d.start ?? 0).line ?? 0
    const block = [...origin].reverse().find((o) => o.from <= at)
    const where = block === undefined ? `(context line ${at + 1})` : `docs/api.md:${block.line + at - block.from}`
    return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`
  })
}

/** How a call names its operation: the method and path, or the helper that calls it. */
function callsOperation (contract: Contract, operationId: string, code: string): boolean {
  const { method, path } = contract.operation(operationId)
  const helpers: Record<string, string> = { askSettingsAssistant: 'streamSettingsAssistant', streamChatMessage: 'streamChatMessage', openaiCreateChatCompletion: 'streamChatCompletion' }
  if (code.includes(`.${method}('${path}'`)) return true
  if (method === 'GET' && code.includes(`.pages('${path}'`)) return true
  return helpers[operationId] !== undefined && code.includes(`.${helpers[operationId] as string}(`)
}

t.test('every operation of docs/api.md has its client call, and they all type-check against the generated types', async (t) => {
  const contract = Contract.committed()
  const calls = clientCalls(readFileSync(API_DOC, 'utf8'))
  // Google's redirect of the user's browser, never called by an app.
  const notCalled = new Set(['googleCalendarCallback'])
  const documented = new Set(calls.map((c) => c.operationId))
  t.same([...contract.operations.keys()].filter((id) => !documented.has(id) && !notCalled.has(id)), [], 'every operation an app calls has a client call')
  t.same(calls.filter((c) => !callsOperation(contract, c.operationId, c.code)).map((c) => `docs/api.md:${c.line}: ${c.operationId}`), [], 'each call is of the operation it is filed under')
  t.same(typeErrors(calls), [], 'the calls compile against clients/typescript (a changed contract breaks them)')
  t.match(typeErrors([{ operationId: 'createTask', code: "await portal.POST('/v1/tasks', { body: { name: 'x' } })", line: 7 }])[0], /^docs\/api\.md:7: .*'name' does not exist/, 'a wrong body fails')
})

t.test('the extraction reads the imports and the statements of each example', async (t) => {
  const page = "text\n<!-- client-example -->\n```ts\nimport { a, b } from '@portal-ai/client'\nconst x = 1\n```\n\n```ts\nnot an example\n```\n<!-- client-example -->\n```ts\nimport { a } from '@portal-ai/client'\nconsole.log(x)\n```\n"
  t.same(clientExamples(page), { imports: ['a', 'b'], body: ['const x = 1', 'console.log(x)'] })
})
