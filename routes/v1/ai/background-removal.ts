import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Multipart } from '@fastify/multipart'
import { finished as sent } from 'node:stream'
import Type from 'typebox'
import { AppError, invalidBody } from '../../../plugins/errors.js'
import { finishImage, IMAGE_MIME, MAX_IMAGE_BYTES, prepareImage, type Format, type Output } from '../../../plugins/images.js'
import type { BackgroundRemover } from '../../../providers/background-removal.js'
import { firstThatServes } from '../../../providers/fallback.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { costMicroUsd } from '../../../plugins/metering.js'
import { toCents } from '../../../plugins/money.js'

const FIELDS = { output: ['cutout', 'mask'], format: ['png', 'webp'] } as const
/** Multipart limits, enforced while the upload streams in: one file, the two small fields, nothing else. */
const MULTIPART_LIMITS = { fileSize: MAX_IMAGE_BYTES, files: 1, fields: 2, parts: 3, fieldSize: 16, headerPairs: 20 }

const invalidField = (path: string, message: string) => invalidBody({ path, message })

/** Reads the multipart body: the `image` file (buffered up to the limit) and the optional fields. */
async function readUpload (parts: AsyncIterableIterator<Multipart>) {
  let image: Buffer | undefined
  const options: { output: Output, format: Format } = { output: 'cutout', format: 'png' }
  try {
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== 'image') throw invalidField(`/${part.fieldname}`, 'the only file field is image')
        image = await part.toBuffer()
      } else {
        const allowed = (FIELDS as Record<string, readonly string[]>)[part.fieldname]
        if (allowed === undefined) throw invalidField(`/${part.fieldname}`, 'is not a field of this request (image, output, format)')
        if (!allowed.includes(String(part.value))) throw invalidField(`/${part.fieldname}`, `must be one of ${allowed.join(', ')}`)
        Object.assign(options, { [part.fieldname]: part.value })
      }
    }
  } catch (err) {
    throw uploadError(err as Error & { code?: string })
  }
  if (image === undefined) throw invalidField('/image', 'is required: the image file')
  return { image, ...options }
}

/** The multipart limits a request over the one image and two fields runs into. */
const PART_LIMIT_CODES = new Set(['FST_FILES_LIMIT', 'FST_PARTS_LIMIT', 'FST_FIELDS_LIMIT'])

/**
 * What a failed read means for the client: our own errors pass as they are, the file limit names its size,
 * too many parts name the fields there are, and anything else is a body that is malformed or ended early.
 */
function uploadError (err: Error & { code?: string }): Error {
  if (err instanceof AppError) return err
  if (err.code === 'FST_REQ_FILE_TOO_LARGE') {
    return new AppError('PAYLOAD_TOO_LARGE', `The image is larger than ${MAX_IMAGE_BYTES / (1024 * 1024)} MB: pick a smaller file or scale it down.`, { maxBytes: MAX_IMAGE_BYTES })
  }
  if (PART_LIMIT_CODES.has(String(err.code))) return invalidField('/', 'has too many parts: send one file `image` and at most the fields output and format')
  return new AppError('VALIDATION_ERROR', 'The multipart body is malformed or ended before it was complete: send the image again.')
}

const backgroundRemoval: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/background-removal', {
    config: { auth: 'ai-token', feature: 'background-removal' },
    // The body is read part by part with its own limits; the schema below documents it.
    validatorCompiler: () => () => true,
    schema: {
      operationId: 'removeBackground',
      summary: 'Remove the background of one image',
      description: 'Multipart upload of one image (PNG, JPEG or WebP by its bytes; at most 12 MB and 25 megapixels). ' +
        'Orientation is applied and EXIF, XMP and GPS metadata are stripped before the image leaves the server. ' +
        'Returns the image bytes: a cut-out with transparency, or a single-channel mask, as PNG or lossless WebP, ' +
        'with the input\'s (oriented) dimensions. `AI-Provider` names the provider (`sandbox` for test-mode tokens); ' +
        'one image of quota is used per success, none on failure.',
      tags: ['background-removal'],
      security: [{ aiToken: [] }],
      consumes: ['multipart/form-data'],
      body: Type.Object({
        image: Type.String({ format: 'binary', description: 'The image: PNG, JPEG or WebP, ≤ 12 MB, ≤ 25 megapixels.' }),
        output: Type.Optional(Type.Union([Type.Literal('cutout'), Type.Literal('mask')], { default: 'cutout', description: 'A cut-out, or the mask only.' })),
        format: Type.Optional(Type.Union([Type.Literal('png'), Type.Literal('webp')], { default: 'png', description: 'Format of the result.' }))
      }, { required: ['image'] }),
      response: {
        200: {
          description: 'The result image. Headers: AI-Provider, X-Quota-Limit, X-Quota-Remaining, X-Quota-Reset.',
          content: {
            'image/png': { schema: Type.String({ format: 'binary' }) },
            'image/webp': { schema: Type.String({ format: 'binary' }) }
          }
        },
        ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'QUOTA_EXCEEDED', 'PAYLOAD_TOO_LARGE',
          'UNSUPPORTED_MEDIA_TYPE', 'INVALID_IMAGE', 'IMAGE_TOO_LARGE', 'CONTENT_REJECTED', 'RATE_LIMITED', 'PROVIDER_ERROR',
          'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT')
      }
    }
  }, async (request, reply) => {
    const principal = request.principal as Principal
    // Test-mode tokens only ever reach the sandbox; live ones only real providers.
    const providers = principal.mode === 'test' ? [app.backgroundRemoval.sandbox] : app.backgroundRemoval.live
    if (!request.isMultipart()) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send the image as multipart/form-data with the file in the field `image`.')
    if (providers.length === 0) {
      throw new AppError('PROVIDER_NOT_CONFIGURED', 'Background removal is not set up on this server (no REMOVEBG_API_KEY or REMBG_URL): use a test-mode key, or ask the operator.')
    }
    // Reading waits for a slot too: an upload not yet read stays in the socket's buffers, not in memory.
    return app.imagesInFlight(() => removeBackground(request, reply, principal, providers))
  })

  /** One call, from its unread upload to the result. */
  async function removeBackground (request: FastifyRequest, reply: FastifyReply, principal: Principal, providers: BackgroundRemover[]) {
    // Only the prepared image leaves this step: the upload's bytes are garbage once it is re-encoded.
    const { upload, image } = await app.imageGate(async () => {
      const { image: bytes, ...fields } = await readUpload(request.parts({ limits: MULTIPART_LIMITS }))
      const prepared = await prepareImage(bytes)
      request.log.info({ bytes: bytes.length, type: prepared.type, width: prepared.width, height: prepared.height, fingerprint: app.hash.content(bytes) }, 'image accepted')
      return { upload: fields, image: prepared }
    })

    // The dearest provider of the chain is held (the call may end on a fallback); the one used is charged.
    const costs = providers.map((p) => costMicroUsd(app.entitlements.plans.prices, { provider: p.name, unitsIn: 1, unitsOut: 1 }))
    const metered = await app.meter(request, reply, 1, { costMicroUsd: Math.max(0, ...costs) })
    const signal = app.readiness.callSignal(reply.raw)
    let removed: { result: Buffer, used: BackgroundRemover }
    try {
      const observe = (vendor: string, outcome: string, seconds: number) => app.metrics.providerCall({ feature: 'background-removal', mode: principal.mode, vendor, outcome, seconds })
      removed = await firstThatServes(providers, async (p) => p.remove(image, { output: upload.output, signal }), { signal, log: request.log, what: 'background-removal', observe })
    } catch (err) {
      await metered.release()
      throw app.readiness.failure(err as Error)
    }
    const { result, used } = removed
    let finished: Buffer
    try {
      finished = await app.imageGate(() => finishImage(result, { width: image.width, height: image.height, output: upload.output, format: upload.format }))
    } catch (err) {
      await metered.release()
      throw err
    }
    const charged = await metered.settle({ provider: used.name, units: 1, unitsIn: 1, unitsOut: 1 })
    // A binary answer has no JSON for its cost: it is in headers.
    reply.header('ai-provider', used.name).header('ai-cost-micro-usd', String(charged)).header('ai-cost-cents', String(toCents(charged)))
      .type(IMAGE_MIME[upload.format])
    // The contract documents the binary body as a string (format: binary); the payload is the bytes.
    reply.send(finished as unknown as string)
    // The call keeps its turn until the result has gone out (or the client has gone): a client that reads slowly
    // still holds the result in memory, and the bound is there for that memory.
    await new Promise<void>((resolve) => { sent(reply.raw, () => { resolve() }) })
    return reply
  }
}

export default backgroundRemoval
