import type { FastifyBaseLogger } from 'fastify'
import { APIConnectionError, APIError, OpenAI, toFile } from 'openai'
import sharp, { type Metadata } from 'sharp'
import type { PriceValue } from '../schemas/plans.js'
import { ROOM_TYPES, type RoomTypeValue } from '../schemas/staging.js'
import type { PreparedImage } from '../plugins/images.js'
import { mapOpenAIError } from './openai-chat.js'
import { ProviderError } from './provider-error.js'

export type QualityMode = 'standard' | 'premium'

/** What a provider call used and cost (micro-USD, list price); `estimated` when the answer carried no usage. */
export interface CallUsage { inputTokens: number, outputTokens: number, costMicroUsd: number, estimated: boolean }

export interface RoomCheck { isRoom: boolean, roomType: RoomTypeValue, usage: CallUsage }
export interface IntegrityCheck { architecturalIntegrity: boolean, qualityScore: number, usage: CallUsage }
export interface StagedImage { image: Buffer, contentType: string, width: number, height: number, usage: CallUsage }

export interface EditInput {
  image: PreparedImage
  prompt: string
  /** The style's colours (the sandbox draws with them). */
  palette: string[]
  quality: QualityMode
  /** The keyed hash of the user (never the id). */
  user: string
  signal: AbortSignal
}

/** A staging provider: the room check, the image edit and the integrity check. */
export interface StagingProvider {
  readonly name: 'openai' | 'sandbox'
  /** The image model, as the ledger records it. */
  readonly model: string
  detectRoom (image: PreparedImage, user: string, signal: AbortSignal): Promise<RoomCheck>
  stage (input: EditInput): Promise<StagedImage>
  checkIntegrity (original: PreparedImage, staged: Buffer, user: string, signal: AbortSignal): Promise<IntegrityCheck>
}

/** The edit size OpenAI's GPT image models take that is closest to the photo's aspect. */
export function editSize (width: number, height: number): '1536x1024' | '1024x1536' | '1024x1024' {
  const ratio = width / height
  if (ratio >= 1.25) return '1536x1024'
  if (ratio <= 0.8) return '1024x1536'
  return '1024x1024'
}

/** Models that take `input_fidelity=high` (SDK docs: gpt-image-1.5 and gpt-image-1; the mini only low; gpt-image-2 none). */
export const HIGH_FIDELITY_MODELS = new Set(['gpt-image-1.5', 'gpt-image-1'])

/** Instructions added to every style's prompt: the room stays the room. */
export const KEEP_ARCHITECTURE = 'Keep the architecture exactly as it is: walls, windows, doors, floor, ceiling, stairs, fixed fittings, camera position and perspective, and the light from the windows. Add furniture, rugs, lighting and decor only. No people, no text, no watermarks.'
export const STRICT_RETRY = 'STRICT: a previous attempt changed the room itself. Do not move, add, remove or resize any wall, window, door, opening, floor or ceiling element; only place furniture and decor in the existing space.'

/** Upper bounds of one image edit, for the reservation made before the job runs (billed by usage after it). */
export const EDIT_TOKEN_BOUNDS = { text: 1_500, imageIn: 8_000, imageOut: 8_000 }
/** Upper bounds of one vision call (a small image or two, a few hundred tokens of answer). */
export const VISION_TOKEN_BOUNDS = { input: 4_000, output: 300 }

/** A price-table entry as the four rates of an image model, micro-USD per token (missing: 0). */
function rates (price: PriceValue | undefined) {
  const p = price ?? {}
  return { textIn: p.perInputUnit ?? 0, textOut: p.perOutputUnit ?? 0, imageIn: p.perImageInputUnit ?? 0, imageOut: p.perImageOutputUnit ?? 0 }
}

/** Image-model cost from an Images answer's usage: text, image-in and image-out tokens priced apart. */
export function imageCost (price: PriceValue | undefined, usage: { text: number, imageIn: number, textOut: number, imageOut: number }): number {
  const r = rates(price)
  return Math.round(usage.text * r.textIn + usage.imageIn * r.imageIn + usage.textOut * r.textOut + usage.imageOut * r.imageOut)
}

export const tokenCost = (price: PriceValue | undefined, input: number, output: number) =>
  imageCost(price, { text: input, imageIn: 0, textOut: output, imageOut: 0 })

/** The most a staging can cost at list price: one or two edits (premium retries once) and up to three vision calls. */
export function stagingEstimate (imagePrice: PriceValue | undefined, visionPrice: PriceValue | undefined, quality: QualityMode): number {
  const edit = imageCost(imagePrice, { text: EDIT_TOKEN_BOUNDS.text, imageIn: EDIT_TOKEN_BOUNDS.imageIn, textOut: 0, imageOut: EDIT_TOKEN_BOUNDS.imageOut })
  const vision = tokenCost(visionPrice, VISION_TOKEN_BOUNDS.input, VISION_TOKEN_BOUNDS.output)
  return quality === 'premium' ? 2 * edit + 3 * vision : edit + vision
}

/** Vision inputs are sent small: the longest side at most this (what the checks need, a bounded token count). */
const VISION_EDGE = 1024

async function visionDataUrl (image: Buffer): Promise<string> {
  const jpeg = await sharp(image).resize(VISION_EDGE, VISION_EDGE, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 85 }).toBuffer()
  return `data:image/jpeg;base64,${jpeg.toString('base64')}`
}

const ROOM_SCHEMA = {
  type: 'object',
  properties: {
    isRoom: { type: 'boolean', description: 'True when the photo shows the inside of a room of a property (or its outdoor living space such as a patio or terrace).' },
    roomType: { type: 'string', enum: [...ROOM_TYPES], description: 'The kind of room; the closest one when unsure.' }
  },
  required: ['isRoom', 'roomType'],
  additionalProperties: false
}

const INTEGRITY_SCHEMA = {
  type: 'object',
  properties: {
    architecturalIntegrity: { type: 'boolean', description: 'True when walls, windows, doors, floor, ceiling and perspective of the second image are those of the first.' },
    qualityScore: { type: 'number', description: 'How convincing and well-made the staging of the second image is, from 0 to 1.' }
  },
  required: ['architecturalIntegrity', 'qualityScore'],
  additionalProperties: false
}

export interface OpenAIStagingOptions {
  apiKey: string
  baseURL: string
  model: string
  visionModel: string
  /** Price-table entries (`openai/<model>`) of the two models. */
  imagePrice: PriceValue | undefined
  visionPrice: PriceValue | undefined
  log: FastifyBaseLogger
}

/** An OpenAI failure in the contract's terms; the safety system's refusal is CONTENT_REJECTED. */
function stagingError (err: unknown, signal: AbortSignal, log: FastifyBaseLogger, model: string): ProviderError {
  if (signal.aborted) {
    const reason: unknown = signal.reason
    return new ProviderError('PROVIDER_TIMEOUT', (reason as Error | undefined)?.name === 'TimeoutError'
      ? 'The image model did not finish within the staging time limit.'
      : 'The staging was stopped before the image model answered.')
  }
  if (err instanceof APIError && err.status === 400 && err.code === 'moderation_blocked') {
    return new ProviderError('CONTENT_REJECTED', 'The image model\'s safety system refused this photo.')
  }
  if (err instanceof APIConnectionError) return new ProviderError('PROVIDER_UNAVAILABLE', 'The image model cannot be reached: try again later.')
  return mapOpenAIError(err, null, log, 'openai', model)
}

/** The structured answer of a vision call, checked against what it must hold. */
function parseAnswer<T> (content: string | null | undefined, check: (value: Record<string, unknown>) => value is Record<string, unknown> & T): T {
  let value: unknown
  try {
    value = JSON.parse(content ?? '')
  } catch {
    throw new ProviderError('PROVIDER_ERROR', 'The vision model sent an answer that cannot be read.')
  }
  if (typeof value !== 'object' || value === null || !check(value as Record<string, unknown>)) {
    throw new ProviderError('PROVIDER_ERROR', 'The vision model sent an answer that cannot be read.')
  }
  return value as T
}

const isRoomAnswer = (v: Record<string, unknown>): v is Record<string, unknown> & { isRoom: boolean, roomType: RoomTypeValue } =>
  typeof v.isRoom === 'boolean' && (ROOM_TYPES as readonly unknown[]).includes(v.roomType)
const isIntegrityAnswer = (v: Record<string, unknown>): v is Record<string, unknown> & { architecturalIntegrity: boolean, qualityScore: number } =>
  typeof v.architecturalIntegrity === 'boolean' && typeof v.qualityScore === 'number' && v.qualityScore >= 0 && v.qualityScore <= 1

/**
 * OpenAI through the official SDK: Images edit (`POST /images/edits`, multipart) for the staging, Chat Completions with
 * a JSON schema for the two vision checks. No retries inside: an edit that reached OpenAI is charged, and the job
 * decides what may be repeated.
 */
export function createOpenAIStaging (opts: OpenAIStagingOptions): StagingProvider {
  const client = new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseURL, maxRetries: 0, timeout: 600_000 })
  const { log } = opts

  async function vision (content: OpenAI.Chat.Completions.ChatCompletionContentPart[], schemaName: string, schema: object, user: string, signal: AbortSignal) {
    try {
      const answer = await client.chat.completions.create({
        model: opts.visionModel,
        messages: [{ role: 'user', content }],
        response_format: { type: 'json_schema', json_schema: { name: schemaName, strict: true, schema: schema as Record<string, unknown> } },
        max_completion_tokens: VISION_TOKEN_BOUNDS.output,
        store: false,
        safety_identifier: user
      }, { signal })
      const usage = answer.usage
      const input = usage?.prompt_tokens ?? VISION_TOKEN_BOUNDS.input
      const output = usage?.completion_tokens ?? VISION_TOKEN_BOUNDS.output
      return {
        content: answer.choices[0]?.message.content,
        usage: { inputTokens: input, outputTokens: output, costMicroUsd: tokenCost(opts.visionPrice, input, output), estimated: usage == null }
      }
    } catch (err) {
      throw stagingError(err, signal, log, opts.visionModel)
    }
  }

  return {
    name: 'openai',
    model: opts.model,

    async detectRoom (image, user, signal) {
      const url = await visionDataUrl(Buffer.from(await image.blob.arrayBuffer()))
      const { content, usage } = await vision([
        { type: 'text', text: 'Classify this real-estate photo. Answer with the JSON schema only.' },
        { type: 'image_url', image_url: { url, detail: 'low' } }
      ], 'room_check', ROOM_SCHEMA, user, signal)
      return { ...parseAnswer(content, isRoomAnswer), usage }
    },

    async stage (input) {
      const { image } = input
      const bytes = Buffer.from(await image.blob.arrayBuffer())
      let answer: OpenAI.Images.ImagesResponse
      try {
        answer = await client.images.edit({
          model: opts.model,
          image: await toFile(bytes, `room.${image.type === 'jpeg' ? 'jpg' : image.type}`, { type: image.blob.type }),
          prompt: input.prompt,
          n: 1,
          quality: input.quality === 'premium' ? 'high' : 'medium',
          size: editSize(image.width, image.height),
          output_format: 'jpeg',
          ...(HIGH_FIDELITY_MODELS.has(opts.model) ? { input_fidelity: 'high' as const } : {}),
          safety_identifier: input.user
        }, { signal: input.signal })
      } catch (err) {
        throw stagingError(err, input.signal, log, opts.model)
      }
      const b64 = answer.data?.[0]?.b64_json
      if (typeof b64 !== 'string' || b64 === '') throw new ProviderError('PROVIDER_ERROR', 'The image model sent no image.')
      const result = Buffer.from(b64, 'base64')
      let meta: Metadata
      try {
        meta = await sharp(result).metadata()
      } catch {
        throw new ProviderError('PROVIDER_ERROR', 'The image model sent something that is not a readable image.')
      }
      const u = answer.usage
      const text = u?.input_tokens_details.text_tokens ?? EDIT_TOKEN_BOUNDS.text
      const imageIn = u?.input_tokens_details.image_tokens ?? EDIT_TOKEN_BOUNDS.imageIn
      const textOut = u?.output_tokens_details?.text_tokens ?? 0
      const imageOut = u === undefined ? EDIT_TOKEN_BOUNDS.imageOut : (u.output_tokens_details?.image_tokens ?? u.output_tokens - textOut)
      return {
        image: result,
        contentType: `image/${meta.format === 'jpeg' ? 'jpeg' : String(meta.format)}`,
        width: Number(meta.width),
        height: Number(meta.height),
        usage: {
          inputTokens: u?.input_tokens ?? text + imageIn,
          outputTokens: u?.output_tokens ?? imageOut,
          costMicroUsd: imageCost(opts.imagePrice, { text, imageIn, textOut, imageOut }),
          estimated: u === undefined
        }
      }
    },

    async checkIntegrity (original, staged, user, signal) {
      const [before, after] = await Promise.all([visionDataUrl(Buffer.from(await original.blob.arrayBuffer())), visionDataUrl(staged)])
      const { content, usage } = await vision([
        { type: 'text', text: 'The first image is an empty room, the second the same room virtually staged. Judge whether the architecture is unchanged and how good the staging is. Answer with the JSON schema only.' },
        { type: 'image_url', image_url: { url: before, detail: 'high' } },
        { type: 'image_url', image_url: { url: after, detail: 'high' } }
      ], 'integrity_check', INTEGRITY_SCHEMA, user, signal)
      return { ...parseAnswer(content, isIntegrityAnswer), usage }
    }
  }
}
