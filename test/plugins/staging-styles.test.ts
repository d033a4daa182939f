import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import sharp from 'sharp'
import t from 'tap'
import defaults from '../../defaults/staging-styles.json' with { type: 'json' }
import { createStagingStyles, loadStagingStyles, PREVIEW_HEIGHT, PREVIEW_WIDTH } from '../../plugins/staging-styles.js'

const dir = mkdtempSync(join(tmpdir(), 'styles-'))
const fileWith = (value: unknown) => {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.json`)
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value))
  return file
}
const style = defaults.styles[0] as (typeof defaults.styles)[number]
const problemsOf = (file: string) => {
  try {
    loadStagingStyles(file)
    return []
  } catch (err) {
    return (err as { problems: string[] }).problems
  }
}

t.test('the bundled catalog has the seed\'s styles, each with a template of known placeholders', async (t) => {
  const styles = loadStagingStyles()
  t.ok(['modern_luxury', 'classic_elegance', 'scandinavian', 'industrial_loft'].every((id) => styles.some((s) => s.id === id)))
})

t.test('a bad catalog stops startup naming every problem', async (t) => {
  t.match(problemsOf(fileWith('{')), [/^STAGING_STYLES_FILE cannot be read as JSON/])
  t.match(problemsOf(fileWith({ styles: [{ ...style, priceRange: 'cheap', extra: 1 }] })), [/^STAGING_STYLES_FILE \/styles\/0/])
  t.match(problemsOf(fileWith({})), [/^STAGING_STYLES_FILE \(top level\)/])
  const problems = problemsOf(fileWith({
    styles: [
      { ...style, active: false },
      { ...style, active: false, promptTemplate: 'Stage this {roomType} with {furniture} and {budget} please.' }
    ]
  }))
  t.same(problems, [
    'STAGING_STYLES_FILE /styles/1 (modern_luxury): the id is used twice.',
    'STAGING_STYLES_FILE /styles/1 (modern_luxury): the prompt template has unknown placeholders {furniture}, {budget} (known: {roomType}, {styleName}).',
    'STAGING_STYLES_FILE: no style is active, so nothing could be staged.'
  ])
})

t.test('inactive styles are hidden, the order is sortOrder then id; prompts are filled; previews are PNGs drawn once', async (t) => {
  const styles = createStagingStyles(loadStagingStyles(fileWith({
    styles: [
      { ...style, id: 'zeta', sortOrder: 5 },
      { ...style, id: 'alpha', sortOrder: 5 },
      { ...style, id: 'first', sortOrder: 1 },
      { ...style, id: 'hidden', sortOrder: 0, active: false }
    ]
  })))
  t.same(styles.list().map((s) => s.id), ['first', 'alpha', 'zeta'])
  t.notOk('promptTemplate' in (styles.list()[0] as object), 'the template never leaves the server')
  t.equal(styles.get('hidden'), undefined)
  t.match(styles.prompt('first', 'living_room'), /^Stage this empty living room in a Modern luxury style:/)
  t.equal(styles.preview('hidden'), undefined)
  const png = await styles.preview('first') as Buffer
  t.match(await sharp(png).metadata(), { format: 'png', width: PREVIEW_WIDTH, height: PREVIEW_HEIGHT })
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true })
  t.same([...data.subarray(0, 3)], [0xef, 0xe9, 0xe1], 'the first band is the first colour of the palette')
  t.equal(styles.preview('first'), styles.preview('first'), 'drawn once')
})
