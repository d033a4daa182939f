/** The shapes shared by the document-extraction worker and its pool, and the text clean-up both apply. */

export type DocumentKind = 'pdf' | 'docx'

export interface ExtractTask {
  kind: DocumentKind
  bytes: Uint8Array
  maxPages: number
  maxChars: number
  zip: ZipLimits
}

export interface ZipLimits {
  maxEntries: number
  maxUncompressedBytes: number
  /** An entry may unpack to at most this many times its packed size (once it is larger than `ratioFloorBytes`). */
  maxRatio: number
  ratioFloorBytes: number
}

/** Why a document cannot be read, as `details.reason` of UNPROCESSABLE_DOCUMENT says it. */
export type UnreadableReason = 'encrypted' | 'no-text' | 'broken' | 'too-many-pages' | 'too-much-text' | 'zip-bomb' | 'not-docx'

export type ExtractResult =
  | { ok: true, text: string, pages: number | null }
  | { ok: false, reason: UnreadableReason, pages?: number }

/** Text as the scanners get it: no NUL or other control characters but line breaks and tabs, runs of blank lines closed up. */
export function tidy (text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, ' ').replace(/\r\n?/g, '\n').replace(/[ \t]+\n/g, '\n').replace(/\n{3,}/g, '\n\n').trim()
}
