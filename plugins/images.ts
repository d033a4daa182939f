import fp from 'fastify-plugin'
import sharp, { type Metadata } from 'sharp'
import { AppError } from './errors.js'
import { joinParts, stripJpeg, stripPng } from './image-metadata.js'

/** Intake limits (SPEC §5). */
export const MAX_IMAGE_BYTES = 12 * 1024 * 1024
export const MAX_IMAGE_PIXELS = 25_000_000
/** Images decoded at once: each can hold ~100 MB of pixels, so the rest wait their turn with only their upload in memory. */
export const IMAGE_CONCURRENCY = 2

export type ImageType = 'png' | 'jpeg' | 'webp'
export const IMAGE_MIME: Record<ImageType | 'webp', string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' }

/** The type by magic bytes; the declared content type and file name are not trusted. */
export function sniffType (bytes: Uint8Array): ImageType | null {
  const starts = (...sig: number[]) => sig.every((b, i) => bytes[i] === b)
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png'
  if (starts(0xff, 0xd8, 0xff)) return 'jpeg'
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) return 'webp'
  return null
}

/**
 * A prepared image: oriented, metadata stripped, in its own format; what a provider receives. Held as a Blob,
 * the one copy that waits through the provider call and goes into its multipart body as it is.
 */
export interface PreparedImage { blob: Blob, type: ImageType, width: number, height: number }

/**
 * A small counting semaphore: bounds how many jobs run at once. With `maxWait`, a job that has waited that long
 * for its turn is not run: it fails with `maxWait.error()`.
 */
export function createGate (slots: number, maxWait?: { ms: number, error: () => Error }) {
  let free = slots
  const waiting: Array<() => void> = []
  const turn = () => new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const go = () => { clearTimeout(timer); resolve() }
    waiting.push(go)
    if (maxWait !== undefined) {
      timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(go), 1)
        reject(maxWait.error())
      }, maxWait.ms)
    }
  })
  return async function run<T> (work: () => Promise<T>): Promise<T> {
    if (free > 0) free--
    else await turn()
    try {
      return await work()
    } finally {
      const next = waiting.shift()
      if (next === undefined) free++
      else next()
    }
  }
}

/**
 * The longest a background removal waits for its turn: the server gives a request 60 s to arrive, and the
 * upload still has to come in after its turn.
 */
const MAX_TURN_WAIT_MS = 45_000

const invalid = () => new AppError('INVALID_IMAGE', 'The image cannot be decoded: it may be truncated or corrupt. Pick another image.')

/**
 * Checks an upload and makes what may leave the server: type by magic bytes, dimensions from the header
 * (before any pixel is decoded, so a decompression bomb costs nothing), then without its metadata. A JPEG or PNG
 * that needs no rotation and is in sRGB or grey keeps its own bytes, with only the segments or chunks needed to
 * draw it (no decode, no re-encode: milliseconds, and no loss); anything else is decoded with its EXIF orientation
 * applied and re-encoded without EXIF, XMP, GPS or ICC metadata.
 */
export async function prepareImage (bytes: Buffer): Promise<PreparedImage> {
  const type = sniffType(bytes)
  if (type === null) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'The file is not a PNG, JPEG or WebP image.')
  let meta: Metadata
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata()
  } catch {
    throw invalid()
  }
  const width = Number(meta.width)
  const height = Number(meta.height)
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new AppError('IMAGE_TOO_LARGE', `The image has more than ${MAX_IMAGE_PIXELS / 1_000_000} megapixels: scale it down first.`,
      { width, height, maxPixels: MAX_IMAGE_PIXELS })
  }
  if ((meta.orientation ?? 1) === 1 && (meta.space === 'srgb' || meta.space === 'b-w') && type !== 'webp') {
    const parts = type === 'jpeg' ? stripJpeg(bytes) : stripPng(bytes)
    // Not well-formed (truncated, say): the decode below says whether it can be read at all. The Blob is the one copy.
    // (An upload is never on shared memory; the Blob's typing only says so for its parts.)
    if (parts !== null) return { blob: new Blob(parts as Array<Buffer<ArrayBuffer>>, { type: IMAGE_MIME[type] }), type, width, height }
  }
  try {
    // sharp writes no metadata unless asked to (withMetadata), so EXIF, XMP and GPS stay behind.
    const pipeline = sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS, failOn: 'truncated' }).rotate()
    const encoded = type === 'png'
      ? pipeline.png()
      : type === 'jpeg' ? pipeline.jpeg({ quality: 95, chromaSubsampling: '4:4:4' }) : pipeline.webp({ quality: 95 })
    const { data, info } = await encoded.toBuffer({ resolveWithObject: true })
    return { blob: new Blob([data], { type: IMAGE_MIME[type] }), type, width: info.width, height: info.height }
  } catch {
    throw invalid()
  }
}

export type Output = 'cutout' | 'mask'
export type Format = 'png' | 'webp'

/**
 * A provider's result as the client gets it: the input's (oriented) dimensions, a single-channel mask when
 * asked for one, PNG or lossless WebP; a PNG cut-out of the right size is passed on without a decode or re-encode.
 * PROVIDER_ERROR when the provider sent something that is not an image.
 */
export async function finishImage (result: Buffer, target: { width: number, height: number, output: Output, format: Format }): Promise<Buffer> {
  try {
    const meta = await sharp(result, { limitInputPixels: MAX_IMAGE_PIXELS }).metadata()
    // What was asked for already (a PNG cut-out of the input's size): its own bytes, only without chunks that are not drawn.
    if (target.output === 'cutout' && target.format === 'png' && meta.format === 'png' && meta.hasAlpha && meta.width === target.width && meta.height === target.height) {
      const kept = stripPng(result)
      if (kept !== null) return joinParts(kept, result)
    }
    let pipeline = sharp(result, { limitInputPixels: MAX_IMAGE_PIXELS })
    if (meta.width !== target.width || meta.height !== target.height) pipeline = pipeline.resize(target.width, target.height, { fit: 'fill' })
    if (target.output === 'mask') {
      pipeline = pipeline.extractChannel(meta.hasAlpha === true ? 'alpha' : 0).toColourspace('b-w')
    } else {
      pipeline = pipeline.ensureAlpha()
    }
    return await (target.format === 'webp' ? pipeline.webp({ lossless: true }) : pipeline.png()).toBuffer()
  } catch {
    throw new AppError('PROVIDER_ERROR', 'The background-removal provider sent a result that is not a readable image.')
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Runs image work with at most IMAGE_CONCURRENCY images decoded at once. */
    imageGate: ReturnType<typeof createGate>
    /**
     * Runs one background removal, from its unread upload until its result has been sent, with at most
     * BG_REMOVAL_MAX_IN_FLIGHT under way (each holds its prepared image, then the provider's answer, then the
     * result until the client has it); the rest wait with their upload unread in the socket.
     */
    imagesInFlight: ReturnType<typeof createGate>
  }
}

/** Image intake: bounded decoding concurrency; libvips keeps no cache of decoded images between calls. */
export default fp(async function images (app) {
  sharp.cache(false)
  sharp.concurrency(1)
  app.decorate('imageGate', createGate(IMAGE_CONCURRENCY))
  // A call that cannot start within a provider attempt's time limit (at most 45 s) is told to come back, rather
  // than left waiting until the server gives up on receiving its upload and drops the connection.
  const waitMs = Math.min(app.config.BG_REMOVAL_TIMEOUT_MS, MAX_TURN_WAIT_MS)
  app.decorate('imagesInFlight', createGate(app.config.BG_REMOVAL_MAX_IN_FLIGHT, {
    ms: waitMs,
    error: () => new AppError('PROVIDER_UNAVAILABLE', 'Background removal is busy on this server: try again in a moment.', undefined, { 'retry-after': '5' })
  }))
}, { name: 'images', fastify: '5.x', dependencies: ['config'] })
