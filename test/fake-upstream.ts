import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { completion, streamChunks } from './openai-fake.js'

/**
 * A local stand-in for the providers, over real HTTP on loopback: OpenAI's Chat Completions (JSON and SSE, in
 * the documented shapes of test/openai-fake.ts) and remove.bg (`POST /v1.0/removebg`, which echoes the uploaded
 * image as the result). `POST /_control` tells what it saw (counts, the last chat body) and sets how it behaves: `firstChunkDelayMs` before a stream's first chunk,
 * and `hold`, which keeps every stream open after its first delta until `{"release": true}` (or a count).
 * `bench/upstream-process.ts` runs it as a process of its own for the benchmark; tests start it in-process.
 */
export interface Behaviour { firstChunkDelayMs: number, hold: boolean }

const REPLY = 'Turn on output sharpening in the Export panel and raise the JPEG quality.'
const SUGGESTION = { settingId: 'export.sharpening', value: 'high', reason: 'Sharper exports.' }
const DELTAS = REPLY.match(/.{1,12}(\s|$)/g) ?? [REPLY]
const JSON_REPLY = JSON.stringify(completion(REPLY, [SUGGESTION], { prompt_tokens: 950, completion_tokens: 40 }))
const SSE_FRAMES = streamChunks(DELTAS, [SUGGESTION], { prompt_tokens: 950, completion_tokens: 40 }).map((c) => `data: ${JSON.stringify(c)}\n\n`)
/** The first frame is the assistant role with empty content; the reply's first word is the frame after it. */
const FIRST_CONTENT_FRAME = 1

async function body (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export function createFakeUpstream () {
  const behaviour: Behaviour = { firstChunkDelayMs: 0, hold: false }
  const held: Array<() => void> = []
  const stats = { chat: 0, streams: 0, removebg: 0 }
  let lastChatBody = ''

  async function chat (req: IncomingMessage, res: ServerResponse) {
    lastChatBody = (await body(req)).toString('utf8')
    const request = JSON.parse(lastChatBody) as { stream?: boolean }
    stats.chat++
    if (request.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON_REPLY)
      return
    }
    stats.streams++
    if (behaviour.firstChunkDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, behaviour.firstChunkDelayMs))
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' })
    for (const [i, frame] of SSE_FRAMES.entries()) {
      if (res.destroyed) return
      res.write(frame)
      if (i === FIRST_CONTENT_FRAME && behaviour.hold) await new Promise<void>((resolve) => held.push(resolve))
      else await new Promise((resolve) => setImmediate(resolve))
    }
    res.end('data: [DONE]\n\n')
  }

  async function removebg (req: IncomingMessage, res: ServerResponse) {
    const form = await new Request('http://upstream/v1.0/removebg', {
      method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body: await body(req)
    }).formData()
    const image = form.get('image_file')
    stats.removebg++
    if (!(image instanceof Blob)) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ title: 'No image given', code: 'missing_source' }] }))
      return
    }
    const bytes = Buffer.from(await image.arrayBuffer())
    res.writeHead(200, { 'content-type': 'image/png', 'x-credits-charged': '1' }).end(bytes)
  }

  async function control (req: IncomingMessage, res: ServerResponse) {
    const change = JSON.parse((await body(req)).toString('utf8') || '{}') as Partial<Behaviour> & { release?: boolean | number }
    if (change.firstChunkDelayMs !== undefined) behaviour.firstChunkDelayMs = change.firstChunkDelayMs
    if (change.hold !== undefined) behaviour.hold = change.hold
    // `release`: true lets every held stream go on, a number the oldest that many.
    if (change.release !== undefined && change.release !== false) {
      for (const resume of held.splice(0, change.release === true ? held.length : change.release)) resume()
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ behaviour, held: held.length, stats, lastChatBody }))
  }

  return createServer((req, res) => {
    const route = `${req.method ?? ''} ${req.url ?? ''}`
    const handler = route === 'POST /v1/chat/completions'
      ? chat
      : route === 'POST /v1.0/removebg' ? removebg : route === 'POST /_control' ? control : undefined
    if (handler === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}')
      return
    }
    handler(req, res).catch(() => { if (!res.headersSent) res.writeHead(500).end(); else res.destroy() })
  })
}
