import Type from 'typebox'
import { isoTime } from './refs.js'

export const DataExport = Type.Object({
  userId: Type.String(),
  exportedAt: isoTime('When this export was made.'),
  sections: Type.Record(Type.String(), Type.Unknown(), {
    description: 'Everything kept about you, one section per part of the service (files, webhooks, and each feature\'s own), ' +
      'decrypted. Files are listed with their ids: read their bytes with GET /v1/ai/files/{fileId}. Signing secrets are not included.'
  })
}, {
  $id: 'DataExport',
  title: 'DataExport',
  additionalProperties: false,
  examples: [{
    userId: 'user-42',
    exportedAt: '2026-12-02T10:00:00.000Z',
    sections: {
      files: [{ id: '3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65', feature: 'virtual-staging', kind: 'result', contentType: 'image/png', size: 482113, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', createdAt: '2026-12-01T09:00:00.000Z' }],
      webhooks: []
    }
  }]
})

export const DataDeleted = Type.Object({
  userId: Type.String(),
  deleted: Type.Record(Type.String(), Type.Integer({ minimum: 0 }), { description: 'Records deleted per section. Usage-ledger rows (billing records, no content) are kept.' })
}, { $id: 'DataDeleted', title: 'DataDeleted', additionalProperties: false, examples: [{ userId: 'user-42', deleted: { files: 3, webhooks: 1 } }] })

export const userDataSchemas = [DataExport, DataDeleted]
