import { setTimeout as sleep } from 'node:timers/promises'
import sharp from 'sharp'
import type { PreparedImage } from '../plugins/images.js'
import { ProviderError } from './provider-error.js'
import { editSize, type StagingProvider } from './staging.js'

/** Each sandbox step takes this long, so that an app developer sees the progress move. */
export const SANDBOX_STEP_MS = 300

const FREE = { inputTokens: 0, outputTokens: 0, costMicroUsd: 0, estimated: false }

async function step (signal: AbortSignal) {
  try {
    await sleep(SANDBOX_STEP_MS, undefined, { signal })
  } catch {
    throw new ProviderError('PROVIDER_TIMEOUT', 'The staging was stopped before the sandbox finished.')
  }
}

/** Furniture drawn in the style's colours: a rug, a sofa with cushions, a side table and a floor lamp. */
function furniture (width: number, height: number, palette: string[]): Buffer {
  const [a, b, c = a, d = b] = palette as [string, string, string?, string?]
  const floor = Math.round(height * 0.62)
  const w = (f: number) => Math.round(width * f)
  const h = (f: number) => Math.round(height * f)
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
  <ellipse cx="${w(0.5)}" cy="${floor + h(0.22)}" rx="${w(0.36)}" ry="${h(0.1)}" fill="${c}" opacity="0.85"/>
  <rect x="${w(0.24)}" y="${floor}" width="${w(0.52)}" height="${h(0.16)}" rx="${h(0.03)}" fill="${a}"/>
  <rect x="${w(0.24)}" y="${floor - h(0.1)}" width="${w(0.52)}" height="${h(0.12)}" rx="${h(0.03)}" fill="${a}"/>
  <rect x="${w(0.29)}" y="${floor - h(0.06)}" width="${w(0.1)}" height="${h(0.08)}" rx="${h(0.02)}" fill="${b}"/>
  <rect x="${w(0.61)}" y="${floor - h(0.06)}" width="${w(0.1)}" height="${h(0.08)}" rx="${h(0.02)}" fill="${b}"/>
  <rect x="${w(0.8)}" y="${floor + h(0.04)}" width="${w(0.08)}" height="${h(0.12)}" fill="${d}"/>
  <rect x="${w(0.13)}" y="${floor - h(0.28)}" width="${w(0.008) + 2}" height="${h(0.44)}" fill="${d}"/>
  <polygon points="${w(0.09)},${floor - h(0.28)} ${w(0.18)},${floor - h(0.28)} ${w(0.16)},${floor - h(0.36)} ${w(0.11)},${floor - h(0.36)}" fill="${b}"/>
</svg>`)
}

/**
 * The test-mode provider: nothing leaves the service. Deterministic for the same photo and style: the photo at the
 * edit size OpenAI would return, warmed towards the style's first colour, with furniture drawn in its palette.
 */
export function createSandboxStaging (): StagingProvider {
  return {
    name: 'sandbox',
    model: 'sandbox',

    async detectRoom (image: PreparedImage, _user, signal) {
      await step(signal)
      return { isRoom: true, roomType: image.height > image.width ? 'bedroom' : 'living_room', usage: FREE }
    },

    async stage (input) {
      await step(input.signal)
      const [width, height] = editSize(input.image.width, input.image.height).split('x').map(Number) as [number, number]
      const tint = input.palette[0] as string
      const staged = await sharp(Buffer.from(await input.image.blob.arrayBuffer()))
        .resize(width, height, { fit: 'cover' })
        .composite([
          { input: { create: { width, height, channels: 4, background: tint } }, blend: 'soft-light' },
          { input: furniture(width, height, input.palette) }
        ])
        .jpeg({ quality: 85 })
        .toBuffer()
      await step(input.signal)
      return { image: staged, contentType: 'image/jpeg', width, height, usage: FREE }
    },

    async checkIntegrity (_original, _staged, _user, signal) {
      await step(signal)
      return { architecturalIntegrity: true, qualityScore: 0.9, usage: FREE }
    }
  }
}
