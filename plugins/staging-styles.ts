import fp from 'fastify-plugin'
import sharp from 'sharp'
import Value from 'typebox/value'
import defaultStyles from '../defaults/staging-styles.json' with { type: 'json' }
import { PROMPT_PLACEHOLDERS, StagingStylesFile, type StagingStyleEntryValue, type StagingStylesFileValue } from '../schemas/staging.js'
import { ConfigError, readJsonFile } from './config.js'

/** Size of a style's preview image (PNG). */
export const PREVIEW_WIDTH = 480
export const PREVIEW_HEIGHT = 320

/** Reads and checks STAGING_STYLES_FILE (or the bundled one), listing every problem at once. */
export function loadStagingStyles (file?: string): StagingStyleEntryValue[] {
  const raw = readJsonFile('STAGING_STYLES_FILE', file, defaultStyles)
  const problems = Value.Errors(StagingStylesFile, raw).slice(0, 30).map((e) => `STAGING_STYLES_FILE ${e.instancePath === '' ? '(top level)' : e.instancePath} ${e.message}.`)
  if (problems.length === 0) {
    const styles = (raw as StagingStylesFileValue).styles
    const seen = new Set<string>()
    for (const [i, style] of styles.entries()) {
      const where = `STAGING_STYLES_FILE /styles/${i} (${style.id})`
      if (seen.has(style.id)) problems.push(`${where}: the id is used twice.`)
      seen.add(style.id)
      const unknown = [...style.promptTemplate.matchAll(/\{([^}]*)\}/g)].map((m) => m[1] as string).filter((p) => !(PROMPT_PLACEHOLDERS as readonly string[]).includes(p))
      if (unknown.length > 0) problems.push(`${where}: the prompt template has unknown placeholders ${unknown.map((p) => `{${p}}`).join(', ')} (known: ${PROMPT_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}).`)
    }
    if (!styles.some((s) => s.active)) problems.push('STAGING_STYLES_FILE: no style is active, so nothing could be staged.')
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return (raw as StagingStylesFileValue).styles
}

/** A style's preview: its palette as bands across the image, drawn once and kept. */
function drawPreview (style: StagingStyleEntryValue): Promise<Buffer> {
  const band = PREVIEW_WIDTH / style.palette.length
  const rects = style.palette.map((colour, i) => `<rect x="${Math.floor(i * band)}" y="0" width="${Math.ceil(band)}" height="${PREVIEW_HEIGHT}" fill="${colour}"/>`).join('')
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${PREVIEW_WIDTH}" height="${PREVIEW_HEIGHT}">${rects}</svg>`
  return sharp(Buffer.from(svg)).png().toBuffer()
}

export function createStagingStyles (styles: StagingStyleEntryValue[]) {
  const active = styles.filter((s) => s.active).sort((a, b) => a.sortOrder - b.sortOrder || a.id.localeCompare(b.id))
  const byId = new Map(active.map((s) => [s.id, s]))
  const all = new Map(styles.map((s) => [s.id, s]))
  const previews = new Map<string, Promise<Buffer>>()
  return {
    /** The active styles in their order, as clients read them: never the prompt template. */
    list: () => active.map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description,
      previewImageUrl: `/v1/ai/staging/styles/${s.id}/preview.png`,
      bestFor: s.bestFor,
      priceRange: s.priceRange
    })),
    /** An active style, or undefined (inactive styles cannot be chosen). */
    get: (id: string) => byId.get(id),
    /** Any style of the file, active or not (a staging submitted before a style was made inactive still runs). */
    entry: (id: string) => all.get(id),
    /** The instruction for the image model: the style's template (of a style of the file) with its placeholders filled. */
    prompt (id: string, roomType: string): string {
      const style = all.get(id) as StagingStyleEntryValue
      return style.promptTemplate.replaceAll('{roomType}', roomType.replaceAll('_', ' ')).replaceAll('{styleName}', style.name)
    },
    /** The PNG preview of an active style; undefined for another id. */
    preview (id: string): Promise<Buffer> | undefined {
      const style = byId.get(id)
      if (style === undefined) return undefined
      let png = previews.get(id)
      if (png === undefined) {
        png = drawPreview(style)
        previews.set(id, png)
      }
      return png
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    stagingStyles: ReturnType<typeof createStagingStyles>
  }
}

/** The style catalog of virtual staging (SPEC §12), from STAGING_STYLES_FILE; checked at startup. */
export default fp(async function stagingStyles (app) {
  app.decorate('stagingStyles', createStagingStyles(loadStagingStyles(app.config.STAGING_STYLES_FILE)))
}, { name: 'staging-styles', fastify: '5.x', dependencies: ['config'] })
