import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import { build } from '../helper.js'

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

interface Dashboard { uid: string, panels: Array<{ title: string, targets: Array<{ expr: string }> }> }
interface Rules { groups: Array<{ rules: Array<{ alert: string, expr: string, annotations: { summary: string } }> }> }

/**
 * The families a running service exports (from a scrape: `# TYPE name kind`) with their label names (from its
 * registry; process metrics have none).
 */
async function exported (t: Test) {
  const { app } = await build(t)
  await app.inject({ method: 'GET', url: '/health/live' })
  const text = await app.metrics.scrape()
  const families = new Map<string, { kind: string, labels: Set<string> }>()
  for (const [, name, kind] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const metric = app.metrics.registry.getSingleMetric(name as string) as unknown as { labelNames?: string[] } | undefined
    families.set(name as string, { kind: kind as string, labels: new Set(metric?.labelNames ?? []) })
  }
  return families
}

/** Every metric an expression reads, its histogram series mapped to their family, and the labels it names. */
function uses (expr: string, families: Map<string, { kind: string }>) {
  const metrics = [...expr.matchAll(/\b((?:http|portal|process|nodejs)_[a-z0-9_]+)\b/g)].map(([, name]) => {
    const base = (name as string).replace(/_(bucket|sum|count)$/, '')
    return families.get(base)?.kind === 'histogram' ? base : name as string
  })
  const grouped = [...expr.matchAll(/\bby \(([^)]*)\)/g)].flatMap(([, list]) => (list as string).split(',').map((l) => l.trim()))
  const matched = [...expr.matchAll(/\{([^}]*)\}/g)].flatMap(([, inner]) => [...(inner as string).matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)].map(([, l]) => l as string))
  return { metrics, labels: [...grouped, ...matched] }
}

t.test('the Grafana dashboard and the alert rules read only families and labels the service exports', async (t) => {
  const families = await exported(t)
  t.ok(families.has('portal_provider_first_token_seconds') && families.get('http_requests_total')?.labels.has('feature'), 'the registry is read')
  const dashboard = JSON.parse(read('docs/monitoring/grafana-dashboard.json')) as Dashboard
  const rules = parse(read('docs/monitoring/alerts.yml')) as Rules
  const exprs = [
    ...dashboard.panels.flatMap((p) => p.targets.map((target) => ({ where: `panel "${p.title}"`, expr: target.expr }))),
    ...rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })))
  ]
  t.ok(exprs.length > 20)
  const seen = new Set<string>()
  for (const { where, expr } of exprs) {
    const { metrics, labels } = uses(expr, families)
    const known = new Set(['le', 'job', 'instance', ...metrics.flatMap((m) => [...(families.get(m)?.labels ?? [])])])
    for (const metric of metrics) {
      seen.add(metric)
      t.ok(families.has(metric), `${where}: ${metric} is exported`)
    }
    const unknown = labels.filter((l) => !known.has(l))
    t.same(unknown, [], `${where}: every label it names is one of its metrics'`)
  }
  // What the issue asks the dashboard to show: traffic and errors by feature, provider latency and TTFT by vendor,
  // spend by model, queue depth, breaker state.
  const shown = dashboard.panels.flatMap((p) => p.targets.map((target) => target.expr)).join('\n')
  for (const needed of [/http_requests_total.*by \(feature\)|by \(feature\) \(rate\(http_requests_total/, /portal_provider_call_duration_seconds_bucket/,
    /portal_provider_first_token_seconds_bucket/, /by \(model\) \(rate\(portal_cost_micro_usd_total/, /portal_jobs_queued/, /portal_circuit_breaker_state/]) {
    t.match(shown, needed)
  }
  t.ok(['portal_settlements_pending', 'portal_webhook_attempts_total', 'portal_refusals_total', 'portal_job_runs_total'].every((m) => seen.has(m)))
  t.equal(dashboard.uid, 'portal-ai-api')
  t.ok(rules.groups[0]?.rules.every((r) => r.annotations.summary.length > 0))
})
