import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { CREATE_TASK, LIST_CALENDAR_EVENTS, runTools, toolInstructions } from '../../plugins/assistant-tools.js'
import { AppError } from '../../plugins/errors.js'
import type { Principal } from '../../schemas/principal.js'

const principal: Principal = { userId: 'u1', plan: 'pro', mode: 'live', credential: 'ai-token', features: ['chat'] }
const call = (name: string, args: unknown, id = 'c1') => ({ id, name, arguments: typeof args === 'string' ? args : JSON.stringify(args) })
/** An app whose calendar answers `events` or fails with `failure`. */
const appWith = (events: () => Promise<unknown>) => ({ integrations: { events } }) as unknown as FastifyInstance
const result = (outcome: { result: string }) => JSON.parse(outcome.result) as Record<string, unknown>

t.test('create_task: a suggestion for a good title and day, a refusal the model can read otherwise', async (t) => {
  const app = appWith(async () => { throw new Error('not asked') })
  const cases: Array<[unknown, RegExp | null]> = [
    [{ title: '  Book the venue  ', dueDate: '2026-12-18' }, null],
    [{ title: 'No day', dueDate: null }, null],
    [{ title: 42 }, /title/],
    [{ title: '   ' }, /title/],
    [{ title: 'x', dueDate: 20261218 }, /dueDate/],
    [{ title: 'x', dueDate: '2026-2-3' }, /dueDate/],
    [{ title: 'x', dueDate: '2026-02-30' }, /dueDate/]
  ]
  for (const [args, refused] of cases) {
    const [outcome] = await runTools(app, principal, ['tasks'], [call(CREATE_TASK, args)])
    if (refused === null) {
      t.equal(outcome?.suggestion?.type, 'create_task', JSON.stringify(args))
      t.equal(outcome?.ranOnServer, false, 'nothing runs on the server: it is a proposal')
    } else {
      t.match(result(outcome as { result: string }).error, refused, JSON.stringify(args))
      t.equal(outcome?.suggestion, undefined)
    }
  }
  const [trimmed] = await runTools(app, principal, ['tasks'], [call(CREATE_TASK, { title: '  Book the venue  ', dueDate: '2026-12-18' })])
  t.same(trimmed?.suggestion, { type: 'create_task', task: { title: 'Book the venue', dueDate: '2026-12-18' } })
})

t.test('arguments that are not a JSON object, and tools the chat does not have', async (t) => {
  const app = appWith(async () => { throw new Error('not asked') })
  const outcomes = await runTools(app, principal, ['tasks'], [
    call(CREATE_TASK, '{not json'),
    call(CREATE_TASK, [1, 2]),
    call(CREATE_TASK, 'null'),
    call(LIST_CALENDAR_EVENTS, { from: '2026-12-07T00:00:00Z', to: '2026-12-08T00:00:00Z' })
  ])
  t.match(outcomes.map((o) => result(o).error), [/not a JSON object/, /not a JSON object/, /not a JSON object/, /no tool list_calendar_events/])
})

t.test('list_calendar_events: a wide range is cut to 31 days; a calendar that fails is the model\'s to explain', async (t) => {
  let asked: { from: string, to: string, limit: number } | undefined
  const ok = appWith(async () => ({ events: [], truncated: false, from: new Date('2026-12-01T00:00:00Z'), to: new Date('2027-01-01T00:00:00Z') }))
  ok.integrations.events = (async (_p: Principal, query: { from: string, to: string, limit: number }) => {
    asked = query
    return { events: [], truncated: false, from: new Date(query.from), to: new Date(query.to) }
  }) as never
  await runTools(ok, principal, ['calendar'], [call(LIST_CALENDAR_EVENTS, { from: '2026-12-01T00:00:00Z', to: '2027-06-01T00:00:00Z' })])
  t.same(asked, { from: '2026-12-01T00:00:00.000Z', to: '2027-01-01T00:00:00.000Z', limit: 25 })
  const down = appWith(async () => { throw new AppError('PROVIDER_UNAVAILABLE', 'Google cannot be reached') })
  const [outcome] = await runTools(down, principal, ['calendar'], [call(LIST_CALENDAR_EVENTS, { from: '2026-12-01T00:00:00Z', to: '2026-12-02T00:00:00Z' })])
  t.match(result(outcome as { result: string }).error, /cannot be read right now/)
  t.equal(outcome?.ranOnServer, true)
})

t.test('the instructions name today and only the chat\'s tools', async (t) => {
  const now = new Date('2026-12-05T09:41:00Z')
  t.equal(toolInstructions(['calendar'], now), 'Today is 2026-12-05 (UTC; it is now 09:41 UTC).\nCall list_calendar_events to learn the user\'s schedule; never invent events.')
  t.match(toolInstructions(['tasks'], now), /create_task.*never say it was created/)
  t.notMatch(toolInstructions(['tasks'], now), /list_calendar_events/)
})
