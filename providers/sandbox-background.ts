import sharp from 'sharp'
import type { BackgroundRemover } from './background-removal.js'

/** The flood fill runs on a copy of at most this many pixels; the mask is scaled back to the image. */
const SANDBOX_MAX_PIXELS = 1_000_000
/** A pixel belongs to the background when no channel differs from the border colour by more than this. */
const TOLERANCE = 40

/**
 * The test-mode provider: deterministic and offline. Everything connected to the image border that has the
 * colour of the top-left pixel is background; the rest is the subject.
 */
export function createSandboxBackground (gate: <T>(work: () => Promise<T>) => Promise<T>): BackgroundRemover {
  return {
    name: 'sandbox',
    // Decoding runs in the server's image slots, like intake: the sandbox works on pixels where a real provider waits on the network.
    remove: async (image, { output }) => gate(async () => {
      const { width, height } = image
      const bytes = Buffer.from(await image.blob.arrayBuffer())
      const scale = Math.min(1, Math.sqrt(SANDBOX_MAX_PIXELS / (width * height)))
      const w = Math.max(1, Math.round(width * scale))
      const h = Math.max(1, Math.round(height * scale))
      const rgb = await sharp(bytes).resize(w, h, { fit: 'fill' }).removeAlpha().raw().toBuffer()
      const mask = new Uint8Array(w * h).fill(255)
      const near = (i: number) => Math.abs((rgb[i * 3] as number) - (rgb[0] as number)) <= TOLERANCE &&
        Math.abs((rgb[i * 3 + 1] as number) - (rgb[1] as number)) <= TOLERANCE &&
        Math.abs((rgb[i * 3 + 2] as number) - (rgb[2] as number)) <= TOLERANCE
      const stack: number[] = []
      const visit = (i: number) => { if (mask[i] === 255 && near(i)) { mask[i] = 0; stack.push(i) } }
      for (let x = 0; x < w; x++) { visit(x); visit((h - 1) * w + x) }
      for (let y = 0; y < h; y++) { visit(y * w); visit(y * w + w - 1) }
      while (stack.length > 0) {
        const i = stack.pop() as number
        const x = i % w
        if (x > 0) visit(i - 1)
        if (x < w - 1) visit(i + 1)
        if (i >= w) visit(i - w)
        if (i < w * (h - 1)) visit(i + w)
      }
      const alpha = await sharp(Buffer.from(mask), { raw: { width: w, height: h, channels: 1 } }).resize(width, height, { fit: 'fill' }).toColourspace('b-w').raw().toBuffer()
      if (output === 'mask') return sharp(alpha, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer()
      // Two steps: sharp would apply removeAlpha after joinChannel in one pipeline.
      const colour = await sharp(bytes).removeAlpha().toColourspace('srgb').raw().toBuffer()
      return sharp(colour, { raw: { width, height, channels: 3 } }).joinChannel(alpha, { raw: { width, height, channels: 1 } }).png().toBuffer()
    })
  }
}
