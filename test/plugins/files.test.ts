import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import S3rver from 's3rver'
import t, { type Test } from 'tap'
import { createBackend, createFiles, createLocalBackend, createS3Backend, type FileBackend } from '../../plugins/files.js'
import { createTestStore } from '../helper.js'

const BUCKET = 'portal-files'
const tmp = () => mkdtempSync(join(tmpdir(), 'portal-ai-api-files-'))

/** s3rver's own credentials; the SDK reads them from the standard variables, as in production. */
process.env.AWS_ACCESS_KEY_ID = 'S3RVER'
process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER'

/** A real S3-compatible server on loopback, with one bucket; `stop`/`start` cut it and bring it back on the same port. */
async function s3server (t: Test) {
  const directory = tmp()
  let server: S3rver | null = null
  let port = 0
  const start = async () => {
    server = new S3rver({ port, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: BUCKET, configs: [] as never[] }] })
    port = ((await server.run()) as AddressInfo).port
  }
  const stop = async () => { await server?.close(); server = null }
  await start()
  t.teardown(stop)
  return { endpoint: () => `http://127.0.0.1:${port}`, start, stop }
}

async function filesOn (t: Test, backend: FileBackend, now?: () => number) {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  return { store, files: createFiles({ db: store, backend, urlSecret: 'u'.repeat(40), urlTtlSeconds: 3600, retentionDays: 30, ...(now === undefined ? {} : { now }) }) }
}

const chunks = (...parts: string[]) => Readable.from(parts.map((p) => Buffer.from(p)))

async function roundTrip (t: Test, backend: FileBackend) {
  const { files, store } = await filesOn(t, backend)
  const saved = await files.save({ userId: 'u1', feature: 'platform', kind: 'result', contentType: 'image/png', body: chunks('hello ', 'world'), maxBytes: 100 })
  t.match(saved, { userId: 'u1', size: 11, contentType: 'image/png', sha256: 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9' })
  const opened = await files.open(saved.id, 'u1')
  t.equal((await buffer(opened?.body as Readable)).toString(), 'hello world', 'the bytes come back as they went in')
  t.equal(await files.open(saved.id, 'u2'), null, 'not for another user')
  t.equal(await files.open('00000000-0000-4000-8000-000000000000', 'u1'), null)
  t.match(await files.get(saved.id, 'u1'), { id: saved.id })
  t.equal(await files.get(saved.id, 'u2'), null)

  await t.rejects(files.save({ userId: 'u1', feature: 'platform', kind: 'upload', contentType: 'text/plain', body: chunks('x'.repeat(60), 'y'.repeat(60)), maxBytes: 100 }),
    { code: 'PAYLOAD_TOO_LARGE' })
  t.same((await files.listForUser('u1')).map((f) => f.id), [saved.id], 'a file over the limit leaves no record')

  await backend.delete((await store.query<{ storage_key: string }>('SELECT storage_key FROM files WHERE id = $1', [saved.id])).rows[0]?.storage_key as string)
  t.equal(await files.open(saved.id, 'u1'), null, 'a record whose bytes are gone reads as not found')
  t.equal(await files.delete(saved.id, 'u2'), false, 'another user cannot delete it')
  t.equal(await files.delete(saved.id, 'u1'), true)
  t.equal(await files.open(saved.id, 'u1'), null)
  t.equal(await backend.get(`x/${saved.id}`), null)

  const old = await files.save({ userId: 'u3', feature: 'platform', kind: 'result', contentType: 'image/png', body: Buffer.from('old'), maxBytes: 100 })
  const fresh = await files.save({ userId: 'u3', feature: 'platform', kind: 'result', contentType: 'image/png', body: Buffer.from('new'), maxBytes: 100 })
  await store.query("UPDATE files SET created_at = now() - interval '31 days' WHERE id = $1", [old.id])
  t.equal(await files.cleanup(), 1, 'only the file past retention')
  t.same((await files.listForUser('u3')).map((f) => f.id), [fresh.id])
  t.equal(await files.deleteForUser('u3'), 1)
  t.equal(await files.deleteForUser('u3'), 0)
}

t.test('local folder: stream in and out, owner only, size limit, retention and deletion', async (t) => {
  const dir = tmp()
  await roundTrip(t, createLocalBackend(dir))
  t.same(readdirSync(dir).flatMap((d) => readdirSync(join(dir, d))), [], 'nothing left on disk, not even a partial write')
  await createLocalBackend(join(dir, 'new')).check()
})

t.test('a folder that cannot be used: STORAGE_UNAVAILABLE for writes, reads and readiness, never a crash', async (t) => {
  const notADir = join(tmp(), 'a-file')
  writeFileSync(notADir, 'x')
  const broken = createLocalBackend(notADir)
  const { files, store } = await filesOn(t, broken)
  await t.rejects(files.save({ userId: 'u1', feature: 'platform', kind: 'result', contentType: 'text/plain', body: Buffer.from('x'), maxBytes: 10 }), { code: 'STORAGE_UNAVAILABLE' })
  await store.query("INSERT INTO files (id, user_id, feature, kind, content_type, size, sha256, storage_key) VALUES ('f1', 'u1', 'platform', 'result', 'text/plain', 1, 'x', 'k/f1')")
  await t.rejects(files.open('f1', 'u1'), { code: 'STORAGE_UNAVAILABLE' })
  await t.rejects(broken.check())
})

t.test('S3-compatible store (s3rver on loopback): the same, through @aws-sdk/client-s3', async (t) => {
  const s3 = await s3server(t)
  const backend = await createBackend({ S3_BUCKET: BUCKET, S3_ENDPOINT: s3.endpoint(), S3_REGION: 'us-east-1', S3_FORCE_PATH_STYLE: 'true' as never, FILES_DIR: 'unused' })
  t.equal(backend.kind, 's3')
  await backend.check()
  await roundTrip(t, backend)
  const big = Buffer.alloc(11 * 1024 * 1024, 7)
  const { files } = await filesOn(t, backend)
  const saved = await files.save({ userId: 'u9', feature: 'platform', kind: 'result', contentType: 'application/octet-stream', body: Readable.from([big.subarray(0, 6e6), big.subarray(6e6)]), maxBytes: 12 * 1024 * 1024 })
  t.equal(saved.size, big.length, 'a file over one upload part goes up in parts')
  t.ok((await buffer((await files.open(saved.id, 'u9'))?.body as Readable)).equals(big))
})

t.test('S3 cut: STORAGE_UNAVAILABLE, nothing recorded; back again without a restart', async (t) => {
  const s3 = await s3server(t)
  const backend = await createS3Backend({ bucket: BUCKET, region: 'us-east-1', endpoint: s3.endpoint(), forcePathStyle: true })
  const { files } = await filesOn(t, backend)
  const kept = await files.save({ userId: 'u1', feature: 'platform', kind: 'result', contentType: 'text/plain', body: Buffer.from('kept'), maxBytes: 100 })
  await s3.stop()
  await t.rejects(backend.check())
  await t.rejects(files.save({ userId: 'u1', feature: 'platform', kind: 'result', contentType: 'text/plain', body: Buffer.from('lost?'), maxBytes: 100 }),
    { code: 'STORAGE_UNAVAILABLE', statusCode: 503 })
  await t.rejects(files.open(kept.id, 'u1'), { code: 'STORAGE_UNAVAILABLE' })
  await t.rejects(files.delete(kept.id, 'u1'), { code: 'STORAGE_UNAVAILABLE' })
  t.equal((await files.listForUser('u1')).length, 1, 'the failed save left no record, the kept file is still listed')
  await s3.start()
  await backend.check()
  t.equal((await buffer((await files.open(kept.id, 'u1'))?.body as Readable)).toString(), 'kept')
})

t.test('signed links: the path carries expiry and signature; a changed one or an expired one is refused', async (t) => {
  let clock = Date.parse('2026-12-02T10:00:00Z')
  const { files } = await filesOn(t, createLocalBackend(tmp()), () => clock)
  const link = files.signedPath('f1', 60)
  t.equal(link.expiresAt, '2026-12-02T10:01:00.000Z')
  const url = new URL(link.path, 'http://x')
  t.equal(url.pathname, '/v1/ai/files/f1')
  const expires = Number(url.searchParams.get('expires'))
  const signature = url.searchParams.get('signature') as string
  t.same(files.verifyLink('f1', expires, signature), { secondsLeft: 60 })
  t.throws(() => files.verifyLink('f2', expires, signature), { code: 'UNAUTHENTICATED' }, 'another file')
  t.throws(() => files.verifyLink('f1', expires + 3600, signature), { code: 'UNAUTHENTICATED' }, 'a longer life')
  t.throws(() => files.verifyLink('f1', expires, 'short'), { code: 'UNAUTHENTICATED' })
  clock += 61_000
  t.throws(() => files.verifyLink('f1', expires, signature), { code: 'TOKEN_EXPIRED' })
  t.match(files.signedPath('f1').expiresAt, '2026-12-02T11:01:01.000Z', 'FILES_URL_TTL_SECONDS by default')
})
