import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat, statfs } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { PassThrough, Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fp from 'fastify-plugin'
import type { Config } from './config.js'
import { AppError } from './errors.js'
import type { Queryable } from './store/index.js'

/** Each S3 request: connecting, then the whole request. A store slower than this is unavailable, not waited on. */
const S3_CONNECT_TIMEOUT_MS = 3_000
const S3_REQUEST_TIMEOUT_MS = 30_000
/** Files deleted per statement by the retention job. */
const CLEANUP_BATCH = 500
/** Daily, at a quiet minute (UTC). */
const CLEANUP_CRON = '17 3 * * *'
export const CLEANUP_QUEUE = 'files.cleanup'

/** Where bytes live: a folder, or an S3-compatible bucket. Keys are ours (`<userHash>/<fileId>`), never a name a user gave. */
export interface FileBackend {
  readonly kind: 'local' | 's3'
  put (key: string, body: Readable, contentType: string): Promise<void>
  /** The bytes, or null when there is no such object. */
  get (key: string): Promise<Readable | null>
  delete (key: string): Promise<void>
  /** Throws when the store cannot be reached (readiness). */
  check (): Promise<void>
}

/** The store could not be reached or failed: the caller tells the client 503 STORAGE_UNAVAILABLE. */
export const storageUnavailable = () =>
  new AppError('STORAGE_UNAVAILABLE', 'File storage is unavailable right now: try again in a moment.', undefined, { 'retry-after': '5' })

export function createLocalBackend (dir: string): FileBackend {
  const root = resolve(dir)
  const path = (key: string) => join(root, ...key.split('/'))
  return {
    kind: 'local',
    async put (key, body) {
      const target = path(key)
      await mkdir(join(target, '..'), { recursive: true })
      // Written aside and renamed: a reader never sees half a file, a failed write leaves nothing behind.
      const partial = `${target}.${randomUUID()}.partial`
      try {
        await pipeline(body, createWriteStream(partial, { mode: 0o600 }))
        await rename(partial, target)
      } catch (err) {
        await rm(partial, { force: true })
        throw err
      }
    },
    async get (key) {
      const target = path(key)
      try {
        await stat(target)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
        throw err
      }
      return createReadStream(target)
    },
    async delete (key) { await rm(path(key), { force: true }) },
    async check () {
      await mkdir(root, { recursive: true })
      await statfs(root)
    }
  }
}

export interface S3Options { bucket: string, region: string, endpoint?: string, forcePathStyle: boolean }

/** The S3 SDK is loaded only where a bucket is configured: it costs an instance about 40 MB of memory. */
export async function createS3Backend (opts: S3Options): Promise<FileBackend> {
  const { DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, S3Client } = await import('@aws-sdk/client-s3')
  const { Upload } = await import('@aws-sdk/lib-storage')
  const client = new S3Client({
    region: opts.region,
    endpoint: opts.endpoint,
    forcePathStyle: opts.forcePathStyle,
    maxAttempts: 2,
    // Checksums only where S3 requires them: many S3-compatible stores reject the newer default trailers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: S3_CONNECT_TIMEOUT_MS, requestTimeout: S3_REQUEST_TIMEOUT_MS }
  })
  const Bucket = opts.bucket
  return {
    kind: 's3',
    async put (key, body, contentType) {
      // A multipart upload in parts of 5 MB: the stream is never held whole in memory.
      await new Upload({ client, params: { Bucket, Key: key, Body: body, ContentType: contentType }, queueSize: 2 }).done()
    },
    async get (key) {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket, Key: key }))
        return out.Body as Readable
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchKey') return null
        throw err
      }
    },
    async delete (key) { await client.send(new DeleteObjectCommand({ Bucket, Key: key })) },
    async check () { await client.send(new HeadBucketCommand({ Bucket })) }
  }
}

export async function createBackend (config: Pick<Config, 'S3_BUCKET' | 'S3_ENDPOINT' | 'S3_REGION' | 'S3_FORCE_PATH_STYLE' | 'FILES_DIR'>): Promise<FileBackend> {
  if (config.S3_BUCKET === undefined) return createLocalBackend(config.FILES_DIR)
  return await createS3Backend({
    bucket: config.S3_BUCKET,
    region: config.S3_REGION,
    endpoint: config.S3_ENDPOINT,
    forcePathStyle: config.S3_FORCE_PATH_STYLE === 'true'
  })
}

/** A stored file's record: who owns it, what it is; the bytes are in the backend. */
export interface StoredFile {
  id: string
  userId: string
  /** The feature that keeps it (`virtual-staging`, …) or `platform`. */
  feature: string
  /** `result`: kept until retention; `upload`: an input, deleted when its job ends. */
  kind: 'result' | 'upload'
  contentType: string
  size: number
  sha256: string
  createdAt: string
}

interface FileRow { id: string, user_id: string, feature: string, kind: 'result' | 'upload', content_type: string, size: string, sha256: string, storage_key: string, created_at: Date }

const toFile = (row: FileRow): StoredFile => ({
  id: row.id,
  userId: row.user_id,
  feature: row.feature,
  kind: row.kind,
  contentType: row.content_type,
  size: Number(row.size),
  sha256: row.sha256,
  createdAt: row.created_at.toISOString()
})

/** Counts bytes and hashes them on their way through; fails the stream past `maxBytes`. */
function meter (maxBytes: number) {
  const hash = createHash('sha256')
  let size = 0
  const transform = new Transform({
    transform (chunk: Buffer, _encoding, done) {
      size += chunk.length
      if (size > maxBytes) {
        done(new AppError('PAYLOAD_TOO_LARGE', `The file is larger than ${maxBytes} bytes.`))
        return
      }
      hash.update(chunk)
      done(null, chunk)
    }
  })
  return { transform, result: () => ({ size, sha256: hash.digest('hex') }) }
}

export interface FilesOptions {
  db: Queryable
  backend: FileBackend
  urlSecret: string
  urlTtlSeconds: number
  retentionDays: number
  /** Injected for link-expiry tests. */
  now?: () => number
}

/** Stored files (SPEC §11): bytes in a folder or a bucket, records in the database, links signed with HMAC. */
export function createFiles (opts: FilesOptions) {
  const { db, backend } = opts
  const now = opts.now ?? Date.now
  const signature = (fileId: string, expires: number) =>
    createHmac('sha256', opts.urlSecret).update(`${fileId}\n${expires}`).digest('base64url')

  /** Any failure of the store itself (not a missing object) is STORAGE_UNAVAILABLE. */
  async function guarded<T> (fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw Object.assign(storageUnavailable(), { cause: err })
    }
  }

  async function record (fileId: string): Promise<FileRow | undefined> {
    const { rows } = await db.query<FileRow>('SELECT * FROM files WHERE id = $1', [fileId])
    return rows[0]
  }

  async function remove (rows: FileRow[]): Promise<number> {
    for (const row of rows) await guarded(async () => backend.delete(row.storage_key))
    if (rows.length === 0) return 0
    const { rowCount } = await db.query('DELETE FROM files WHERE id = ANY($1::text[])', [rows.map((r) => r.id)])
    return rowCount
  }

  return {
    backend,

    /**
     * Streams `body` into the store and records it. The record is written after the bytes, so a file that is
     * listed can always be read; a failed write leaves neither.
     */
    async save (input: { userId: string, feature: string, kind: StoredFile['kind'], contentType: string, body: Readable | Buffer, maxBytes: number }): Promise<StoredFile> {
      const id = randomUUID()
      const key = `${createHash('sha256').update(input.userId).digest('hex').slice(0, 16)}/${id}`
      const counted = meter(input.maxBytes)
      const source = Buffer.isBuffer(input.body) ? Readable.from([input.body]) : input.body
      const through = new PassThrough()
      const piping = pipeline(source, counted.transform, through)
      // A store that fails stops the upload too, instead of leaving it waiting on a reader that is gone.
      // (Destroyed without an error: the pipeline may have finished already, and nobody would hear it.)
      const put = backend.put(key, through, input.contentType).catch((err: unknown) => {
        through.destroy()
        throw err
      })
      const [piped, stored] = await Promise.allSettled([piping, put])
      if (piped.status === 'rejected' || stored.status === 'rejected') {
        await backend.delete(key).catch(() => {})
        // The size limit stopping the stream is the cause; the store failing after it is not.
        const reasons = [stored, piped].filter((r) => r.status === 'rejected').map((r) => r.reason as Error)
        const own = reasons.find((r) => r instanceof AppError)
        if (own !== undefined) throw own
        throw Object.assign(storageUnavailable(), { cause: reasons[0] })
      }
      const { size, sha256 } = counted.result()
      const { rows } = await db.query<FileRow>(
        `INSERT INTO files (id, user_id, feature, kind, content_type, size, sha256, storage_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *`,
        [id, input.userId, input.feature, input.kind, input.contentType, size, sha256, key])
      return toFile(rows[0] as FileRow)
    },

    /** The file and its bytes for its owner; null for an unknown id or another user's file. */
    async open (fileId: string, userId: string | null): Promise<{ file: StoredFile, body: Readable } | null> {
      const row = await record(fileId)
      if (row === undefined || (userId !== null && row.user_id !== userId)) return null
      const body = await guarded(async () => backend.get(row.storage_key))
      return body === null ? null : { file: toFile(row), body }
    },

    async get (fileId: string, userId: string): Promise<StoredFile | null> {
      const row = await record(fileId)
      return row === undefined || row.user_id !== userId ? null : toFile(row)
    },

    /** Deletes a file's bytes and record now; false when the user has no such file. */
    async delete (fileId: string, userId: string): Promise<boolean> {
      const row = await record(fileId)
      if (row === undefined || row.user_id !== userId) return false
      return await remove([row]) === 1
    },

    async listForUser (userId: string): Promise<StoredFile[]> {
      const { rows } = await db.query<FileRow>('SELECT * FROM files WHERE user_id = $1 ORDER BY created_at, id', [userId])
      return rows.map(toFile)
    },

    async deleteForUser (userId: string): Promise<number> {
      const { rows } = await db.query<FileRow>('SELECT * FROM files WHERE user_id = $1', [userId])
      return remove(rows)
    },

    /** Deletes files past retention (results) in batches; returns how many. */
    async cleanup (): Promise<number> {
      let total = 0
      for (;;) {
        const { rows } = await db.query<FileRow>(
          `SELECT * FROM files WHERE created_at < now() - make_interval(days => $1) ORDER BY created_at LIMIT ${CLEANUP_BATCH}`,
          [opts.retentionDays])
        total += await remove(rows)
        if (rows.length < CLEANUP_BATCH) return total
      }
    },

    /** A link an `<img>` can load without a token: `/v1/ai/files/{id}?expires=…&signature=…`, valid `ttlSeconds`. */
    signedPath (fileId: string, ttlSeconds = opts.urlTtlSeconds): { path: string, expiresAt: string } {
      const expires = Math.floor(now() / 1000) + ttlSeconds
      return {
        path: `/v1/ai/files/${fileId}?expires=${expires}&signature=${signature(fileId, expires)}`,
        expiresAt: new Date(expires * 1000).toISOString()
      }
    },

    /** Checks a link's signature, then its expiry: a tampered link is UNAUTHENTICATED, an expired one TOKEN_EXPIRED. */
    verifyLink (fileId: string, expires: number, given: string): { secondsLeft: number } {
      const expected = Buffer.from(signature(fileId, expires))
      const actual = Buffer.from(given)
      if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
        throw new AppError('UNAUTHENTICATED', 'This file link is not valid: ask for a new one.')
      }
      const secondsLeft = expires - Math.floor(now() / 1000)
      if (secondsLeft <= 0) throw new AppError('TOKEN_EXPIRED', 'This file link has expired: ask for a new one.')
      return { secondsLeft }
    }
  }
}

export type Files = ReturnType<typeof createFiles>

declare module 'fastify' {
  interface FastifyInstance {
    files: Files
  }
}

/** Files: the store the configuration names, signed links, the daily retention job, a user's files in their data. */
export default fp(async function files (app) {
  const files = createFiles({
    db: app.store,
    backend: await createBackend(app.config),
    urlSecret: app.config.FILES_URL_SECRET,
    urlTtlSeconds: app.config.FILES_URL_TTL_SECONDS,
    retentionDays: app.config.FILE_RETENTION_DAYS
  })
  app.decorate('files', files)
  app.readiness.add('files', async () => { await files.backend.check() })
  app.jobs.define({
    name: CLEANUP_QUEUE,
    cron: CLEANUP_CRON,
    retryLimit: 3,
    retryDelaySeconds: 600,
    handler: async ({ log }) => {
      const deleted = await files.cleanup()
      log.info({ deleted }, 'stored files past retention deleted')
      return { deleted }
    }
  })
  app.userData.register({
    name: 'files',
    export: async (userId) => (await files.listForUser(userId)).map(({ userId: _owner, ...file }) => file),
    delete: async (userId) => files.deleteForUser(userId)
  })
}, { name: 'files', fastify: '5.x', dependencies: ['config', 'store', 'jobs', 'health', 'user-data'] })
