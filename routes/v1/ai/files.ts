import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { AppError } from '../../../plugins/errors.js'
import { errorResponses } from '../../../schemas/errors.js'
import { FileId, FileLinkQuery } from '../../../schemas/files.js'
import type { Principal } from '../../../schemas/principal.js'

const notFound = () => new AppError('NOT_FOUND', 'No such file.')
/** Reads per client address and minute: a page of results loads many images, a scraper gets slowed down. */
export const FILE_READS_PER_MINUTE = 600

/** Stored files: read with the owner's AI token, or through a signed link that an `<img>` can load. */
const files: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/files/:fileId', {
    config: { perAddressPerMinute: FILE_READS_PER_MINUTE },
    schema: {
      operationId: 'getFile',
      summary: 'Read a stored file',
      description: 'The bytes of a file a feature stored for you (a staged photo, …), with its content type, length and ETag. ' +
        'Either with your AI token, or with no credential through a signed link (`?expires=…&signature=…`) as features ' +
        'return them: valid FILES_URL_TTL_SECONDS (1 hour), so an `<img src>` can load it. A changed link is UNAUTHENTICATED, ' +
        'an expired one TOKEN_EXPIRED; another user\'s file is NOT_FOUND. `If-None-Match` with the ETag answers 304. ' +
        `At most ${FILE_READS_PER_MINUTE} reads a minute per client address.`,
      tags: ['files'],
      security: [{ aiToken: [] }, {}],
      params: Type.Object({ fileId: FileId }),
      querystring: FileLinkQuery,
      response: {
        200: { description: 'The file. Headers: Content-Type, Content-Length, ETag, Cache-Control: private.', content: { '*/*': { schema: Type.String({ format: 'binary' }) } } },
        304: { description: 'Not modified: the ETag of If-None-Match is the file\'s.', type: 'null' },
        ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED', 'STORAGE_UNAVAILABLE')
      }
    }
  }, async (request, reply) => {
    const { expires, signature } = request.query
    let owner: string | null
    let maxAge: number
    if (signature !== undefined || expires !== undefined) {
      if (signature === undefined || expires === undefined) throw new AppError('UNAUTHENTICATED', 'A signed link needs both expires and signature.')
      maxAge = app.files.verifyLink(request.params.fileId, expires, signature).secondsLeft
      owner = null
    } else {
      await app.authenticate(request, reply, 'ai-token')
      owner = (request.principal as Principal).userId
      maxAge = 0
    }
    const found = await app.files.open(request.params.fileId, owner)
    if (found === null) throw notFound()
    const etag = `"${found.file.sha256}"`
    reply.header('etag', etag).header('cache-control', `private, max-age=${maxAge}`).header('x-content-type-options', 'nosniff')
    if (request.headers['if-none-match'] === etag) {
      found.body.destroy()
      return reply.code(304).send(null as never)
    }
    return reply.type(found.file.contentType).header('content-length', found.file.size).send(found.body as unknown as string)
  })
}

export default files
