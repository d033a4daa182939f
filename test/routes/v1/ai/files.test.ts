import t, { type Test } from 'tap'
import { FILE_READS_PER_MINUTE } from '../../../../routes/v1/ai/files.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { CLEANUP_QUEUE, createFiles } from '../../../../plugins/files.js'
import { build, mint, userWithKey } from '../../../helper.js'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')

async function setup (t: Test) {
  const { app, logs, config } = await build(t)
  const owner = await userWithKey(app)
  const other = await userWithKey(app)
  const auth = async (key: string) => ({ authorization: `Bearer ${(await mint(app, key)).token}` })
  const file = await app.files.save({ userId: owner.userId, feature: 'platform', kind: 'result', contentType: 'image/png', body: PNG, maxBytes: 1024 })
  return { app, logs, config, file, owner, ownerAuth: await auth(owner.key), otherAuth: await auth(other.key) }
}

t.test('the owner reads a file with an AI token: type, length, ETag, private caching, 304 on a match', async (t) => {
  const { app, file, ownerAuth, otherAuth } = await setup(t)
  const res = await app.inject({ url: `/v1/ai/files/${file.id}`, headers: ownerAuth })
  t.equal(res.statusCode, 200)
  t.ok(res.rawPayload.equals(PNG))
  t.match(res.headers, { 'content-type': 'image/png', 'content-length': String(PNG.length), etag: `"${file.sha256}"`, 'cache-control': 'private, max-age=0', 'x-content-type-options': 'nosniff' })
  const again = await app.inject({ url: `/v1/ai/files/${file.id}`, headers: { ...ownerAuth, 'if-none-match': `"${file.sha256}"` } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')

  for (const [what, res] of [
    ['another user\'s file', await app.inject({ url: `/v1/ai/files/${file.id}`, headers: otherAuth })],
    ['an unknown id', await app.inject({ url: '/v1/ai/files/00000000-0000-4000-8000-000000000000', headers: ownerAuth })]
  ] as const) {
    t.equal(res.statusCode, 404, what)
    t.equal(res.json().error.code, 'NOT_FOUND')
  }
  t.equal((await app.inject({ url: '/v1/ai/files/not-a-uuid', headers: ownerAuth })).json().error.code, 'VALIDATION_ERROR')
  t.equal((await app.inject({ url: `/v1/ai/files/${file.id}` })).json().error.code, 'UNAUTHENTICATED', 'neither a token nor a link')
})

t.test('a signed link needs no credential; changed, half or expired links are refused', async (t) => {
  const { app, config, file, owner } = await setup(t)
  const link = app.files.signedPath(file.id)
  const res = await app.inject({ url: link.path })
  t.equal(res.statusCode, 200)
  t.ok(res.rawPayload.equals(PNG))
  t.match(res.headers['cache-control'], /^private, max-age=(3600|3599)$/, 'cacheable for the rest of its life, privately')

  const url = new URL(link.path, 'http://x')
  const signature = url.searchParams.get('signature') as string
  const expires = url.searchParams.get('expires') as string
  const refused = async (path: string) => (await app.inject({ url: path })).json().error.code
  t.equal(await refused(`/v1/ai/files/${file.id}?expires=${Number(expires) + 60}&signature=${signature}`), 'UNAUTHENTICATED', 'a longer life')
  t.equal(await refused(`/v1/ai/files/${file.id}?expires=${expires}&signature=${signature.replace(/^./, (c) => c === 'A' ? 'B' : 'A')}`), 'UNAUTHENTICATED', 'a changed signature')
  t.equal(await refused(`/v1/ai/files/00000000-0000-4000-8000-000000000000?expires=${expires}&signature=${signature}`), 'UNAUTHENTICATED', 'another file')
  t.equal(await refused(`/v1/ai/files/${file.id}?signature=${signature}`), 'UNAUTHENTICATED', 'no expiry')
  t.equal(await refused(`/v1/ai/files/${file.id}?expires=${expires}`), 'UNAUTHENTICATED', 'no signature')
  t.equal(await refused(`/v1/ai/files/${file.id}?expires=${expires}&signature=short`), 'VALIDATION_ERROR', 'not a signature at all')

  const yesterday = createFiles({ db: app.store, backend: app.files.backend, urlSecret: config.FILES_URL_SECRET, urlTtlSeconds: 3600, retentionDays: 30, now: () => Date.now() - 86_400_000 })
  const expired = await app.inject({ url: yesterday.signedPath(file.id).path })
  t.equal(expired.statusCode, 401)
  t.equal(expired.json().error.code, 'TOKEN_EXPIRED')

  t.equal(await app.files.delete(file.id, owner.userId), true)
  t.equal((await app.inject({ url: link.path })).statusCode, 404, 'a valid link to a deleted file')
})

t.test('the daily retention job deletes files past FILE_RETENTION_DAYS, bytes and records', async (t) => {
  const { app, file, owner } = await setup(t)
  const fresh = await app.files.save({ userId: owner.userId, feature: 'platform', kind: 'result', contentType: 'image/png', body: PNG, maxBytes: 1024 })
  await app.store.query("UPDATE files SET created_at = now() - interval '31 days' WHERE id = $1", [file.id])
  const id = await app.jobs.send(CLEANUP_QUEUE, {})
  let job
  for (let i = 0; i < 200 && (job = (await app.jobs.list({ id, state: 'completed', limit: 1 }))[0]) === undefined; i++) await sleep(100)
  t.match(job, { queue: 'files.cleanup', state: 'completed' })
  t.equal(await app.files.get(file.id, owner.userId), null, 'the old file is gone')
  t.ok(await app.files.get(fresh.id, owner.userId), 'the fresh one stays')
  t.match(await app.jobs.boss.getSchedules(CLEANUP_QUEUE), [{ cron: '17 3 * * *' }], 'scheduled daily')
})

t.test('reads are limited per client address, with or without a token', async (t) => {
  const { app, file } = await setup(t)
  const link = app.files.signedPath(file.id).path
  const answers: number[] = []
  for (let i = 0; i < FILE_READS_PER_MINUTE; i += 100) {
    answers.push(...await Promise.all(Array.from({ length: 100 }, async () => (await app.inject({ url: link })).statusCode)))
  }
  t.equal(answers.filter((s) => s === 200).length, FILE_READS_PER_MINUTE)
  const limited = await app.inject({ url: link })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error.code, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) > 0)
  t.equal((await app.inject({ url: link, remoteAddress: '10.9.8.7' })).statusCode, 200, 'another address is not held back')
})
