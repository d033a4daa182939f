import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { CONFIG_VARIABLES, loadConfig } from '../plugins/config.js'

/**
 * No Docker engine runs where the tests run, so the container files are checked as text: the image keeps its
 * promises (stages, user, health check) and compose.yaml wires the app with variables the service knows,
 * forming a configuration the service accepts.
 */
const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8')

interface ComposeService { image?: string, build?: unknown, command?: string[], environment?: Record<string, string>, depends_on?: Record<string, unknown> }

t.test('Dockerfile: multi-stage on the Node LTS, production dependencies, non-root, health check', async (t) => {
  const dockerfile = read('Dockerfile')
  t.match(dockerfile, /^ARG NODE_IMAGE=node:26-slim$/m, 'the current Node LTS (26)')
  const stages = dockerfile.split(/^FROM /m).slice(1)
  t.ok(stages.length >= 3, 'build, production dependencies and runtime stages')
  const runtime = stages.at(-1) as string
  t.match(stages.find((s) => s.includes('AS deps')), /npm install --omit=dev/, 'the dependencies stage omits dev dependencies')
  t.match(runtime, /COPY --from=deps \/app\/node_modules/, 'the runtime takes the production node_modules')
  t.notMatch(runtime, /npm install/, 'nothing is installed in the runtime stage')
  t.match(runtime, /^USER node$/m)
  t.match(runtime, /HOST=0\.0\.0\.0/)
  t.match(runtime, /^HEALTHCHECK [^\n]*\\\n[^\n]*\/health\/live/m)
  t.match(runtime, /^CMD \["node", "dist\/server\.js"\]$/m)
  const ignored = read('.dockerignore').split('\n')
  for (const entry of ['node_modules', 'data', '.env', '.git']) t.ok(ignored.includes(entry), `.dockerignore keeps ${entry} out of the image`)
})

t.test('compose.yaml: app, PostgreSQL, Redis and rembg, wired by the variables of the service', async (t) => {
  const compose = parse(read('compose.yaml')) as { services: Record<string, ComposeService> }
  const { app, postgres, redis, rembg } = compose.services
  t.same(Object.keys(compose.services).sort(), ['app', 'postgres', 'redis', 'rembg'])
  t.equal(rembg?.image, 'danielgatis/rembg')
  t.equal(rembg?.command?.[0], 's', 'rembg runs its HTTP server')
  t.ok(redis?.image?.startsWith('redis:'))

  const env = app?.environment ?? {}
  t.same(Object.keys(env).filter((name) => !CONFIG_VARIABLES.includes(name)), [], 'every variable is one the service reads')
  // `${NAME:-default}` as compose resolves it with nothing set in the shell.
  const resolved = Object.fromEntries(Object.entries(env).map(([name, value]) => [name, String(value).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')]))
  const config = loadConfig(resolved)
  t.equal(config.HOST, '0.0.0.0')
  const db = new URL(config.DATABASE_URL as string)
  const pg = postgres?.environment ?? {}
  t.same([db.hostname, db.username, db.password, db.pathname], ['postgres', pg.POSTGRES_USER, pg.POSTGRES_PASSWORD, `/${pg.POSTGRES_DB ?? ''}`], 'the app reaches the postgres service with its credentials')
  t.equal(new URL(config.REDIS_URL as string).hostname, 'redis')
  const rembgUrl = new URL(config.REMBG_URL as string)
  t.equal(rembgUrl.hostname, 'rembg')
  t.equal(rembgUrl.port, rembg?.command?.[rembg.command.indexOf('--port') + 1], 'REMBG_URL uses the port rembg listens on')
  t.ok(config.BG_REMOVAL_PROVIDERS.includes('rembg'), 'the self-hosted rembg is a provider')
  t.same(Object.keys(app?.depends_on ?? {}).sort(), ['postgres', 'redis', 'rembg'])
})
