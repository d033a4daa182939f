import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadPlans } from '../../plugins/entitlements.js'

const planFile = (content: string) => {
  const file = join(mkdtempSync(join(tmpdir(), 'plans-')), 'plans.json')
  writeFileSync(file, content)
  return file
}

t.test('the bundled plans are free, pro and team; the OpenAI-compatible surface is for pro and team', async (t) => {
  const plans = loadPlans()
  t.same(Object.keys(plans.plans), ['free', 'pro', 'team'])
  const apps = ['settings-assistant', 'background-removal', 'chat', 'virtual-staging', 'risk-scan']
  t.same(Object.keys(plans.plans.free?.features ?? {}), apps)
  for (const plan of ['pro', 'team']) t.same(Object.keys(plans.plans[plan]?.features ?? {}).sort(), [...apps, 'openai-compatible'].sort(), plan)
})

t.test('a plans file is validated and every problem listed', async (t) => {
  t.throws(() => loadPlans('/nonexistent/plans.json'), { name: 'ConfigError', message: /PLANS_FILE cannot be read as JSON \(ENOENT\)/ })
  t.throws(() => loadPlans(planFile('{oops')), { message: /PLANS_FILE cannot be read as JSON \(invalid JSON\)/ })
  const bad = planFile(JSON.stringify({ plans: { Pro: { name: '', features: { 'settings-assistant': { quota: { limit: -1, period: 'week' }, rateLimitPerMinute: 0 } } } } }))
  let problems: string[] = []
  try {
    loadPlans(bad)
  } catch (err) {
    problems = (err as { problems: string[] }).problems
  }
  t.ok(problems.length >= 3, 'several problems at once')
  t.match(problems.join('\n'), /PLANS_FILE \/plans\/Pro/)
  t.throws(() => loadPlans(planFile('[]')), { message: /PLANS_FILE \(top level\) must be object/ })
  const upper = planFile(JSON.stringify({ plans: { Pro: { name: 'Pro', features: {} } } }))
  t.throws(() => loadPlans(upper), { message: /PLANS_FILE \/plans\/Pro: a plan id is 1 to 32 lowercase letters/ })
  const unknown = planFile(JSON.stringify({ plans: { pro: { name: 'Pro', features: { 'mind-reading': { quota: { limit: 1, period: 'day' }, rateLimitPerMinute: 1 } } } } }))
  t.throws(() => loadPlans(unknown), { message: /\/plans\/pro\/features\/mind-reading: no such feature \(known: settings-assistant, background-removal, chat, openai-compatible, virtual-staging, risk-scan\)/ })
})
