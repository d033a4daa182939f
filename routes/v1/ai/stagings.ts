import { createHash } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Multipart } from '@fastify/multipart'
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { AppError, invalidBody } from '../../../plugins/errors.js'
import { IMAGE_MIME, MAX_IMAGE_BYTES, prepareImage } from '../../../plugins/images.js'
import type { MeteredCall } from '../../../plugins/metering.js'
import { STAGING_HOLD_MS, type StagingRequest, type StoredUpload } from '../../../plugins/stagings.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import {
  MAX_BATCH_IMAGES, MAX_PROPERTY_NAME, QUALITY_MODES, QualityMode, ROOM_TYPES, RoomType, Staging, StagingBatch, StagingList, StagingListQuery,
  type RoomTypeValue
} from '../../../schemas/staging.js'

const SUBMIT = { auth: 'ai-token' as const, feature: 'virtual-staging' as const }
/** Reads are not a feature call: polling is limited by the plan's general rate, not the submit's. */
const READ = { auth: 'ai-token' as const }
const common = { tags: ['staging'], security: [{ aiToken: [] }] }
const byId = Type.Object({ id: Type.String({ pattern: '^stg_[0-9A-Za-z]{16}$', description: 'A staging id.' }) })
const byBatch = Type.Object({ id: Type.String({ pattern: '^bat_[0-9A-Za-z]{16}$', description: 'A batch id.' }) })
const READ_ERRORS = ['VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED'] as const
const SUBMIT_ERRORS = ['VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'QUOTA_EXCEEDED', 'INSUFFICIENT_CREDITS', 'CONFLICT',
  'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'INVALID_IMAGE', 'IMAGE_TOO_LARGE', 'RATE_LIMITED', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_UNAVAILABLE',
  'STORAGE_UNAVAILABLE'] as const
const FIELD_NAMES = ['style', 'roomType', 'qualityMode', 'propertyName'] as const
/** Idempotency keys as Stripe and the IETF draft have them: printable ASCII, at most 255. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/
const who = (request: FastifyRequest) => request.principal as Principal

const invalidField = (path: string, message: string) => invalidBody({ path, message })

/** The multipart limits a body with too many parts runs into. */
const PART_LIMIT_CODES = new Set(['FST_PARTS_LIMIT', 'FST_FIELDS_LIMIT'])

/** What a failed multipart read means: our errors pass, the size limit names its size, too many parts name the limit. */
function uploadError (err: Error & { code?: string }, fileField: string, maxFiles: number): Error {
  if (err instanceof AppError) return err
  if (err.code === 'FST_REQ_FILE_TOO_LARGE') {
    return new AppError('PAYLOAD_TOO_LARGE', `An image is larger than ${MAX_IMAGE_BYTES / (1024 * 1024)} MB: pick a smaller file or scale it down.`, { maxBytes: MAX_IMAGE_BYTES })
  }
  if (err.code === 'FST_FILES_LIMIT') return invalidField(`/${fileField}`, maxFiles === 1 ? 'send one image' : `at most ${maxFiles} images`)
  if (PART_LIMIT_CODES.has(String(err.code))) return invalidField('/', `has too many parts: the fields are ${fileField}, ${FIELD_NAMES.join(', ')}`)
  return new AppError('VALIDATION_ERROR', 'The multipart body is malformed or ended before it was complete: send it again.')
}

/** Reads the multipart body: the image file(s) in `fileField`, buffered up to the limit each, and the option fields. */
async function readSubmit (request: FastifyRequest, fileField: 'image' | 'images', maxFiles: number) {
  const images: Buffer[] = []
  const fields: Partial<Record<typeof FIELD_NAMES[number], string>> = {}
  const parts: AsyncIterableIterator<Multipart> = request.parts({
    limits: { fileSize: MAX_IMAGE_BYTES, files: maxFiles, fields: FIELD_NAMES.length, parts: maxFiles + FIELD_NAMES.length, fieldSize: 4 * MAX_PROPERTY_NAME, headerPairs: 20 }
  })
  try {
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== fileField) throw invalidField(`/${part.fieldname}`, `the only file field is ${fileField}`)
        images.push(await part.toBuffer())
      } else {
        if (!(FIELD_NAMES as readonly string[]).includes(part.fieldname)) throw invalidField(`/${part.fieldname}`, `is not a field of this request (${fileField}, ${FIELD_NAMES.join(', ')})`)
        if (part.valueTruncated) throw invalidField(`/${part.fieldname}`, `is too long (at most ${MAX_PROPERTY_NAME} characters)`)
        fields[part.fieldname as typeof FIELD_NAMES[number]] = String(part.value)
      }
    }
  } catch (err) {
    throw uploadError(err as Error & { code?: string }, fileField, maxFiles)
  }
  if (images.length === 0) throw invalidField(`/${fileField}`, `is required: ${maxFiles === 1 ? 'the photo' : 'one to ten photos'}`)
  return { images, fields }
}

/** Checks the option fields against the catalog and the contract. */
function checkOptions (fields: Partial<Record<typeof FIELD_NAMES[number], string>>, styleExists: (id: string) => boolean): StagingRequest {
  const style = fields.style
  if (style === undefined || style === '') throw invalidField('/style', 'is required: a style id of GET /v1/ai/staging/styles')
  if (!styleExists(style)) throw invalidField('/style', 'is not a style of the catalog (GET /v1/ai/staging/styles)')
  const roomType = fields.roomType === undefined || fields.roomType === '' ? null : fields.roomType
  if (roomType !== null && !(ROOM_TYPES as readonly string[]).includes(roomType)) throw invalidField('/roomType', `must be one of ${ROOM_TYPES.join(', ')} (or left out: it is detected)`)
  const qualityMode = fields.qualityMode ?? 'premium'
  if (!(QUALITY_MODES as readonly string[]).includes(qualityMode)) throw invalidField('/qualityMode', `must be one of ${QUALITY_MODES.join(', ')}`)
  const name = fields.propertyName?.trim()
  if (name !== undefined && [...name].length > MAX_PROPERTY_NAME) throw invalidField('/propertyName', `is too long (at most ${MAX_PROPERTY_NAME} characters)`)
  // eslint-disable-next-line no-control-regex
  if (name !== undefined && /[\u0000-\u001f\u007f]/.test(name)) throw invalidField('/propertyName', 'must not hold control characters')
  return { style, roomType: roomType as RoomTypeValue | null, qualityMode: qualityMode as StagingRequest['qualityMode'], propertyName: name === undefined || name === '' ? null : name }
}

/** The unique index of Idempotency-Keys refused a second staging: another request with the key is under way. */
const isUniqueViolation = (err: unknown) => (err as { code?: string }).code === '23505'
const inFlight = () => new AppError('CONFLICT', 'Another request with this Idempotency-Key is being processed: retry in a moment to get its answer.')

const stagings: FastifyPluginAsyncTypebox = async (app) => {
  const imageField = Type.String({ format: 'binary', description: 'The photo: JPEG, PNG or WebP (by its bytes), ≤ 12 MB, ≤ 25 megapixels. EXIF, XMP and GPS metadata are stripped before it is stored or sent.' })
  const options = {
    style: Type.String({ description: 'A style id of GET /v1/ai/staging/styles.' }),
    roomType: Type.Optional(RoomType),
    qualityMode: Type.Optional(QualityMode),
    propertyName: Type.Optional(Type.String({ maxLength: MAX_PROPERTY_NAME, description: 'Your label for the listing (kept encrypted, never sent to a model).' }))
  }
  const idempotencyHeader = Type.Object({
    'idempotency-key': Type.Optional(Type.String({ description: 'A key of yours (printable ASCII, ≤ 255): a repeat within 24 h with the same content returns the first answer and queues nothing; with other content it is 409 CONFLICT.' }))
  })

  /** The client's Idempotency-Key, hashed as it is stored; null without one. */
  function idempotencyKey (request: FastifyRequest): string | null {
    const raw = request.headers['idempotency-key']
    if (raw === undefined) return null
    if (typeof raw !== 'string' || !IDEMPOTENCY_KEY.test(raw)) {
      throw new AppError('VALIDATION_ERROR', 'The Idempotency-Key header is invalid: see details.fields.', { fields: [{ location: 'headers', path: '/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }] })
    }
    return createHash('sha256').update(raw).digest('hex')
  }

  /** A keyed fingerprint of what was sent: the photos' bytes and the options (for the Idempotency-Key check). */
  const fingerprint = (images: Buffer[], request: StagingRequest) =>
    app.hash.content(JSON.stringify([images.map((i) => createHash('sha256').update(i).digest('hex')), request]))

  /** Prepares a photo (oriented, metadata stripped) and stores it as an upload until its job ends. */
  async function store (principal: Principal, bytes: Buffer, index: number | null): Promise<StoredUpload> {
    let prepared
    try {
      prepared = await app.imageGate(() => prepareImage(bytes))
    } catch (err) {
      // In a batch, say which photo.
      if (index !== null && err instanceof AppError) throw new AppError(err.code, `Image ${index + 1}: ${err.message}`, { ...err.details, index })
      throw err
    }
    const body = Buffer.from(await prepared.blob.arrayBuffer())
    const saved = await app.files.save({ userId: principal.userId, feature: 'virtual-staging', kind: 'upload', contentType: IMAGE_MIME[prepared.type], body, maxBytes: 4 * MAX_IMAGE_BYTES })
    return { fileId: saved.id, type: prepared.type, width: prepared.width, height: prepared.height }
  }

  const accepted = (reply: FastifyReply, location: string) => reply.code(202).header('location', location)
  const replay = (reply: FastifyReply, location: string, body: unknown) => accepted(reply, location).header('idempotent-replayed', 'true').send(body)

  /** What both submits share: a multipart body from a principal whose mode can stage, read and checked, and its fingerprint. */
  async function intake (request: FastifyRequest, fileField: 'image' | 'images', maxFiles: number) {
    const principal = who(request)
    if (!request.isMultipart()) throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Send the photo${maxFiles === 1 ? '' : 's'} as multipart/form-data with the file${maxFiles === 1 ? '' : 's'} in the field \`${fileField}\`.`)
    if (app.stagings.provider(principal.mode) === null) {
      throw new AppError('PROVIDER_NOT_CONFIGURED', 'Virtual staging is not set up on this server (no OPENAI_API_KEY): use a test-mode key, or ask the operator.')
    }
    const key = idempotencyKey(request)
    const { images, fields } = await readSubmit(request, fileField, maxFiles)
    const options = checkOptions(fields, (id) => app.stagingStyles.get(id) !== undefined)
    return { principal, key, images, options, print: fingerprint(images, options) }
  }

  app.post('/stagings', {
    config: SUBMIT,
    // The body is read part by part with its own limits; the schema below documents it.
    validatorCompiler: () => () => true,
    schema: {
      operationId: 'createStaging',
      summary: 'Stage a room photo',
      description: 'Multipart upload of one photo and its options. Answers 202 at once with the queued staging and its `Location`; poll it, or ' +
        'subscribe a webhook to `staging.completed` / `staging.failed`. One staging of quota (and, on a plan billed in credits, its most expensive ' +
        'cost) is reserved now, charged from the provider\'s usage when the job completes, and given back when it fails. With `Idempotency-Key`, a repeat ' +
        'within 24 h returns the first staging (header `Idempotent-Replayed: true`). Test-mode keys stage in the sandbox (offline, deterministic).',
      ...common,
      consumes: ['multipart/form-data'],
      headers: idempotencyHeader,
      body: Type.Object({ image: imageField, ...options }, { required: ['image', 'style'] }),
      response: { 202: ref(Staging), ...errorResponses(...SUBMIT_ERRORS) }
    }
  }, async (request, reply) => {
    const { principal, key, images, options, print } = await intake(request, 'image', 1)
    const earlier = key === null ? null : await app.stagings.replay('staging', principal.userId, principal.mode, key, print)
    if (earlier !== null) return replay(reply, `/v1/ai/stagings/${earlier}`, await app.stagings.get(principal.userId, principal.mode, earlier))
    const upload = await store(principal, images[0] as Buffer, null)
    images.length = 0
    let metered: MeteredCall
    try {
      metered = await app.meter(request, reply, 1, { costMicroUsd: app.stagings.estimate(options.qualityMode, principal.mode) }, { holdMs: STAGING_HOLD_MS })
    } catch (err) {
      await app.files.delete(upload.fileId, principal.userId)
      throw err
    }
    try {
      const row = await app.store.transaction((tx) => app.stagings.insert(tx, {
        userId: principal.userId, mode: principal.mode, request: options, upload, reservation: metered.reservation, requestId: request.id, batchId: null, idempotencyKey: key, fingerprint: print
      }))
      request.log.info({ stagingId: row.id, style: options.style, qualityMode: options.qualityMode, roomTypeGiven: options.roomType !== null }, 'staging queued')
      return accepted(reply, `/v1/ai/stagings/${row.id}`).send(app.stagings.toStaging(row))
    } catch (err) {
      await metered.release()
      await app.files.delete(upload.fileId, principal.userId)
      throw isUniqueViolation(err) ? inFlight() : err
    }
  })

  app.get('/stagings', {
    config: READ,
    schema: {
      operationId: 'listStagings',
      summary: 'List your stagings',
      description: 'Newest first, paged with `cursor` and `limit`; filter by `status` or `batchId`. Test-mode and live stagings are kept apart.',
      ...common,
      querystring: StagingListQuery,
      response: { 200: ref(StagingList), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async (request) => app.stagings.list(who(request).userId, who(request).mode, request.query))

  app.get('/stagings/:id', {
    config: READ,
    schema: {
      operationId: 'getStaging',
      summary: 'Read a staging: status, progress, result',
      description: 'Poll this (every 2–5 s) until `status` is `completed` or `failed`. A completed staging has `result.stagedImageUrl`, a signed link ' +
        'valid for FILES_URL_TTL_SECONDS: read the staging again for a fresh one. Another user\'s staging is NOT_FOUND.',
      ...common,
      params: byId,
      response: { 200: ref(Staging), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request) => app.stagings.get(who(request).userId, who(request).mode, request.params.id))

  app.delete('/stagings/:id', {
    config: READ,
    schema: {
      operationId: 'deleteStaging',
      summary: 'Delete a staging and its images',
      description: 'Deletes the record, the stored photo and the staged image now. A staging not yet at the image model (queued, or checking ' +
        'the room) is stopped and its quota and credits are given back at once; one the model is already working on keeps nothing, and what ' +
        'the provider charges for it is recorded on the ledger (no content).',
      ...common,
      params: byId,
      response: { 204: { description: 'Deleted.', type: 'null' }, ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    await app.stagings.remove(who(request).userId, who(request).mode, request.params.id)
    return reply.code(204).send(null)
  })

  app.post('/stagings/batches', {
    config: SUBMIT,
    validatorCompiler: () => () => true,
    schema: {
      operationId: 'createStagingBatch',
      summary: 'Stage up to ten photos in one style',
      description: `Multipart: one to ${MAX_BATCH_IMAGES} files in \`images\` and the options of a single staging, applied to each. One staging of quota per ` +
        'photo is reserved at once (all or none). Answers 202 with the batch and its stagings; `batch.completed` is sent when the last one ends. ' +
        '`Idempotency-Key` as for a single staging.',
      ...common,
      consumes: ['multipart/form-data'],
      headers: idempotencyHeader,
      body: Type.Object({ images: Type.Array(imageField, { minItems: 1, maxItems: MAX_BATCH_IMAGES }), ...options }, { required: ['images', 'style'] }),
      response: { 202: ref(StagingBatch), ...errorResponses(...SUBMIT_ERRORS) }
    }
  }, async (request, reply) => {
    const { principal, key, images, options, print } = await intake(request, 'images', MAX_BATCH_IMAGES)
    const earlier = key === null ? null : await app.stagings.replay('batch', principal.userId, principal.mode, key, print)
    if (earlier !== null) return replay(reply, `/v1/ai/stagings/batches/${earlier}`, await app.stagings.batch(principal.userId, principal.mode, earlier))
    const uploads: StoredUpload[] = []
    const metered: MeteredCall[] = []
    const undo = async () => {
      for (const m of metered) await m.release()
      for (const u of uploads) await app.files.delete(u.fileId, principal.userId)
    }
    try {
      for (const [i, bytes] of images.entries()) uploads.push(await store(principal, bytes, images.length === 1 ? null : i))
      images.length = 0
      const estimate = app.stagings.estimate(options.qualityMode, principal.mode)
      for (let i = 0; i < uploads.length; i++) metered.push(await app.meter(request, reply, 1, { costMicroUsd: estimate }, { holdMs: STAGING_HOLD_MS }))
      const batch = await app.stagings.insertBatch({
        userId: principal.userId,
        mode: principal.mode,
        request: options,
        uploads: uploads.map((upload, i) => ({ upload, reservation: (metered[i] as MeteredCall).reservation })),
        requestId: request.id,
        idempotencyKey: key,
        fingerprint: print
      })
      request.log.info({ batchId: batch.id, images: batch.totalImages, style: options.style }, 'staging batch queued')
      return accepted(reply, `/v1/ai/stagings/batches/${batch.id}`).send(batch)
    } catch (err) {
      await undo()
      throw isUniqueViolation(err) ? inFlight() : err
    }
  })

  app.get('/stagings/batches/:id', {
    config: READ,
    schema: {
      operationId: 'getStagingBatch',
      summary: 'Read a batch: counts per status',
      description: 'The batch\'s stagings with their status, and counts per status; `completed` once every one has completed or failed. Another user\'s batch is NOT_FOUND.',
      ...common,
      params: byBatch,
      response: { 200: ref(StagingBatch), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request) => app.stagings.batch(who(request).userId, who(request).mode, request.params.id))
}

export default stagings
