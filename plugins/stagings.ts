import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { createOpenAIStaging, KEEP_ARCHITECTURE, STRICT_RETRY, stagingEstimate, type CallUsage, type QualityMode, type StagedImage, type StagingProvider } from '../providers/staging.js'
import { createSandboxStaging } from '../providers/sandbox-staging.js'
import type { Mode } from '../schemas/principal.js'
import { cursorPosition, encodeCursor } from '../schemas/pagination.js'
import type { RoomTypeValue, StagingBatchValue, StagingErrorCode, StagingStatusValue, StagingValue } from '../schemas/staging.js'
import { newId } from './chats.js'
import type { ContentCrypto } from './content-crypto.js'
import { AppError } from './errors.js'
import type { Files } from './files.js'
import { IMAGE_MIME, type ImageType, type PreparedImage } from './images.js'
import type { Reservation, Settlement } from './metering.js'
import type { Queryable } from './store/index.js'

export const STAGING_QUEUE = 'staging.run'
export const STAGINGS = 'stagings'
export const BATCHES = 'staging_batches'
/** A client's Idempotency-Key is honoured this long (SPEC §12). */
export const IDEMPOTENCY_HOURS = 24
/** Reservations of a staging outlive any queue wait and the job's attempts; the job settles or releases them. */
export const STAGING_HOLD_MS = 24 * 3_600_000
/** How often the progress of a running image edit is written. */
const PROGRESS_TICK_MS = 2_000
const TICK = Symbol('progress tick')
/** Typical job times, for a batch's estimated completion (seconds). */
const TYPICAL_JOB_SECONDS = { live: { standard: 45, premium: 90 }, test: { standard: 2, premium: 3 } } as const

/** The message of each job error code: fixed text, never a provider's (it might quote content). */
export const STAGING_ERROR_MESSAGES: Record<StagingErrorCode, string> = {
  NOT_INTERIOR_IMAGE: 'The photo does not show a room: stage a photo of an interior (or of an outdoor living space).',
  ARCHITECTURAL_INTEGRITY_FAILED: 'The staged image changed the room itself (walls, windows or doors) twice, so it was not kept: try another photo or style, or the standard mode.',
  CONTENT_REJECTED: 'The image model\'s safety system refused this photo.',
  PROVIDER_ERROR: 'The image model failed: submit the photo again.',
  PROVIDER_TIMEOUT: 'The staging did not finish within the time limit (STAGING_TIMEOUT_MS): submit the photo again.',
  PROVIDER_UNAVAILABLE: 'The image model is not available right now: submit the photo again later.',
  PROVIDER_NOT_CONFIGURED: 'Virtual staging is not set up on this server (no OPENAI_API_KEY): use a test-mode key, or ask the operator.',
  JOB_INTERRUPTED: 'The server stopped while the image model was working; the staging is not run twice (it would be charged twice) and you were not charged: submit the photo again.',
  STORAGE_UNAVAILABLE: 'File storage failed while the staging ran: submit the photo again.',
  STYLE_UNAVAILABLE: 'The style was taken out of the catalog before the staging ran: submit the photo again with another style.'
}
const JOB_CODES = new Set<string>(Object.keys(STAGING_ERROR_MESSAGES))

/** A staging that cannot go on: its code becomes the job's error. */
export class StagingFailure extends Error {
  constructor (readonly code: StagingErrorCode) {
    super(STAGING_ERROR_MESSAGES[code])
    this.name = 'StagingFailure'
  }
}

/** The staging was deleted while its job ran, before the image model was called: the job ends, keeping nothing. */
class StagingDeleted extends Error {}

interface StagingRow {
  id: string
  user_id: string
  mode: Mode
  batch_id: string | null
  status: StagingStatusValue
  progress: number
  style: string
  room_type: RoomTypeValue | null
  room_type_detected: boolean
  quality_mode: QualityMode
  key_id: string | null
  property_name_sealed: Uint8Array | null
  upload_file_id: string | null
  upload_type: ImageType
  upload_width: number
  upload_height: number
  result_file_id: string | null
  result_width: number | null
  result_height: number | null
  quality_score: number | null
  architectural_integrity: boolean | null
  error_code: StagingErrorCode | null
  fingerprint: string | null
  request_id: string | null
  reservation: Reservation & { periodStart: string, resetsAt: string }
  provider_started_at: Date | null
  created_at: Date
  started_at: Date | null
  completed_at: Date | null
}

interface BatchRow { id: string, user_id: string, mode: Mode, total: number, style: string, fingerprint: string | null, estimated_completion_at: Date, created_at: Date, completed_at: Date | null }

const notFound = () => new AppError('NOT_FOUND', 'There is no such staging.')
const batchNotFound = () => new AppError('NOT_FOUND', 'There is no such batch.')
const iso = (d: Date | null) => d === null ? null : d.toISOString()

/** What a submit asks for, checked by the route. */
export interface StagingRequest {
  style: string
  roomType: RoomTypeValue | null
  qualityMode: QualityMode
  propertyName: string | null
}

/** One photo of a submit, prepared (EXIF stripped) and stored as an upload. */
export interface StoredUpload { fileId: string, type: ImageType, width: number, height: number }

export interface StagingsOptions {
  app: FastifyInstance
  crypto: ContentCrypto
  files: Files
  live: StagingProvider | null
  sandbox: StagingProvider
  timeoutMs: number
  concurrency: number
}

/** Stagings (SPEC §12): records, their job, and its provider calls, metered from the answers' usage. */
export function createStagings (opts: StagingsOptions) {
  const { app, crypto, files } = opts
  const db = app.store
  const bind = (row: { id: string, user_id: string }) => ({ table: STAGINGS, column: 'property_name_sealed', rowId: row.id, userId: row.user_id })

  const revive = (r: StagingRow['reservation']): Reservation => ({ ...r, periodStart: new Date(r.periodStart), resetsAt: new Date(r.resetsAt) })

  function toStaging (row: StagingRow): StagingValue {
    const link = row.result_file_id === null ? null : files.signedPath(row.result_file_id)
    return {
      id: row.id,
      status: row.status,
      progress: Math.round(row.progress * 1000) / 1000,
      style: row.style,
      roomType: row.room_type,
      roomTypeDetected: row.room_type_detected,
      qualityMode: row.quality_mode,
      propertyName: row.property_name_sealed === null ? null : crypto.openText({ keyId: row.key_id as string, data: Buffer.from(row.property_name_sealed) }, bind(row)),
      batchId: row.batch_id,
      createdAt: row.created_at.toISOString(),
      startedAt: iso(row.started_at),
      completedAt: iso(row.completed_at),
      processingTimeMs: row.started_at === null || row.completed_at === null ? null : row.completed_at.getTime() - row.started_at.getTime(),
      result: link === null || row.status !== 'completed'
        ? null
        : {
            stagedImageUrl: link.path,
            expiresAt: link.expiresAt,
            fileId: row.result_file_id as string,
            width: row.result_width as number,
            height: row.result_height as number,
            qualityScore: row.quality_score === null ? null : Math.round(row.quality_score * 1000) / 1000,
            architecturalIntegrity: row.architectural_integrity
          },
      error: row.error_code === null ? null : { code: row.error_code, message: STAGING_ERROR_MESSAGES[row.error_code] }
    }
  }

  async function row (userId: string, mode: Mode, id: string): Promise<StagingRow> {
    const { rows } = await db.query<StagingRow>(`SELECT * FROM ${STAGINGS} WHERE id = $1 AND user_id = $2 AND mode = $3`, [id, userId, mode])
    if (rows[0] === undefined) throw notFound()
    return rows[0]
  }

  /** Inserts one staging and queues its job, inside the caller's transaction. */
  async function insert (tx: Queryable, input: { userId: string, mode: Mode, request: StagingRequest, upload: StoredUpload, reservation: Reservation, requestId: string, batchId: string | null, idempotencyKey: string | null, fingerprint: string | null }): Promise<StagingRow> {
    const id = newId('stg')
    const sealed = input.request.propertyName === null ? null : crypto.seal(input.request.propertyName, bind({ id, user_id: input.userId }))
    const { rows } = await tx.query<StagingRow>(`INSERT INTO ${STAGINGS} (id, user_id, mode, batch_id, status, style, room_type, quality_mode, key_id,
        property_name_sealed, upload_file_id, upload_type, upload_width, upload_height, idempotency_key, fingerprint, request_id, reservation)
      VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING *`,
    [id, input.userId, input.mode, input.batchId, input.request.style, input.request.roomType, input.request.qualityMode, sealed?.keyId ?? null,
      sealed?.data ?? null, input.upload.fileId, input.upload.type, input.upload.width, input.upload.height, input.idempotencyKey, input.fingerprint,
      input.requestId, JSON.stringify(input.reservation)])
    await app.jobs.send(STAGING_QUEUE, { stagingId: id }, { tx })
    return rows[0] as StagingRow
  }

  const estimatedCompletion = (mode: Mode, quality: QualityMode, images: number) =>
    new Date(Date.now() + Math.ceil(images / opts.concurrency) * TYPICAL_JOB_SECONDS[mode][quality] * 1000)

  async function batchOf (userId: string, mode: Mode, id: string): Promise<StagingBatchValue> {
    const { rows } = await db.query<BatchRow>(`SELECT * FROM ${BATCHES} WHERE id = $1 AND user_id = $2 AND mode = $3`, [id, userId, mode])
    const batch = rows[0]
    if (batch === undefined) throw batchNotFound()
    const { rows: members } = await db.query<{ id: string, status: StagingStatusValue }>(
      `SELECT id, status FROM ${STAGINGS} WHERE batch_id = $1 ORDER BY created_at, id`, [id])
    const counts = { queued: 0, processing: 0, completed: 0, failed: 0 }
    for (const m of members) counts[m.status]++
    const open = counts.queued + counts.processing
    return {
      id: batch.id,
      totalImages: batch.total,
      status: open === 0 ? 'completed' : counts.queued === members.length ? 'queued' : 'processing',
      counts,
      style: batch.style,
      createdAt: batch.created_at.toISOString(),
      completedAt: iso(batch.completed_at),
      estimatedCompletionAt: batch.estimated_completion_at.toISOString(),
      stagings: members
    }
  }

  /** The id of the earlier submit with this Idempotency-Key (within 24 h), or null; CONFLICT when it was sent with other content. */
  async function replay (kind: 'staging' | 'batch', userId: string, mode: Mode, key: string, fingerprint: string): Promise<string | null> {
    const table = kind === 'staging' ? STAGINGS : BATCHES
    // A key older than 24 h is free again.
    await db.query(`UPDATE ${table} SET idempotency_key = NULL WHERE user_id = $1 AND mode = $2 AND idempotency_key = $3
      AND created_at <= now() - make_interval(hours => ${IDEMPOTENCY_HOURS})`, [userId, mode, key])
    const { rows } = await db.query<{ id: string, fingerprint: string }>(`SELECT id, fingerprint FROM ${table} WHERE user_id = $1 AND mode = $2 AND idempotency_key = $3`, [userId, mode, key])
    const earlier = rows[0]
    if (earlier === undefined) return null
    if (earlier.fingerprint !== fingerprint) {
      throw new AppError('CONFLICT', 'This Idempotency-Key was used within the last 24 hours for a different request: use a new key for a new photo or new options.')
    }
    return earlier.id
  }

  // ---- The job -------------------------------------------------------------------------------------------------

  async function update (id: string, set: string, params: unknown[] = []): Promise<boolean> {
    const { rowCount } = await db.query(`UPDATE ${STAGINGS} SET ${set} WHERE id = $1`, [id, ...params])
    return rowCount === 1
  }
  const advance = (id: string, progress: number) =>
    update(id, 'progress = GREATEST(progress, $2)', [progress])

  /** Reads the stored upload back as the prepared image it was. */
  async function loadUpload (r: StagingRow): Promise<PreparedImage> {
    // No upload (it went with an earlier attempt) reads as none.
    const opened = await files.open(r.upload_file_id ?? '', r.user_id)
    if (opened === null) throw new StagingFailure('STORAGE_UNAVAILABLE')
    const chunks: Buffer[] = []
    for await (const chunk of opened.body as Readable) chunks.push(chunk as Buffer)
    return { blob: new Blob([Buffer.concat(chunks)], { type: IMAGE_MIME[r.upload_type] }), type: r.upload_type, width: r.upload_width, height: r.upload_height }
  }

  /** The upload goes when its job ends (a failure here fails the attempt; the next one deletes it). */
  async function dropUpload (r: StagingRow) {
    if (r.upload_file_id === null) return
    await files.delete(r.upload_file_id, r.user_id)
    await update(r.id, 'upload_file_id = NULL')
  }

  /** The batch's last staging ended: one batch.completed, whichever instance gets there first. */
  async function closeBatch (tx: Queryable, r: StagingRow) {
    if (r.batch_id === null) return
    const { rows } = await tx.query<{ id: string }>(`UPDATE ${BATCHES} b SET completed_at = now()
      WHERE b.id = $1 AND b.completed_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM ${STAGINGS} s WHERE s.batch_id = b.id AND s.status IN ('queued', 'processing'))
      RETURNING b.id`, [r.batch_id])
    for (const { id } of rows) {
      const { rows: counts } = await tx.query<{ completed: number, failed: number }>(`SELECT count(*) FILTER (WHERE status = 'completed')::int AS completed,
        count(*) FILTER (WHERE status = 'failed')::int AS failed FROM ${STAGINGS} WHERE batch_id = $1`, [id])
      await app.webhooks.emit(r.user_id, 'batch.completed', { batchId: id, ...counts[0] }, tx)
    }
  }

  /** Gives the reservation back and records the failure (release first: a failure here is retried, and releasing twice is harmless). */
  async function fail (r: StagingRow, code: StagingErrorCode, log: FastifyBaseLogger) {
    await app.metering.release(revive(r.reservation))
    await db.transaction(async (tx) => {
      const { rowCount } = await tx.query(`UPDATE ${STAGINGS} SET status = 'failed', error_code = $2, completed_at = now(), started_at = COALESCE(started_at, now())
        WHERE id = $1 AND status IN ('queued', 'processing')`, [r.id, code])
      if (rowCount === 0) return
      await app.webhooks.emit(r.user_id, 'staging.failed', { stagingId: r.id, status: 'failed', errorCode: code, batchId: r.batch_id }, tx)
      await closeBatch(tx, r)
    })
    await dropUpload(r)
    log.info({ stagingId: r.id, code }, 'staging failed')
  }

  /** Who stages for each mode, as the ledger records it. */
  const LEDGER = { test: { provider: 'sandbox', model: null }, live: { provider: 'openai', model: app.config.STAGING_MODEL } } as const

  /** The ledger entry of a completed staging: one staging, the tokens and the cost of every provider call it made. */
  const settlement = (r: StagingRow, total: { cost: number, unitsIn: number, unitsOut: number, estimated: boolean }): Settlement => ({
    ...LEDGER[r.mode],
    units: 1,
    unitsIn: total.unitsIn,
    unitsOut: total.unitsOut,
    costMicroUsd: total.cost,
    estimated: total.estimated,
    requestId: r.request_id
  })

  async function run (stagingId: string, jobSignal: AbortSignal, log: FastifyBaseLogger): Promise<unknown> {
    const { rows } = await db.query<StagingRow>(`SELECT * FROM ${STAGINGS} WHERE id = $1`, [stagingId])
    const r = rows[0]
    if (r === undefined) return { skipped: 'deleted' }
    const provider = r.mode === 'test' ? opts.sandbox : opts.live
    if (r.status === 'completed' || r.status === 'failed') {
      // An earlier attempt ended the staging but could not delete its upload.
      await dropUpload(r)
      return { status: r.status }
    }
    if (r.provider_started_at !== null) {
      // A worker died (or the instance stopped) after the image model was called: never run it twice.
      await fail(r, 'JOB_INTERRUPTED', log)
      return { status: 'failed' }
    }
    if (provider === null) {
      await fail(r, 'PROVIDER_NOT_CONFIGURED', log)
      return { status: 'failed' }
    }
    if (!await update(r.id, 'status = \'processing\', started_at = COALESCE(started_at, now()), progress = GREATEST(progress, 0.05)')) return { skipped: 'deleted' }
    const deadline = AbortSignal.timeout(opts.timeoutMs)
    const signal = AbortSignal.any([jobSignal, deadline])
    const user = app.hash.user(r.user_id)
    const spent: CallUsage[] = []
    const resultFile: string[] = []
    try {
      const image = await loadUpload(r)
      let roomType = r.room_type
      if (roomType === null) {
        const check = await provider.detectRoom(image, user, signal)
        spent.push(check.usage)
        if (!check.isRoom) throw new StagingFailure('NOT_INTERIOR_IMAGE')
        roomType = check.roomType
        await update(r.id, 'room_type = $2, room_type_detected = true', [roomType])
      }
      await advance(r.id, 0.2)
      // A style made inactive after the submit still stages; one taken out of the catalog cannot.
      const style = app.stagingStyles.entry(r.style)
      if (style === undefined) throw new StagingFailure('STYLE_UNAVAILABLE')
      const prompt = `${app.stagingStyles.prompt(r.style, roomType)} ${KEEP_ARCHITECTURE}`
      const edit = async (strict: boolean, from: number, to: number): Promise<StagedImage> => {
        // From here on the provider may charge: a later attempt of this job must not call it again.
        // Deleted meanwhile: the model is not called (the deletion gave the reservation back).
        if (!await update(r.id, 'provider_started_at = COALESCE(provider_started_at, now())')) throw new StagingDeleted()
        const started = Date.now()
        const staging = provider.stage({ image, prompt: strict ? `${prompt} ${STRICT_RETRY}` : prompt, palette: style.palette, quality: r.quality_mode, user, signal })
        // While the model works, the progress creeps towards `to` (an edit takes tens of seconds).
        let staged: StagedImage | typeof TICK
        while ((staged = await Promise.race([staging, sleep(PROGRESS_TICK_MS, TICK)])) === TICK) {
          await advance(r.id, from + (to - from) * (1 - Math.exp(-(Date.now() - started) / 30_000)))
        }
        spent.push(staged.usage)
        app.metrics.providerCall({ feature: 'virtual-staging', mode: r.mode, vendor: provider.name, model: provider.model, outcome: 'ok', seconds: (Date.now() - started) / 1000 })
        await advance(r.id, to)
        return staged
      }
      let staged = await edit(false, 0.25, 0.7)
      let integrity: { architecturalIntegrity: boolean, qualityScore: number } | null = null
      if (r.quality_mode === 'premium') {
        let check = await provider.checkIntegrity(image, staged.image, user, signal)
        spent.push(check.usage)
        await advance(r.id, 0.75)
        if (!check.architecturalIntegrity) {
          log.info({ stagingId: r.id }, 'staging changed the architecture: one stricter retry')
          staged = await edit(true, 0.75, 0.9)
          check = await provider.checkIntegrity(image, staged.image, user, signal)
          spent.push(check.usage)
          if (!check.architecturalIntegrity) throw new StagingFailure('ARCHITECTURAL_INTEGRITY_FAILED')
        }
        integrity = check
      }
      await advance(r.id, 0.95)
      const saved = await files.save({ userId: r.user_id, feature: 'virtual-staging', kind: 'result', contentType: staged.contentType, body: staged.image, maxBytes: 64 * 1024 * 1024 })
      resultFile.push(saved.id)
      const total = {
        cost: spent.reduce((sum, u) => sum + u.costMicroUsd, 0),
        unitsIn: spent.reduce((sum, u) => sum + u.inputTokens, 0),
        unitsOut: spent.reduce((sum, u) => sum + u.outputTokens, 0),
        estimated: spent.some((u) => u.estimated)
      }
      // The outcome and its charge commit together: a staging that reads completed has its ledger row.
      const completed = await db.transaction(async (tx) => {
        // The charge first (the user's account row, then the quota row: the order every credit path locks in).
        await app.metering.settle(revive(r.reservation), settlement(r, total), tx)
        const { rowCount } = await tx.query(`UPDATE ${STAGINGS} SET status = 'completed', progress = 1, completed_at = now(), result_file_id = $2,
            result_width = $3, result_height = $4, quality_score = $5, architectural_integrity = $6
          WHERE id = $1 AND status = 'processing'`,
        [r.id, saved.id, staged.width, staged.height, integrity?.qualityScore ?? null, integrity?.architecturalIntegrity ?? null])
        if (rowCount === 0) return false
        await app.webhooks.emit(r.user_id, 'staging.completed', { stagingId: r.id, status: 'completed', batchId: r.batch_id }, tx)
        await closeBatch(tx, r)
        return true
      })
      // Deleted while it ran: the result goes too, the provider's charge stays on the ledger.
      if (!completed) await files.delete(saved.id, r.user_id)
      await dropUpload(r)
      log.info({ stagingId: r.id, costMicroUsd: total.cost, calls: spent.length, roomTypeDetected: r.room_type === null }, 'staging completed')
      return { status: completed ? 'completed' : 'deleted' }
    } catch (err) {
      // A result saved before the failure goes too.
      for (const fileId of resultFile) await files.delete(fileId, r.user_id)
      if (err instanceof StagingDeleted) return { status: 'deleted' }
      // The instance is stopping or the job expired (the next attempt decides, and never calls the provider twice),
      // or a fault of ours (the database, a bug: the job's retry takes over).
      if (jobSignal.aborted || !(err instanceof StagingFailure || err instanceof AppError)) throw err
      const cost = spent.reduce((sum, u) => sum + u.costMicroUsd, 0)
      log.info({ stagingId: r.id, costMicroUsd: cost }, 'failed staging: its provider cost is not charged to the user')
      await fail(r, JOB_CODES.has(err.code) ? err.code as StagingErrorCode : 'PROVIDER_ERROR', log)
      return { status: 'failed' }
    }
  }

  return {
    toStaging,
    estimatedCompletion,
    insert,
    replay,
    run,
    /** Providers for a principal's mode; null when live staging is not configured. */
    provider: (mode: Mode) => mode === 'test' ? opts.sandbox : opts.live,
    estimate: (quality: QualityMode, mode: Mode) => mode === 'test'
      ? 0
      : stagingEstimate(app.entitlements.plans.prices?.[`openai/${app.config.STAGING_MODEL}`], app.entitlements.plans.prices?.[`openai/${app.config.STAGING_VISION_MODEL}`], quality),

    async get (userId: string, mode: Mode, id: string) { return toStaging(await row(userId, mode, id)) },

    async list (userId: string, mode: Mode, query: { cursor?: string, limit: number, status?: StagingStatusValue, batchId?: string }) {
      const params: unknown[] = [userId, mode, query.limit + 1]
      let where = 'user_id = $1 AND mode = $2'
      if (query.status !== undefined) { params.push(query.status); where += ` AND status = $${params.length}` }
      if (query.batchId !== undefined) { params.push(query.batchId); where += ` AND batch_id = $${params.length}` }
      if (query.cursor !== undefined) {
        const at = cursorPosition(query.cursor)
        params.push(at.createdAt, at.id)
        where += ` AND (created_at, id) < ($${params.length - 1}, $${params.length})`
      }
      const { rows } = await db.query<StagingRow>(`SELECT * FROM ${STAGINGS} WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $3`, params)
      const page = rows.slice(0, query.limit)
      const last = page.at(-1)
      return { data: page.map(toStaging), nextCursor: rows.length > query.limit && last !== undefined ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null }
    },

    /**
     * Deletes the staging and its files now; a job still running finds it gone and keeps nothing. One whose image model
     * was not called yet gives its reservation back (its job will not call it); one already at the model is charged
     * when the model answers, as the provider charges for it.
     */
    async remove (userId: string, mode: Mode, id: string) {
      const r = await row(userId, mode, id)
      for (const fileId of [r.upload_file_id, r.result_file_id]) if (fileId !== null) await files.delete(fileId, userId)
      const gone = await db.transaction(async (tx) => {
        const deleted = (await tx.query<StagingRow>(`DELETE FROM ${STAGINGS} WHERE id = $1 RETURNING *`, [id])).rows[0]
        // A batch whose last open staging this was is complete now.
        if (deleted !== undefined) await closeBatch(tx, deleted)
        return deleted
      })
      if (gone !== undefined && (gone.status === 'queued' || gone.status === 'processing') && gone.provider_started_at === null) {
        await app.metering.release(revive(gone.reservation))
      }
    },

    /** A batch and its stagings, inserted with their jobs in one transaction. */
    async insertBatch (input: { userId: string, mode: Mode, request: StagingRequest, uploads: Array<{ upload: StoredUpload, reservation: Reservation }>, requestId: string, idempotencyKey: string | null, fingerprint: string | null }) {
      const id = newId('bat')
      await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${BATCHES} (id, user_id, mode, total, style, idempotency_key, fingerprint, estimated_completion_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [id, input.userId, input.mode, input.uploads.length, input.request.style, input.idempotencyKey, input.fingerprint,
            estimatedCompletion(input.mode, input.request.qualityMode, input.uploads.length)])
        for (const { upload, reservation } of input.uploads) {
          await insert(tx, { userId: input.userId, mode: input.mode, request: input.request, upload, reservation, requestId: input.requestId, batchId: id, idempotencyKey: null, fingerprint: null })
        }
      })
      return batchOf(input.userId, input.mode, id)
    },
    batch: batchOf,

    async exportFor (userId: string) {
      const { rows } = await db.query<StagingRow>(`SELECT * FROM ${STAGINGS} WHERE user_id = $1 ORDER BY created_at, id`, [userId])
      return rows.map((r) => {
        const { result: _link, ...rest } = toStaging(r)
        return { ...rest, mode: r.mode, resultFileId: r.result_file_id }
      })
    },

    async deleteFor (userId: string) {
      const { rowCount } = await db.query(`DELETE FROM ${STAGINGS} WHERE user_id = $1`, [userId])
      await db.query(`DELETE FROM ${BATCHES} WHERE user_id = $1`, [userId])
      return rowCount
    }
  }
}

export type Stagings = ReturnType<typeof createStagings>

declare module 'fastify' {
  interface FastifyInstance {
    stagings: Stagings
  }
}

/** Virtual staging: the job queue of stagings, its providers (OpenAI live, the sandbox in test mode), user data. */
export default fp(async function stagings (app) {
  const prices = app.entitlements.plans.prices
  const imagePrice = prices?.[`openai/${app.config.STAGING_MODEL}`]
  if (app.config.OPENAI_API_KEY !== undefined && imagePrice === undefined) {
    app.log.warn({ model: app.config.STAGING_MODEL }, 'STAGING_MODEL has no openai/<model> entry in the plans file\'s prices: stagings are recorded at cost 0')
  }
  const live = app.config.OPENAI_API_KEY === undefined
    ? null
    : createOpenAIStaging({
      apiKey: app.config.OPENAI_API_KEY,
      baseURL: app.config.OPENAI_BASE_URL,
      model: app.config.STAGING_MODEL,
      visionModel: app.config.STAGING_VISION_MODEL,
      imagePrice,
      visionPrice: prices?.[`openai/${app.config.STAGING_VISION_MODEL}`],
      log: app.log
    })
  const stagings = createStagings({
    app,
    crypto: app.contentCrypto,
    files: app.files,
    live,
    sandbox: createSandboxStaging(),
    timeoutMs: app.config.STAGING_TIMEOUT_MS,
    concurrency: app.config.STAGING_CONCURRENCY
  })
  app.decorate('stagings', stagings)
  app.contentCrypto.registerTable({ table: STAGINGS, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['property_name_sealed'] })
  app.jobs.define<{ stagingId: string }>({
    name: STAGING_QUEUE,
    concurrency: app.config.STAGING_CONCURRENCY,
    // Attempts after a dead worker or a database fault; an attempt never calls the image model a second time.
    retryLimit: 3,
    retryDelaySeconds: 5,
    expireInSeconds: Math.ceil(app.config.STAGING_TIMEOUT_MS / 1000) + 60,
    handler: async ({ data, signal, log }) => stagings.run(data.stagingId, signal, log)
  })
  app.userData.register({ name: 'stagings', export: async (userId) => stagings.exportFor(userId), delete: async (userId) => stagings.deleteFor(userId) })
}, { name: 'stagings', fastify: '5.x', dependencies: ['config', 'store', 'content-crypto', 'jobs', 'files', 'user-data', 'metering', 'webhooks', 'staging-styles', 'entitlements'] })
