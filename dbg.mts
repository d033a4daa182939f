import sharp from 'sharp'
import { createSandboxBackground } from './providers/sandbox-background.js'
import { prepareImage, finishImage } from './plugins/images.js'
sharp.cache(false); sharp.concurrency(1)
const raw = Buffer.alloc(1880 * 1800 * 3)
for (let i = 0, x = 2463534242; i < raw.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; raw[i] = x & 0xff }
const png = await sharp(raw, { raw: { width: 1880, height: 1800, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer()
let peak = 0; const s = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 2)
const mb = (n: number) => Math.round(n / 1048576)
const base = process.memoryUsage().rss
for (let k = 0; k < 3; k++) {
  const img = await prepareImage(png); console.log('prepare', mb(peak - base))
  const out = await createSandboxBackground().remove(img, { output: 'cutout', signal: new AbortController().signal }); console.log('sandbox', mb(peak - base))
  const fin = await finishImage(out, { width: img.width, height: img.height, output: 'cutout', format: 'png' }); console.log('finish', mb(peak - base), fin.length)
}
clearInterval(s)
