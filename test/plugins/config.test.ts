import { mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { trustProxy } from '../../app.js'
import { ConfigError, loadConfig, parseEnv } from '../../plugins/config.js'

const tmp = () => mkdtempSync(join(tmpdir(), 'portal-ai-api-config-'))

function problemsOf (env: NodeJS.ProcessEnv): string[] {
  try {
    parseEnv(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

t.test('defaults apply when nothing is set, and an empty value counts as unset', async (t) => {
  const env = parseEnv({ PORT: '', LOG_LEVEL: '' })
  t.equal(env.PORT, 3000)
  t.equal(env.HOST, '127.0.0.1')
  t.equal(env.LOG_LEVEL, 'info')
  t.equal(env.BG_REMOVAL_PROVIDERS, 'removebg')
  t.equal(env.OPENAI_BASE_URL, 'https://api.openai.com/v1')
})

t.test('numbers are read from text', async (t) => {
  const env = parseEnv({ PORT: '8080', AI_TOKEN_TTL_SECONDS: '600' })
  t.equal(env.PORT, 8080)
  t.equal(env.AI_TOKEN_TTL_SECONDS, 600)
})

t.test('a bad value is named with what it must be, and never echoed', async (t) => {
  const problems = problemsOf({ PORT: 'abc' })
  t.same(problems, ['PORT must be a whole number from 0 to 65535.'])
  t.notMatch(problems.join('\n'), /abc/)
})

t.test('every problem is listed at once', async (t) => {
  const problems = problemsOf({
    PORT: '99999',
    LOG_LEVEL: 'loud',
    OPENAI_BASE_URL: 'ftp://x',
    PORTAL_JWT_SECRET: 'short-secret-value',
    BG_REMOVAL_PROVIDERS: 'removebg,magic'
  })
  t.same(problems, [
    'PORT must be a whole number from 0 to 65535.',
    'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent.',
    'PORTAL_JWT_SECRET must be a text of at least 32 characters.',
    'OPENAI_BASE_URL must be an http:// or https:// URL.',
    'BG_REMOVAL_PROVIDERS must be a comma-separated list of removebg and rembg.'
  ])
  t.notMatch(problems.join('\n'), /short-secret-value/)
})

t.test('rules across variables', async (t) => {
  t.match(problemsOf({ PORTAL_JWKS_URL: 'https://portal.example.com/.well-known/jwks.json', PORTAL_JWT_SECRET: 'x'.repeat(32) }),
    [/PORTAL_JWKS_URL and PORTAL_JWT_SECRET are both set/])
  t.match(problemsOf({ TLS_CERT_FILE: '/tmp/cert.pem' }), [/TLS_CERT_FILE and TLS_KEY_FILE go together/])
  const withDb = problemsOf({ DATABASE_URL: 'postgres://127.0.0.1/test', ADMIN_TOKEN: 'too-short' })
  t.same(withDb, [
    'ADMIN_TOKEN must be a text of at least 32 characters.',
    'AI_TOKEN_SECRET is required with DATABASE_URL (every instance must share it), at least 32 characters.',
    'USER_HASH_SECRET is required with DATABASE_URL (every instance must share it), at least 32 characters.',
    'CONTENT_KEYS is required with DATABASE_URL (every instance must share it): id:base64key, e.g. k1:$(openssl rand -base64 32).'
  ])
})

t.test('CONTENT_KEYS: each entry an id and a 32-byte key, never echoed', async (t) => {
  const key = Buffer.alloc(32, 1).toString('base64')
  t.same(problemsOf({ CONTENT_KEYS: `k1:${key},k2:${Buffer.alloc(16).toString('base64')},no-colon,bad id:${key},k1:${key}` }), [
    'CONTENT_KEYS key "k2" must be 32 bytes in base64 (openssl rand -base64 32).',
    'CONTENT_KEYS entry 3 must be id:base64key with an id of letters, digits, - or _ (at most 32).',
    'CONTENT_KEYS entry 4 must be id:base64key with an id of letters, digits, - or _ (at most 32).',
    'CONTENT_KEYS names key "k1" twice.'
  ])
  const config = loadConfig({ DATA_DIR: tmp(), CONTENT_KEYS: `new:${key},old:${Buffer.alloc(32, 2).toString('base64')}` })
  t.equal(config.contentKeyRing.primary, 'new', 'the first key encrypts')
  t.same([...config.contentKeyRing.keys.keys()], ['new', 'old'])
  t.ok(config.secrets.includes(key), 'each key is kept out of logs on its own')
})

t.test('the message of a ConfigError lists the problems and points at docs/env.md', async (t) => {
  t.throws(() => parseEnv({ PORT: 'abc', HOST: '', LOG_LEVEL: 'x' }), {
    name: 'ConfigError',
    message: /^Invalid configuration \(2 problems\):\n {2}- PORT .*\n {2}- LOG_LEVEL .*\nSee docs\/env\.md/
  })
  t.throws(() => parseEnv({ PORT: 'abc' }), { message: /\(1 problem\)/ })
})

t.test('embedded secrets are generated once into DATA_DIR, mode 600, and reused', async (t) => {
  const dir = join(tmp(), 'nested')
  const first = loadConfig({ DATA_DIR: dir })
  const file = join(dir, 'secrets.json')
  t.equal(statSync(file).mode & 0o777, 0o600)
  const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>
  t.equal(saved.aiTokenSecret, first.AI_TOKEN_SECRET)
  t.equal(saved.adminToken, first.ADMIN_TOKEN)
  t.ok(first.AI_TOKEN_SECRET.length >= 32)
  t.ok(first.USER_HASH_SECRET.length >= 32)
  t.not(first.USER_HASH_SECRET, first.AI_TOKEN_SECRET)

  const second = loadConfig({ DATA_DIR: dir })
  t.equal(second.AI_TOKEN_SECRET, first.AI_TOKEN_SECRET)
  t.equal(second.ADMIN_TOKEN, first.ADMIN_TOKEN)
  t.equal(second.USER_HASH_SECRET, first.USER_HASH_SECRET)
  t.equal(second.CONTENT_KEYS, first.CONTENT_KEYS, 'the content key ring is generated once too')
  t.equal(saved.contentKeys, first.CONTENT_KEYS)
  t.ok(second.secrets.includes(first.ADMIN_TOKEN), 'generated secrets are kept out of logs too')
  t.not(first.FILES_URL_SECRET, first.AI_TOKEN_SECRET, 'the file link key is derived, not the token key')
  t.equal(first.FILES_DIR, join(dir, 'files'))
})

t.test('a data folder from before content encryption gets a key ring, its other secrets kept', async (t) => {
  const dir = tmp()
  writeFileSync(join(dir, 'secrets.json'), JSON.stringify({ aiTokenSecret: 'x'.repeat(43), adminToken: 'y'.repeat(43) }))
  const config = loadConfig({ DATA_DIR: dir })
  t.equal(config.AI_TOKEN_SECRET, 'x'.repeat(43))
  t.match(config.CONTENT_KEYS, /^k1:[A-Za-z0-9+/]{43}=$/)
  t.equal((JSON.parse(readFileSync(join(dir, 'secrets.json'), 'utf8')) as Record<string, string>).contentKeys, config.CONTENT_KEYS)
})

t.test('a secrets file that is not ours is regenerated; an unreadable one is a problem', async (t) => {
  const dir = tmp()
  writeFileSync(join(dir, 'secrets.json'), '{"other": true}')
  const config = loadConfig({ DATA_DIR: dir })
  t.ok(config.AI_TOKEN_SECRET.length >= 32)

  const broken = tmp()
  writeFileSync(join(broken, 'secrets.json'), '{not json')
  t.throws(() => loadConfig({ DATA_DIR: broken }), { name: 'ConfigError', message: /secrets\.json cannot be read as JSON \(invalid JSON\)/ })
  const isDir = tmp()
  mkdirSync(join(isDir, 'secrets.json'))
  t.throws(() => loadConfig({ DATA_DIR: isDir }), { name: 'ConfigError', message: /\(EISDIR\)/ })
})

t.test('a DATA_DIR that cannot be written is a configuration problem, not a crash', async (t) => {
  // A dangling link where the secrets file belongs: reading finds nothing, writing through it fails
  // (a permission test would not fail for root, who runs CI).
  const dir = tmp()
  symlinkSync(join(dir, 'missing', 'secrets.json'), join(dir, 'secrets.json'))
  t.throws(() => loadConfig({ DATA_DIR: dir }), {
    name: 'ConfigError',
    message: /DATA_DIR cannot be written \(ENOENT\): .*set AI_TOKEN_SECRET and ADMIN_TOKEN/
  })
})

t.test('configured secrets are all collected for the log scrubber', async (t) => {
  const config = loadConfig({
    AI_TOKEN_SECRET: 'a'.repeat(40),
    USER_HASH_SECRET: 'b'.repeat(40),
    ADMIN_TOKEN: 'c'.repeat(40),
    OPENAI_API_KEY: 'sk-test-openai-key',
    REMOVEBG_API_KEY: 'removebg-key-1234',
    DATABASE_URL: 'postgres://user:pw@127.0.0.1/test',
    CONTENT_KEYS: `k1:${Buffer.alloc(32, 3).toString('base64')}`,
    FILES_URL_SECRET: 'd'.repeat(40)
  })
  t.same(new Set(config.secrets), new Set(['a'.repeat(40), 'b'.repeat(40), 'c'.repeat(40), 'sk-test-openai-key', 'removebg-key-1234',
    'postgres://user:pw@127.0.0.1/test', `k1:${Buffer.alloc(32, 3).toString('base64')}`, Buffer.alloc(32, 3).toString('base64'), 'd'.repeat(40)]))
})

t.test('TRUST_PROXY forms', async (t) => {
  t.equal(trustProxy('true'), true)
  t.equal(trustProxy('false'), false)
  t.equal(trustProxy('2'), 2)
  t.equal(trustProxy('10.0.0.0/8,127.0.0.1'), '10.0.0.0/8,127.0.0.1')
})
