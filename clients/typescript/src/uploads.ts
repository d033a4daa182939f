import { openAsBlob } from 'node:fs'
import { basename, extname } from 'node:path'
import { Readable } from 'node:stream'

/** What an upload can come from: a file's path, bytes, a Blob/File, or a Node or web stream. */
export type UploadSource = string | Uint8Array | ArrayBuffer | Blob | Readable | ReadableStream<Uint8Array>

export interface UploadOptions {
  /** The file name sent (default: the path's base name, or `upload`). */
  filename?: string
  /** The media type sent (default: from the file name's extension; the service checks the bytes anyway). */
  type?: string
  /** The most a stream may hold (default 64 MiB): a longer one is refused before it fills memory. */
  maxBytes?: number
}

const TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.pdf': 'application/pdf',
  '.docx': 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  '.txt': 'text/plain',
  '.md': 'text/markdown'
}

const typeOf = (filename: string) => TYPES[extname(filename).toLowerCase()] ?? 'application/octet-stream'

/**
 * A File for a multipart field (`image`, `images`, `file`). A path is read lazily by the runtime (never whole
 * into memory before the request is sent); a stream is read into memory up to `maxBytes`, as the service's
 * uploads are at most tens of megabytes.
 */
export async function fileFrom (source: UploadSource, options: UploadOptions = {}): Promise<File> {
  if (typeof source === 'string') {
    const filename = options.filename ?? basename(source)
    const type = options.type ?? typeOf(filename)
    return new File([await openAsBlob(source, { type })], filename, { type })
  }
  const filename = options.filename ?? (source instanceof File ? source.name : 'upload')
  const type = options.type ?? (source instanceof Blob && source.type !== '' ? source.type : typeOf(filename))
  if (source instanceof Blob) return new File([source], filename, { type })
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return new File([source as Uint8Array<ArrayBuffer>], filename, { type })
  const maxBytes = options.maxBytes ?? 64 * 1024 * 1024
  const chunks: Uint8Array[] = []
  let size = 0
  const stream = source instanceof Readable ? source : Readable.fromWeb(source as never)
  for await (const chunk of stream) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Uint8Array
    size += bytes.byteLength
    if (size > maxBytes) {
      stream.destroy()
      throw new RangeError(`The upload stream is longer than ${maxBytes} bytes.`)
    }
    chunks.push(bytes)
  }
  return new File(chunks as Array<Uint8Array<ArrayBuffer>>, filename, { type })
}

/** The body serializer of the client: a body holding a Blob (or Blobs) is sent as multipart/form-data, any other as JSON. */
export function serializeBody (body: unknown): string | FormData {
  if (typeof body !== 'object' || body === null || !Object.values(body).some((value) => value instanceof Blob || (Array.isArray(value) && value.some((item) => item instanceof Blob)))) {
    return JSON.stringify(body)
  }
  const form = new FormData()
  for (const [name, value] of Object.entries(body)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === undefined) continue
      form.append(name, item instanceof Blob ? item : typeof item === 'object' ? JSON.stringify(item) : String(item))
    }
  }
  return form
}
