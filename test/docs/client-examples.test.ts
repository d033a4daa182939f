import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import sharp from 'sharp'
import t from 'tap'
import { build, userWithKey } from '../helper.js'

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

t.test('the extraction reads the imports and the statements of each example', async (t) => {
  const page = "text\n<!-- client-example -->\n```ts\nimport { a, b } from '@portal-ai/client'\nconst x = 1\n```\n\n```ts\nnot an example\n```\n<!-- client-example -->\n```ts\nimport { a } from '@portal-ai/client'\nconsole.log(x)\n```\n"
  t.same(clientExamples(page), { imports: ['a', 'b'], body: ['const x = 1', 'console.log(x)'] })
})
