import type { CalendarEventValue } from '../schemas/integrations.js'
import type { EventPage, EventRange } from './google-calendar.js'

/** A working week, in UTC: what the test-mode calendar holds every week. Nothing is read from Google. */
const WEEK: Array<{ weekday: number, start: string, minutes: number, title: string, location?: string }> = [
  { weekday: 1, start: '09:30', minutes: 15, title: 'Team stand-up' },
  { weekday: 2, start: '09:30', minutes: 15, title: 'Team stand-up' },
  { weekday: 2, start: '14:00', minutes: 60, title: 'Design review', location: 'Room 4.12' },
  { weekday: 3, start: '09:30', minutes: 15, title: 'Team stand-up' },
  { weekday: 4, start: '09:30', minutes: 15, title: 'Team stand-up' },
  { weekday: 4, start: '11:00', minutes: 30, title: '1:1 with Sam' },
  { weekday: 5, start: '16:00', minutes: 60, title: 'Sprint demo', location: 'Main hall' }
]
const DAY_MS = 86_400_000
const day = (at: Date) => at.toISOString().slice(0, 10)

/** The sandbox calendar of test mode: the same week every week, and a quarterly planning day on the 15th. */
export function sandboxEvents (range: EventRange): EventPage {
  const events: CalendarEventValue[] = []
  const first = new Date(`${day(range.from)}T00:00:00.000Z`)
  for (let at = first.getTime(); at < range.to.getTime(); at += DAY_MS) {
    const date = new Date(at)
    // An all-day event on a day the range touches (as Google lists it).
    if (date.getUTCDate() === 15) events.push({ id: `sandbox-${day(date)}-planning`, title: 'Planning day', start: day(date), end: day(new Date(at + DAY_MS)), allDay: true })
    for (const item of WEEK.filter((w) => w.weekday === date.getUTCDay())) {
      const start = new Date(`${day(date)}T${item.start}:00.000Z`)
      const end = new Date(start.getTime() + item.minutes * 60_000)
      if (end <= range.from || start >= range.to) continue
      events.push({
        id: `sandbox-${day(date)}-${item.start.replace(':', '')}`,
        title: item.title,
        start: start.toISOString(),
        end: end.toISOString(),
        allDay: false,
        ...(item.location === undefined ? {} : { location: item.location })
      })
    }
  }
  // All-day first on their day, then by start (Google's startTime order).
  events.sort((a, b) => a.start.slice(0, 10).localeCompare(b.start.slice(0, 10)) || Number(b.allDay) - Number(a.allDay) || a.start.localeCompare(b.start))
  return { events: events.slice(0, range.limit), truncated: events.length > range.limit }
}
