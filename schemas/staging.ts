import Type, { type Static } from 'typebox'
import { Page, PageQuery } from './pagination.js'
import { isoTime } from './refs.js'

/** Room types a staging may name (SPEC §12); when absent, the room is detected. */
export const ROOM_TYPES = ['living_room', 'bedroom', 'kitchen', 'dining_room', 'home_office', 'bathroom', 'kids_room', 'outdoor'] as const
export type RoomTypeValue = typeof ROOM_TYPES[number]
/** A union of string literals, typed as their union. */
const literals = <T extends string>(values: readonly T[], options: { description?: string } = {}) =>
  Type.Unsafe<T>(Type.Union(values.map((v) => Type.Literal(v)), options))
export const RoomType = literals(ROOM_TYPES, { description: 'The kind of room in the photo.' })

export const PriceRange = Type.Union([Type.Literal('luxury'), Type.Literal('premium'), Type.Literal('standard')], { description: 'The furnishing budget the style stands for.' })

/** Placeholders a style's prompt template may use; anything else in braces is refused at startup. */
export const PROMPT_PLACEHOLDERS = ['roomType', 'styleName'] as const

const HexColor = Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })

/** One style of STAGING_STYLES_FILE, as the operator writes it (the prompt template stays on the server). */
export const StagingStyleEntry = Type.Object({
  id: Type.String({ pattern: '^[a-z][a-z0-9_]{1,39}$', description: 'Stable id (lowercase letters, digits, underscores).' }),
  name: Type.String({ minLength: 1, maxLength: 60 }),
  description: Type.String({ minLength: 1, maxLength: 400 }),
  bestFor: Type.Array(Type.String({ minLength: 1, maxLength: 60 }), { minItems: 1, maxItems: 8 }),
  priceRange: PriceRange,
  sortOrder: Type.Integer({ minimum: 0, maximum: 10_000 }),
  active: Type.Boolean(),
  palette: Type.Array(HexColor, { minItems: 2, maxItems: 6, description: 'Colours of the style; the preview image is drawn from them.' }),
  promptTemplate: Type.String({ minLength: 20, maxLength: 4000, description: 'The instruction sent to the image model; placeholders {roomType} and {styleName}.' })
}, { additionalProperties: false })
export type StagingStyleEntryValue = Static<typeof StagingStyleEntry>

export const StagingStylesFile = Type.Object({
  styles: Type.Array(StagingStyleEntry, { minItems: 1, maxItems: 100 })
}, { additionalProperties: false })
export type StagingStylesFileValue = Static<typeof StagingStylesFile>

/** A style as clients read it: never the prompt template. */
export const StagingStyle = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  previewImageUrl: Type.String({ description: 'A preview of the style (PNG), served by this service; no credential needed.' }),
  bestFor: Type.Array(Type.String()),
  priceRange: PriceRange
}, { $id: 'StagingStyle', title: 'StagingStyle', additionalProperties: false })

export const StagingStyleList = Type.Object({
  data: Type.Array(Type.Unsafe<Static<typeof StagingStyle>>(Type.Ref('StagingStyle')))
}, {
  $id: 'StagingStyleList',
  title: 'StagingStyleList',
  additionalProperties: false,
  examples: [{ data: [{ id: 'modern_luxury', name: 'Modern luxury', description: 'Clean lines, warm neutrals, brass and marble accents, statement lighting.', previewImageUrl: '/v1/ai/staging/styles/modern_luxury/preview.png', bestFor: ['penthouses', 'new builds'], priceRange: 'luxury' }] }]
})

export const QUALITY_MODES = ['standard', 'premium'] as const
export const QualityMode = literals(QUALITY_MODES, {
  description: '`premium` (default): high quality and the architectural integrity check, with one stricter retry. `standard`: medium quality, no check.'
})
export const STAGING_STATUSES = ['queued', 'processing', 'completed', 'failed'] as const
export type StagingStatusValue = typeof STAGING_STATUSES[number]
export const StagingStatus = literals(STAGING_STATUSES)

/** Codes of a failed staging job (the job's `error.code`; never an HTTP status of the submit). */
export const STAGING_ERROR_CODES = ['NOT_INTERIOR_IMAGE', 'ARCHITECTURAL_INTEGRITY_FAILED', 'CONTENT_REJECTED', 'PROVIDER_ERROR',
  'PROVIDER_TIMEOUT', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'JOB_INTERRUPTED', 'STORAGE_UNAVAILABLE', 'STYLE_UNAVAILABLE'] as const
export type StagingErrorCode = typeof STAGING_ERROR_CODES[number]

export const MAX_PROPERTY_NAME = 200
export const MAX_BATCH_IMAGES = 10

const nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()])

export const StagingResult = Type.Object({
  stagedImageUrl: Type.String({ description: 'A signed link to the staged image (JPEG), valid until `expiresAt` (FILES_URL_TTL_SECONDS); read the staging again for a fresh one. An `<img>` can load it.' }),
  expiresAt: isoTime('When the link stops working.'),
  fileId: Type.String({ description: 'The stored file: also readable with the owner\'s AI token at /v1/ai/files/{fileId} until FILE_RETENTION_DAYS.' }),
  width: Type.Integer({ minimum: 1 }),
  height: Type.Integer({ minimum: 1 }),
  qualityScore: nullable(Type.Number({ minimum: 0, maximum: 1, description: 'Premium: the integrity check\'s score of the staging (0–1). Standard: null.' })),
  architecturalIntegrity: nullable(Type.Boolean({ description: 'Premium: true (a staging that changed the room is never kept). Standard: null (not checked).' }))
}, { additionalProperties: false })

export const Staging = Type.Object({
  id: Type.String({ pattern: '^stg_[0-9A-Za-z]{16}$' }),
  status: StagingStatus,
  progress: Type.Number({ minimum: 0, maximum: 1, description: 'From 0 (queued) to 1 (completed); it only moves forward.' }),
  style: Type.String(),
  roomType: nullable(RoomType),
  roomTypeDetected: Type.Boolean({ description: 'The room type was detected from the photo (none was given).' }),
  qualityMode: QualityMode,
  propertyName: nullable(Type.String({ maxLength: MAX_PROPERTY_NAME })),
  batchId: nullable(Type.String()),
  createdAt: isoTime('When it was submitted.'),
  startedAt: nullable(isoTime('When its job started.')),
  completedAt: nullable(isoTime('When it completed or failed.')),
  processingTimeMs: nullable(Type.Integer({ minimum: 0, description: 'From the job\'s start to its end.' })),
  result: nullable(StagingResult),
  error: nullable(Type.Object({
    code: literals(STAGING_ERROR_CODES),
    message: Type.String()
  }, { additionalProperties: false }))
}, {
  $id: 'Staging',
  title: 'Staging',
  additionalProperties: false,
  examples: [{ id: 'stg_4fQk2x9LmP0aZr7T', status: 'completed', progress: 1, style: 'modern_luxury', roomType: 'living_room', roomTypeDetected: true, qualityMode: 'premium', propertyName: '12 Harbour View', batchId: null, createdAt: '2026-12-03T10:00:00.000Z', startedAt: '2026-12-03T10:00:01.000Z', completedAt: '2026-12-03T10:00:48.000Z', processingTimeMs: 47000, result: { stagedImageUrl: '/v1/ai/files/8d0c7b8e-2f4e-4c83-9f59-6c1f0e4b2a11?expires=1796292048&signature=3mX2…', expiresAt: '2026-12-03T11:00:48.000Z', fileId: '8d0c7b8e-2f4e-4c83-9f59-6c1f0e4b2a11', width: 1536, height: 1024, qualityScore: 0.87, architecturalIntegrity: true }, error: null }]
})
export type StagingValue = Static<typeof Staging>

export const StagingList = Page(Type.Unsafe<StagingValue>(Type.Ref('Staging')), { $id: 'StagingList', description: 'Stagings, newest first.' })

export const StagingListQuery = Type.Object({
  ...PageQuery,
  status: Type.Optional(StagingStatus),
  batchId: Type.Optional(Type.String({ pattern: '^bat_[0-9A-Za-z]{16}$' }))
}, { additionalProperties: false })

export const StagingBatch = Type.Object({
  id: Type.String({ pattern: '^bat_[0-9A-Za-z]{16}$' }),
  totalImages: Type.Integer({ minimum: 1, maximum: MAX_BATCH_IMAGES }),
  status: Type.Union([Type.Literal('queued'), Type.Literal('processing'), Type.Literal('completed')], { description: '`completed` once every staging of the batch has completed or failed.' }),
  counts: Type.Object({
    queued: Type.Integer({ minimum: 0 }),
    processing: Type.Integer({ minimum: 0 }),
    completed: Type.Integer({ minimum: 0 }),
    failed: Type.Integer({ minimum: 0 })
  }, { additionalProperties: false, description: 'Stagings of the batch per status (a deleted staging is no longer counted).' }),
  style: Type.String(),
  createdAt: isoTime('When it was submitted.'),
  completedAt: nullable(isoTime('When its last staging ended.')),
  estimatedCompletionAt: isoTime('When the batch is expected to be done, from the staging concurrency and the typical job time.'),
  stagings: Type.Array(Type.Object({ id: Type.String(), status: StagingStatus }, { additionalProperties: false }))
}, {
  $id: 'StagingBatch',
  title: 'StagingBatch',
  additionalProperties: false,
  examples: [{ id: 'bat_7Yb3nQ1sK8vT2wXc', totalImages: 2, status: 'processing', counts: { queued: 1, processing: 1, completed: 0, failed: 0 }, style: 'scandinavian', createdAt: '2026-12-03T10:00:00.000Z', completedAt: null, estimatedCompletionAt: '2026-12-03T10:02:00.000Z', stagings: [{ id: 'stg_4fQk2x9LmP0aZr7T', status: 'processing' }, { id: 'stg_9hR2c6VnB1mQ4sLd', status: 'queued' }] }]
})
export type StagingBatchValue = Static<typeof StagingBatch>

export const stagingSchemas = [StagingStyle, StagingStyleList, Staging, StagingList, StagingBatch]
