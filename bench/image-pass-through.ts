import multipart from '@fastify/multipart'
import Fastify from 'fastify'

/**
 * The least a background-removal proxy over the global fetch does, for scenario 4's floor: read the multipart
 * upload (Fastify and @fastify/multipart, as the service), send the file on to remove.bg as a FormData over the global
 * fetch, answer its bytes. No authentication, quota, image checks, metadata stripping, fingerprint or log line.
 * UPSTREAM is the fake upstream's base URL; it listens on 127.0.0.1 at the port given as its argument.
 */
const upstream = process.env.UPSTREAM as string
const app = Fastify()
await app.register(multipart, { limits: { fileSize: 12 * 1024 * 1024, files: 1 } })
app.get('/health', async () => ({ ok: true }))
app.post('/remove', async (request, reply) => {
  let image: Buffer | undefined
  for await (const part of request.parts()) if (part.type === 'file') image = await part.toBuffer()
  const form = new FormData()
  form.append('image_file', new Blob([image as Buffer<ArrayBuffer>], { type: 'image/png' }), 'image.png')
  form.append('size', 'auto')
  const res = await fetch(`${upstream}/v1.0/removebg`, { method: 'POST', body: form, headers: { 'x-api-key': 'bench-removebg-key' } })
  return reply.code(res.status).type('image/png').send(Buffer.from(await res.arrayBuffer()))
})
await app.listen({ host: '127.0.0.1', port: Number(process.argv[2]) })
