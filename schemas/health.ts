import Type, { type Static } from 'typebox'

export const HealthLive = Type.Object({
  status: Type.Literal('ok')
}, { $id: 'HealthLive', title: 'HealthLive', description: 'The process is up and serving HTTP.', examples: [{ status: 'ok' }] })

export const CheckResult = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('failing')]),
  durationMs: Type.Number({ description: 'How long the check took.' }),
  reason: Type.Optional(Type.String({ description: 'Why it fails, in a word or code (never connection details).' })),
  queues: Type.Optional(Type.Record(Type.String(), Type.Object({
    queued: Type.Integer({ minimum: 0, description: 'Jobs waiting (new or to be retried).' }),
    active: Type.Integer({ minimum: 0, description: 'Jobs running on some instance now.' }),
    failedLastHour: Type.Integer({ minimum: 0, description: 'Jobs that failed for good in the last hour.' }),
    meanProcessingMs: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'Mean run time of the last 100 completed jobs; null before the first.' })
  }), { description: 'The `jobs` check only: figures per queue.' })),
  vendors: Type.Optional(Type.Record(Type.String(), Type.Object({
    configured: Type.Boolean({ description: 'Whether this deployment has a key for the vendor.' }),
    breaker: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half-open')], {
      description: '`open`: the vendor failed repeatedly (or refused the account) and is skipped until its cooldown ends; `half-open`: the next call tries it again.'
    })
  }, { additionalProperties: false }), { description: 'The `models` check only: each model vendor circuit breaker. An open breaker does not make the instance unready: other vendors serve.' }))
}, { $id: 'CheckResult', title: 'CheckResult' })

export const HealthReady = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready'), Type.Literal('draining')], {
    description: '`draining`: the instance is shutting down and takes no new work.'
  }),
  checks: Type.Record(Type.String(), Type.Unsafe<Static<typeof CheckResult>>(Type.Ref('CheckResult')), {
    description: 'Each dependency checked, by name (database, redis, providers…). Providers are never called.'
  })
}, {
  $id: 'HealthReady',
  title: 'HealthReady',
  description: 'Whether this instance can serve feature calls now.',
  examples: [{
    status: 'ready',
    checks: {
      database: { status: 'ok', durationMs: 1.2 },
      jobs: { status: 'ok', durationMs: 3.4, queues: { 'files.cleanup': { queued: 0, active: 0, failedLastHour: 0, meanProcessingMs: 41 } } }
    }
  }]
})
export type HealthReadyBody = Static<typeof HealthReady>
