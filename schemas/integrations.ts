import Type, { type Static } from 'typebox'
import { isoTime } from './refs.js'

/** The calendar scope asked for: read events, nothing else (no calendar list, no writes). */
export const CALENDAR_SCOPE = 'https://www.googleapis.com/auth/calendar.events.readonly'
/** Events of one request: from…to at most this many days apart. */
export const MAX_EVENT_RANGE_DAYS = 92
export const DEFAULT_EVENT_RANGE_DAYS = 7
export const MAX_EVENTS = 100
export const DEFAULT_EVENTS = 25
/** A connect link is good for this long, once. */
export const STATE_TTL_SECONDS = 600

export const IntegrationKind = Type.Literal('google-calendar', { description: 'The integration.' })

export const Integration = Type.Object({
  id: IntegrationKind,
  connected: Type.Boolean({ description: 'A calendar is connected (it may still need a reconnect, see `status`).' }),
  connectedAt: Type.Union([isoTime('When it was connected.'), Type.Null()]),
  scopes: Type.Array(Type.String(), { description: 'What Google granted; empty when not connected.' }),
  status: Type.Union([Type.Literal('ok'), Type.Literal('needs-reconnect'), Type.Literal('not-connected')], {
    description: '`ok`; `needs-reconnect` when Google no longer honours the grant (revoked by the user, expired): connect again; `not-connected`.'
  }),
  sandbox: Type.Boolean({ description: 'true in test mode: the built-in sandbox calendar, nothing from Google.' })
}, {
  $id: 'Integration',
  title: 'Integration',
  additionalProperties: false,
  examples: [{ id: 'google-calendar', connected: true, connectedAt: '2026-12-04T09:00:00.000Z', scopes: [CALENDAR_SCOPE], status: 'ok', sandbox: false }]
})
export type IntegrationValue = Static<typeof Integration>

export const IntegrationList = Type.Object({ data: Type.Array(Type.Unsafe<IntegrationValue>(Type.Ref('Integration'))) }, {
  $id: 'IntegrationList',
  title: 'IntegrationList',
  additionalProperties: false
})

export const ConnectResponse = Type.Object({
  authorizationUrl: Type.String({ format: 'uri', description: 'Open it in the user\'s browser: Google\'s consent page (in test mode, this service\'s callback with a sandbox code).' }),
  expiresAt: isoTime(`The link works once, until then (${STATE_TTL_SECONDS / 60} minutes).`)
}, {
  $id: 'ConnectResponse',
  title: 'ConnectResponse',
  additionalProperties: false,
  examples: [{ authorizationUrl: 'https://accounts.google.com/o/oauth2/v2/auth?access_type=offline&prompt=consent&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcalendar.events.readonly&state=…&code_challenge_method=S256&code_challenge=…&response_type=code&client_id=…&redirect_uri=…', expiresAt: '2026-12-04T09:10:00.000Z' }]
})

/** What Google (or the sandbox) sends the browser back with; Google adds fields of its own, which are ignored. */
export const CallbackQuery = Type.Object({
  state: Type.Optional(Type.String({ maxLength: 200 })),
  code: Type.Optional(Type.String({ maxLength: 2048 })),
  error: Type.Optional(Type.String({ maxLength: 200 })),
  scope: Type.Optional(Type.String({ maxLength: 4096 }))
})

export const Connected = Type.Object({
  integration: Type.Unsafe<IntegrationValue>(Type.Ref('Integration'))
}, { $id: 'Connected', title: 'Connected', additionalProperties: false })

export const EventsQuery = Type.Object({
  from: Type.Optional(Type.String({ format: 'date-time', description: 'Start of the range (ISO 8601 with an offset). Default: now.' })),
  to: Type.Optional(Type.String({ format: 'date-time', description: `End of the range; at most ${MAX_EVENT_RANGE_DAYS} days after from. Default: ${DEFAULT_EVENT_RANGE_DAYS} days after from.` })),
  limit: Type.Integer({ minimum: 1, maximum: MAX_EVENTS, default: DEFAULT_EVENTS, description: 'Events at most, soonest first.' })
}, { additionalProperties: false })

export const CalendarEvent = Type.Object({
  id: Type.String(),
  title: Type.String({ description: 'The event\'s title ("(no title)" when it has none).' }),
  start: Type.String({ description: 'A date-time with offset, or a day (YYYY-MM-DD) for an all-day event.' }),
  end: Type.String({ description: 'As start; the end of an all-day event is the day after its last day (as Google gives it).' }),
  allDay: Type.Boolean(),
  location: Type.Optional(Type.String())
}, { $id: 'CalendarEvent', title: 'CalendarEvent', additionalProperties: false })
export type CalendarEventValue = Static<typeof CalendarEvent>

export const EventList = Type.Object({
  data: Type.Array(Type.Unsafe<CalendarEventValue>(Type.Ref('CalendarEvent'))),
  from: isoTime('The range read.'),
  to: isoTime('The range read.'),
  truncated: Type.Boolean({ description: 'More events are in the range than `limit`.' })
}, {
  $id: 'EventList',
  title: 'EventList',
  additionalProperties: false,
  examples: [{ data: [{ id: '6p2k1c9m0o8q', title: 'Design review', start: '2026-12-07T14:00:00+01:00', end: '2026-12-07T15:00:00+01:00', allDay: false, location: 'Room 4.12' }], from: '2026-12-07T00:00:00.000Z', to: '2026-12-14T00:00:00.000Z', truncated: false }]
})

export const integrationSchemas = [Integration, IntegrationList, ConnectResponse, Connected, CalendarEvent, EventList]
