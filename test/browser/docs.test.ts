import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import t from 'tap'
import { build } from '../helper.js'

/** Debian's Chromium (`.ci/run` installs it with apt); never a downloaded browser. */
const CHROMIUM = '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']

t.test('Swagger UI at /docs lists every operation of the contract, and "Try it out" runs GET /v1/ai/features', {
  skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM}: install Debian's chromium (apt-get install chromium); .ci/run does`
}, async (t) => {
  const { app } = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const contract = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> }
  const expected = Object.entries(contract.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`)).sort()

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${base}/docs`)
  await page.waitForSelector('.opblock', { timeout: 20_000 })
  const listed = await page.$$eval('.opblock', (blocks) => blocks.map((b) =>
    `${b.querySelector('.opblock-summary-method')?.textContent?.trim() ?? ''} ${b.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? ''}`))
  t.same([...listed].sort(), expected, 'every operation of /openapi.json is listed')

  const features = page.locator('#operations-features-listFeatures')
  await features.locator('.opblock-summary').click()
  await features.getByRole('button', { name: 'Try it out' }).click()
  await features.getByRole('button', { name: 'Execute' }).click()
  const status = features.locator('.live-responses-table .response .response-col_status')
  await status.first().waitFor({ timeout: 20_000 })
  t.equal((await status.first().textContent())?.trim(), '200')
  const body = await features.locator('.live-responses-table').innerText()
  t.match(body, /settings-assistant/, 'the live response body is shown')
})
