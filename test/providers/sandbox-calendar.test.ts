import t from 'tap'
import { sandboxEvents } from '../../providers/sandbox-calendar.js'

const range = (from: string, to: string, limit = 100) => ({ from: new Date(from), to: new Date(to), limit })
const lines = (page: ReturnType<typeof sandboxEvents>) => page.events.map((e) => `${e.start} ${e.title}`)

t.test('the same working week every week, in start order, cut to the range', (t) => {
  // Monday 2026-12-14 10:00 to Tuesday 2026-12-15 10:00: Monday's stand-up is over, Tuesday's review has not begun.
  const page = sandboxEvents(range('2026-12-14T10:00:00Z', '2026-12-15T10:00:00Z'))
  t.same(lines(page), ['2026-12-15 Planning day', '2026-12-15T09:30:00.000Z Team stand-up'])
  t.match(page.events[0], { allDay: true, end: '2026-12-16' })
  t.equal(page.truncated, false)
  t.end()
})

t.test('a weekend has nothing; a location where the event has one', (t) => {
  t.same(sandboxEvents(range('2026-12-12T00:00:00Z', '2026-12-14T00:00:00Z')).events, [])
  const friday = sandboxEvents(range('2026-12-11T00:00:00Z', '2026-12-12T00:00:00Z')).events
  t.same(friday, [{ id: 'sandbox-2026-12-11-1600', title: 'Sprint demo', start: '2026-12-11T16:00:00.000Z', end: '2026-12-11T17:00:00.000Z', allDay: false, location: 'Main hall' }])
  t.end()
})

t.test('the limit cuts and says so', (t) => {
  const page = sandboxEvents(range('2026-12-07T00:00:00Z', '2026-12-14T00:00:00Z', 3))
  t.equal(page.events.length, 3)
  t.equal(page.truncated, true)
  t.end()
})
