import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import type { Output, PreparedImage } from '../plugins/images.js'
import { ProviderError } from './provider-error.js'
import { DEFAULT_RETRY_POLICY, retryAfterMs, withRetry, type RetryPolicy } from './retry.js'
import { createSandboxBackground } from './sandbox-background.js'

/** A provider's result larger than this is refused (a 25-megapixel RGBA PNG stays well under it). */
export const MAX_RESULT_BYTES = 64 * 1024 * 1024

export interface BackgroundRemover {
  readonly name: 'removebg' | 'rembg' | 'sandbox'
  /** The image without its background (PNG with alpha), or the mask when `output` is `mask`. */
  remove: (image: PreparedImage, opts: { output: Output, signal: AbortSignal }) => Promise<Buffer>
}

/** Reads a body up to `max` bytes, giving up as soon as `signal` aborts, whatever the transport does. */
export async function readCapped (res: Response, max: number, signal: AbortSignal, provider: string): Promise<Buffer> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  signal.throwIfAborted()
  // The listener goes when the read ends: one left on a composite signal (AbortSignal.any) keeps the signal,
  // and with it these chunks, alive for as long as its sources might still abort, even after they are gone.
  let stop!: (reason: unknown) => void
  const stopped = new Promise<never>((_resolve, reject) => { stop = reject })
  stopped.catch(() => {})
  const onAbort = () => stop(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  // With a Content-Length within the limit the body goes straight into one buffer of that size, so the chunks
  // are garbage as soon as they are copied (no second, concatenated copy at the end).
  const declared = Number(res.headers.get('content-length') ?? NaN)
  let body = Number.isSafeInteger(declared) && declared >= 0 && declared <= max ? Buffer.allocUnsafe(declared) : Buffer.alloc(0)
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), stopped])
      if (done) break
      if (size + value.byteLength > max) throw new ProviderError('PROVIDER_ERROR', `The ${provider} result is larger than ${max} bytes.`)
      if (chunks.length === 0 && size + value.byteLength <= body.length) body.set(value, size)
      else {
        // More than declared (or nothing declared): keep the chunks and join them at the end.
        if (chunks.length === 0 && size > 0) chunks.push(body.subarray(0, size))
        chunks.push(value)
      }
      size += value.byteLength
    }
  } catch (err) {
    reader.cancel().catch(() => {})
    throw err
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
  if (chunks.length > 0) body = Buffer.concat(chunks)
  // Fewer bytes than declared: the part that came.
  return body.subarray(0, size)
}

interface HttpCall { url: string, form: FormData, headers?: Record<string, string> }
interface HttpResult { status: number, headers: Headers, body: Buffer }

/**
 * One provider call over the global fetch with the shared retry policy: each attempt has its own timeout;
 * `classify` turns a non-2xx answer into the contract's error (retryable or not).
 */
export function createHttpCaller (opts: { provider: string, timeoutMs: number, retry?: RetryPolicy, log: FastifyBaseLogger, maxResultBytes?: number }) {
  const policy = opts.retry ?? DEFAULT_RETRY_POLICY
  return async function call (request: () => HttpCall, classify: (res: HttpResult) => ProviderError, signal: AbortSignal): Promise<Buffer> {
    return withRetry(async () => {
      const { url, form, headers } = request()
      const timeout = AbortSignal.timeout(opts.timeoutMs)
      const attempt = AbortSignal.any([signal, timeout])
      try {
        const res = await fetch(url, { method: 'POST', body: form, headers, signal: attempt })
        const body = await readCapped(res, opts.maxResultBytes ?? MAX_RESULT_BYTES, attempt, opts.provider)
        if (res.ok) return body
        throw classify({ status: res.status, headers: res.headers, body })
      } catch (err) {
        if (err instanceof ProviderError) throw err
        if (signal.aborted) throw new ProviderError('PROVIDER_ERROR', 'The call was cancelled by the client.')
        if (timeout.aborted) throw new ProviderError('PROVIDER_TIMEOUT', `${opts.provider} did not answer within the time limit.`)
        throw new ProviderError('PROVIDER_UNAVAILABLE', `${opts.provider} cannot be reached.`, { retry: true })
      }
    }, (err) => (err as ProviderError).retry, {
      policy,
      signal,
      onRetry: (attemptNo, delayMs, err) => opts.log.warn({ provider: opts.provider, attempt: attemptNo, delayMs, code: (err as ProviderError).code }, 'provider call retried')
    })
  }
}

/** 429 and 5xx are worth another attempt; the rest is final. */
function statusError (provider: string, res: HttpResult): ProviderError {
  if (res.status === 429) {
    const after = retryAfterMs(res.headers)
    return new ProviderError('PROVIDER_UNAVAILABLE', `${provider} is busy: retry later.`, { retry: true, afterMs: after },
      after === undefined ? {} : { 'retry-after': String(Math.max(1, Math.ceil(after / 1000))) })
  }
  if (res.status >= 500) return new ProviderError('PROVIDER_ERROR', `${provider} failed (HTTP ${res.status}).`, { retry: true, afterMs: retryAfterMs(res.headers) })
  return new ProviderError('PROVIDER_ERROR', `${provider} refused the request (HTTP ${res.status}).`)
}

/** remove.bg: `POST /v1.0/removebg`, multipart `image_file`, `X-Api-Key`; errors are `{"errors":[{"title","code"}]}`. */
export function createRemoveBg (opts: { apiKey: string, baseUrl: string, timeoutMs: number, retry?: RetryPolicy, log: FastifyBaseLogger }): BackgroundRemover {
  const call = createHttpCaller({ provider: 'removebg', timeoutMs: opts.timeoutMs, retry: opts.retry, log: opts.log })
  const url = `${opts.baseUrl.replace(/\/+$/, '')}/v1.0/removebg`
  return {
    name: 'removebg',
    async remove (image, { output, signal }) {
      return call(() => {
        const form = new FormData()
        form.append('image_file', image.blob, `image.${image.type}`)
        form.append('size', 'auto')
        form.append('format', 'png')
        form.append('channels', output === 'mask' ? 'alpha' : 'rgba')
        return { url, form, headers: { 'x-api-key': opts.apiKey, accept: 'image/png' } }
      }, (res) => {
        let code: string | undefined
        try {
          code = (JSON.parse(res.body.toString('utf8')) as { errors?: Array<{ code?: string }> }).errors?.[0]?.code
        } catch {}
        if (res.status === 400 && code === 'unknown_foreground') {
          return new ProviderError('CONTENT_REJECTED', 'No foreground could be found in this image: pick an image with a clear subject.')
        }
        if (res.status === 402 || res.status === 401 || res.status === 403) {
          // The operator has to act (credits or key); the client only learns that the provider is unavailable.
          opts.log.error({ provider: 'removebg', status: res.status, code }, 'remove.bg refused the account (credits or REMOVEBG_API_KEY): it is skipped until fixed')
          return new ProviderError('PROVIDER_UNAVAILABLE', 'remove.bg is not available right now.')
        }
        return statusError('removebg', res)
      }, signal)
    }
  }
}

/** The self-hosted rembg server (`rembg s`): `POST /api/remove`, multipart `file`; `om=true` returns the mask. */
export function createRembg (opts: { url: string, timeoutMs: number, retry?: RetryPolicy, log: FastifyBaseLogger }): BackgroundRemover {
  const call = createHttpCaller({ provider: 'rembg', timeoutMs: opts.timeoutMs, retry: opts.retry, log: opts.log })
  const url = `${opts.url.replace(/\/+$/, '')}/api/remove`
  return {
    name: 'rembg',
    async remove (image, { output, signal }) {
      return call(() => {
        const form = new FormData()
        form.append('file', image.blob, `image.${image.type}`)
        if (output === 'mask') form.append('om', 'true')
        return { url, form }
      }, (res) => statusError('rembg', res), signal)
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    backgroundRemoval: {
      /** Configured live providers in BG_REMOVAL_PROVIDERS order; empty when none is set up. */
      live: BackgroundRemover[]
      sandbox: BackgroundRemover
    }
  }
}

/** Background-removal providers from BG_REMOVAL_* variables; a listed provider without its key or URL is left out. */
export default fp(async function backgroundRemoval (app) {
  const { BG_REMOVAL_PROVIDERS, REMOVEBG_API_KEY, REMOVEBG_BASE_URL, REMBG_URL, BG_REMOVAL_TIMEOUT_MS } = app.config
  const live: BackgroundRemover[] = []
  for (const name of BG_REMOVAL_PROVIDERS.split(',')) {
    if (name === 'removebg' && REMOVEBG_API_KEY !== undefined) {
      live.push(createRemoveBg({ apiKey: REMOVEBG_API_KEY, baseUrl: REMOVEBG_BASE_URL, timeoutMs: BG_REMOVAL_TIMEOUT_MS, log: app.log }))
    } else if (name === 'rembg' && REMBG_URL !== undefined) {
      live.push(createRembg({ url: REMBG_URL, timeoutMs: BG_REMOVAL_TIMEOUT_MS, log: app.log }))
    }
  }
  app.decorate('backgroundRemoval', { live, sandbox: createSandboxBackground(app.imageGate) })
}, { name: 'background-removal', fastify: '5.x', dependencies: ['config', 'images'] })
