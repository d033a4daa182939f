import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { AppError } from '../../../plugins/errors.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'
import { StagingStyleList } from '../../../schemas/staging.js'

/** Preview images are public and cheap; an address may still not hammer them. */
export const PREVIEW_READS_PER_MINUTE = 600

/** /v1/ai/staging: the style catalog of virtual staging (SPEC §12). */
const staging: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/staging/styles', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'listStagingStyles',
      summary: 'The styles a room photo can be staged in',
      description: 'The active styles of the catalog in their order, each with a preview image served by this service. ' +
        'The instructions the image model gets for a style stay on the server.',
      tags: ['staging'],
      security: [{ aiToken: [] }],
      response: { 200: ref(StagingStyleList), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async () => ({ data: app.stagingStyles.list() }))

  app.get('/staging/styles/:id/preview.png', {
    config: { perAddressPerMinute: PREVIEW_READS_PER_MINUTE },
    schema: {
      operationId: 'getStagingStylePreview',
      summary: 'A style\'s preview image',
      description: `A PNG drawn from the style's colours, for a style picker; no credential needed (an \`<img src>\` loads it), cacheable for a day. At most ${PREVIEW_READS_PER_MINUTE} a minute per client address.`,
      tags: ['staging'],
      params: Type.Object({ id: Type.String({ pattern: '^[a-z][a-z0-9_]{1,39}$' }) }),
      response: {
        200: { description: 'The preview (PNG).', content: { 'image/png': { schema: Type.String({ format: 'binary' }) } } },
        ...errorResponses('VALIDATION_ERROR', 'NOT_FOUND', 'RATE_LIMITED')
      }
    }
  }, async (request, reply) => {
    const png = app.stagingStyles.preview(request.params.id)
    if (png === undefined) throw new AppError('NOT_FOUND', 'There is no such style.')
    return reply.type('image/png').header('cache-control', 'public, max-age=86400').header('x-content-type-options', 'nosniff')
      .send(await png as unknown as string)
  })
}

export default staging
