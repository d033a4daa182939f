import multipart, { type FastifyMultipartOptions } from '@fastify/multipart'
import fp from 'fastify-plugin'
import { MAX_IMAGE_BYTES } from '../images.js'

/** multipart/form-data for image uploads; routes read parts as streams and pass their own, tighter limits. */
export const multipartOptions: FastifyMultipartOptions = {
  limits: { fileSize: MAX_IMAGE_BYTES, files: 1, fields: 5, parts: 6, fieldSize: 1024, headerPairs: 100 }
}

export default fp(async function multipartConfig (app) {
  await app.register(multipart, multipartOptions)
}, { name: 'multipart', fastify: '5.x' })
