import Type from 'typebox'

/** A stored file's id (a UUID), in the path of `GET /v1/ai/files/{fileId}`. */
export const FileId = Type.String({ format: 'uuid', description: 'Id of a stored file.', examples: ['3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65'] })

export const FileLinkQuery = Type.Object({
  expires: Type.Optional(Type.Integer({ minimum: 0, maximum: 99_999_999_999, description: 'Signed link: when it stops working (Unix seconds).' })),
  signature: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'Signed link: its HMAC-SHA-256 (base64url).' }))
}, { additionalProperties: false })
