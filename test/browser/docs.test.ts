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

t.test('Swagger UI\'s Authorize dialog signs in to a built-in account (OAuth2 password flow), and "Try it out" reads GET /v1/auth/me with it', {
  skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM}: install Debian's chromium (apt-get install chromium); .ci/run does`
}, async (t) => {
  const { app } = await build(t, { env: { LOCAL_ACCOUNTS: 'on' } })
  const email = `swagger-${process.pid}@example.com`
  const password = 'a password typed in the dialog'
  t.equal((await app.inject({ method: 'POST', url: '/v1/auth/register', payload: { email, password } })).statusCode, 201)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  await page.goto(`${base}/docs`)
  await page.waitForSelector('.opblock', { timeout: 20_000 })
  await page.locator('.auth-wrapper .btn.authorize').click()
  const dialog = page.locator('.auth-container').filter({ hasText: 'accountPassword' })
  await dialog.locator('#oauth_username').fill(email)
  await dialog.locator('#oauth_password').fill(password)
  const signIn = page.waitForResponse((res) => res.url().endsWith('/v1/auth/login'))
  // Its button's accessible name is an aria-label ("Apply given OAuth2 credentials"); its text reads Authorize.
  await dialog.locator('button.modal-btn.authorize').click()
  t.equal((await signIn).status(), 200, 'the dialog posted the password grant and got a token')
  await dialog.locator('button.modal-btn', { hasText: 'Logout' }).waitFor({ timeout: 20_000 })
  await page.locator('.modal-ux .close-modal').first().click()

  const me = page.locator('#operations-accounts-getAccount')
  await me.locator('.opblock-summary').click()
  await me.getByRole('button', { name: 'Try it out' }).click()
  await me.getByRole('button', { name: 'Execute' }).click()
  const status = me.locator('.live-responses-table .response .response-col_status')
  await status.first().waitFor({ timeout: 20_000 })
  t.equal((await status.first().textContent())?.trim(), '200')
  t.match(await me.locator('.live-responses-table').innerText(), email, 'the account read with the token from the dialog')
})
