import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { AppError } from '../../../plugins/errors.js'
import { UserId } from '../../../schemas/admin.js'
import { errorResponses } from '../../../schemas/errors.js'
import { JobList, JobSummary, JobsQuery, RekeyResult } from '../../../schemas/jobs.js'
import { ref } from '../../../schemas/refs.js'
import { DataDeleted } from '../../../schemas/user-data.js'

const admin = { config: { auth: 'admin' as const }, tags: ['admin'], security: [{ adminToken: [] }] }

/** The operator's side of the platform: deletion requests from the portal, the job queue, key rotation. */
const platform: FastifyPluginAsyncTypebox = async (app) => {
  app.delete('/users/:userId/data', {
    config: admin.config,
    schema: {
      operationId: 'deleteUserData',
      summary: 'Delete a user\'s data (a deletion request from the portal)',
      description: 'The same as the user\'s own DELETE /v1/ai/me/data: every section deleted for real, ledger rows kept.',
      tags: admin.tags,
      security: admin.security,
      params: Type.Object({ userId: UserId }),
      response: { 200: ref(DataDeleted), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'STORAGE_UNAVAILABLE') }
    }
  }, async (request) => {
    const { userId } = request.params
    const deleted = await app.userData.delete(userId)
    await app.audit.record({ actor: 'admin', action: 'user-data.deleted', target: `user:${userId}`, outcome: 'ok', requestId: request.id, details: { deleted } })
    return { userId, deleted }
  })

  app.get('/jobs', {
    config: admin.config,
    schema: {
      operationId: 'listJobs',
      summary: 'List jobs',
      description: 'Newest first, filtered by queue and state: states, attempts and error codes, never a job\'s data.',
      tags: admin.tags,
      security: admin.security,
      querystring: JobsQuery,
      response: { 200: ref(JobList), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request) => ({ data: await app.jobs.list(request.query) }))

  app.post('/jobs/:jobId/retry', {
    config: admin.config,
    schema: {
      operationId: 'retryJob',
      summary: 'Retry a failed job',
      description: 'Puts a failed job back in its queue. Only failed jobs: anything else is CONFLICT.',
      tags: admin.tags,
      security: admin.security,
      params: Type.Object({ jobId: Type.String({ format: 'uuid' }) }),
      response: { 200: ref(JobSummary), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'NOT_FOUND', 'CONFLICT') }
    }
  }, async (request) => {
    const job = await app.jobs.retry(request.params.jobId)
    if (job === null) throw new AppError('NOT_FOUND', 'No such job.')
    if (job === false) throw new AppError('CONFLICT', 'Only a failed job can be retried.')
    await app.audit.record({ actor: 'admin', action: 'job.retried', target: `job:${job.id}`, outcome: 'ok', requestId: request.id, details: { queue: job.queue } })
    return job
  })

  app.post('/content/rekey', {
    config: admin.config,
    schema: {
      operationId: 'rekeyContent',
      summary: 'Re-encrypt stored content under the first key of CONTENT_KEYS',
      description: 'After a new key was put first in CONTENT_KEYS on every instance: re-encrypts every row still under an older ' +
        'key, while the service serves. When it reports nothing left, the old key can be taken out.',
      tags: admin.tags,
      security: admin.security,
      response: { 200: ref(RekeyResult), ...errorResponses('UNAUTHENTICATED') }
    }
  }, async (request) => {
    const rekeyed = await app.contentCrypto.rekey(app.store)
    await app.audit.record({ actor: 'admin', action: 'content.rekeyed', target: 'content', outcome: 'ok', requestId: request.id, details: { keyId: app.contentCrypto.primaryKeyId, rekeyed } })
    return { keyId: app.contentCrypto.primaryKeyId, rekeyed }
  })
}

export default platform
