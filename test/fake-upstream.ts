import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import sharp from 'sharp'
import { completion, streamChunks } from './openai-fake.js'

/**
 * A local stand-in for the providers, over real HTTP on loopback: OpenAI's Chat Completions (JSON and SSE, in
 * the documented shapes of test/openai-fake.ts) and remove.bg (`POST /v1.0/removebg`, which echoes the uploaded
 * image as the result). `POST /_control` tells what it saw (counts, the last chat body) and sets how it behaves: `firstChunkDelayMs` before a stream's first chunk,
 * and `hold`, which keeps every stream open after its first delta until `{"release": true}` (or a count).
 * `fault` makes the next `faultTimes` calls fail one way (a status with or without Retry-After, no first byte, a
 * stall or a reset in the middle of the body, an unreadable or wrong-typed body, an oversized one).
 * `bench/upstream-process.ts` runs it as a process of its own for the benchmark; tests start it in-process.
 */
export type Fault =
  | { kind: 'status', status: number, retryAfter?: string }
  | { kind: 'no-first-byte' | 'stall' | 'reset' | 'malformed' | 'wrong-type' | 'oversized' }
export interface Behaviour {
  firstChunkDelayMs: number
  hold: boolean
  /** What goes wrong, for the next `faultTimes` calls (then it answers normally again). */
  fault: Fault | null
  faultTimes: number
  /** How long an image edit takes (the benchmark's 5 s). */
  editDelayMs: number
}
type Shape = 'json' | 'sse' | 'png'

/** remove.bg's largest answer the service reads is 64 MB: one more. */
const OVERSIZED_MB = 65

const REPLY = 'Turn on output sharpening in the Export panel and raise the JPEG quality.'
const SUGGESTION = { settingId: 'export.sharpening', value: 'high', reason: 'Sharper exports.' }
const DELTAS = REPLY.match(/.{1,12}(\s|$)/g) ?? [REPLY]
/** An Images edit answer in the documented shape: a 1536×1024 JPEG and the token usage, text and image apart. */
const EDIT_REPLY = sharp({ create: { width: 1536, height: 1024, channels: 3, background: '#a08060' } }).jpeg().toBuffer().then((jpeg) => JSON.stringify({
  created: 1_796_000_000,
  data: [{ b64_json: jpeg.toString('base64') }],
  output_format: 'jpeg',
  quality: 'medium',
  size: '1536x1024',
  usage: { input_tokens: 1500, input_tokens_details: { text_tokens: 300, image_tokens: 1200 }, output_tokens: 1584, total_tokens: 3084 }
}))
const JSON_REPLY = JSON.stringify(completion(REPLY, [SUGGESTION], { prompt_tokens: 950, completion_tokens: 40 }))
const SSE_FRAMES = streamChunks(DELTAS, [SUGGESTION], { prompt_tokens: 950, completion_tokens: 40 }).map((c) => `data: ${JSON.stringify(c)}\n\n`)
/** The first frame is the assistant role with empty content; the reply's first word is the frame after it. */
const FIRST_CONTENT_FRAME = 1

async function body (req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

const closed = (res: ServerResponse) => new Promise<void>((resolve) => {
  if (res.destroyed) resolve()
  else res.once('close', () => resolve())
})

/** Answers with `fault` in the shape of the endpoint. */
async function injectFault (fault: Fault, res: ServerResponse, shape: Shape, image: Buffer = Buffer.alloc(0)) {
  const type = { json: 'application/json', sse: 'text/event-stream; charset=utf-8', png: 'image/png' }[shape]
  const partial = { json: JSON_REPLY.slice(0, 40), sse: SSE_FRAMES.slice(0, FIRST_CONTENT_FRAME + 1).join(''), png: image.subarray(0, 1000) }[shape]
  switch (fault.kind) {
    case 'status': {
      const errorBody = shape === 'png'
        ? { errors: [{ title: 'Injected failure', code: 'injected' }] }
        : { error: { message: 'Injected failure', type: fault.status === 429 ? 'rate_limit_exceeded' : 'server_error', param: null, code: null } }
      res.writeHead(fault.status, { 'content-type': 'application/json', ...(fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter }) })
      res.end(JSON.stringify(errorBody))
      return
    }
    case 'no-first-byte':
      await closed(res)
      return
    case 'stall':
    case 'reset':
      res.writeHead(200, { 'content-type': type })
      res.write(partial)
      if (fault.kind === 'reset') setTimeout(() => res.socket?.destroy(), 20)
      await closed(res)
      return
    case 'malformed':
      res.writeHead(200, { 'content-type': type }).end(shape === 'sse' ? `${SSE_FRAMES[0] ?? ''}data: {not json\n\n` : 'not json, not an image {')
      return
    case 'wrong-type':
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>502 Bad Gateway</body></html>')
      return
    case 'oversized': {
      res.writeHead(200, { 'content-type': type })
      const chunk = Buffer.alloc(1024 * 1024, 1)
      for (let i = 0; i < OVERSIZED_MB && !res.destroyed; i++) {
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
      }
      res.end()
    }
  }
}

export function createFakeUpstream () {
  const behaviour: Behaviour = { firstChunkDelayMs: 0, hold: false, fault: null, faultTimes: 0, editDelayMs: 5000 }
  /** The fault of this call, if any is left to inject. */
  const takeFault = (): Fault | null => {
    if (behaviour.fault === null || behaviour.faultTimes <= 0) return null
    behaviour.faultTimes--
    stats.faults++
    return behaviour.fault
  }
  const held: Array<() => void> = []
  const stats = { chat: 0, streams: 0, removebg: 0, edits: 0, faults: 0 }
  let lastChatBody = ''

  async function chat (req: IncomingMessage, res: ServerResponse) {
    lastChatBody = (await body(req)).toString('utf8')
    const request = JSON.parse(lastChatBody) as { stream?: boolean }
    stats.chat++
    const fault = takeFault()
    if (fault !== null) {
      await injectFault(fault, res, request.stream === true ? 'sse' : 'json')
      return
    }
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
    const fault = takeFault()
    if (fault !== null) {
      await injectFault(fault, res, 'png', bytes)
      return
    }
    res.writeHead(200, { 'content-type': 'image/png', 'x-credits-charged': '1' }).end(bytes)
  }

  /** OpenAI Images edit (`POST /v1/images/edits`, multipart): after `editDelayMs`, one JPEG in `data[].b64_json` with usage. */
  async function edit (req: IncomingMessage, res: ServerResponse) {
    const form = await new Request('http://upstream/v1/images/edits', {
      method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body: await body(req)
    }).formData()
    stats.edits++
    if (!(form.get('image') instanceof Blob)) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'image is required', type: 'invalid_request_error', param: 'image', code: null } }))
      return
    }
    await new Promise((resolve) => setTimeout(resolve, behaviour.editDelayMs))
    res.writeHead(200, { 'content-type': 'application/json' }).end(await EDIT_REPLY)
  }

  async function control (req: IncomingMessage, res: ServerResponse) {
    const change = JSON.parse((await body(req)).toString('utf8') || '{}') as Partial<Behaviour> & { release?: boolean | number }
    Object.assign(behaviour, Object.fromEntries(Object.entries(change).filter(([key]) => key in behaviour)))
    // `release`: true lets every held stream go on, a number the oldest that many.
    if (change.release !== undefined && change.release !== false) {
      for (const resume of held.splice(0, change.release === true ? held.length : change.release)) resume()
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ behaviour, held: held.length, stats, lastChatBody }))
  }

  // Idle connections stay open longer than a slow answer takes, as real vendors' do (Node's default is 5 s).
  return createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const route = `${req.method ?? ''} ${req.url ?? ''}`
    const handler = route === 'POST /v1/chat/completions'
      ? chat
      : route === 'POST /v1.0/removebg' ? removebg : route === 'POST /v1/images/edits' ? edit : route === 'POST /_control' ? control : undefined
    if (handler === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}')
      return
    }
    handler(req, res).catch(() => { if (!res.headersSent) res.writeHead(500).end(); else res.destroy() })
  })
}
