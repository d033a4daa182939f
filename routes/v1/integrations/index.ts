import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Credential } from '../../../plugins/auth/index.js'
import { AppError } from '../../../plugins/errors.js'
import type { CallbackReason } from '../../../plugins/integrations.js'
import { errorResponses } from '../../../schemas/errors.js'
import {
  CallbackQuery, CALENDAR_SCOPE, Connected, ConnectResponse, EventList, EventsQuery, IntegrationList, MAX_EVENT_RANGE_DAYS, STATE_TTL_SECONDS
} from '../../../schemas/integrations.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'

const common = { config: { auth: 'ai-token' as const }, tags: ['integrations'], security: [{ aiToken: [] }] }
const principalOf = (request: { principal: Principal | null }) => request.principal as Principal
/** Callbacks per client address and minute: a person connects a calendar now and then; guessing states gets slowed down. */
export const CALLBACKS_PER_MINUTE = 30
const CALLBACK_PATH = '/v1/integrations/google-calendar/callback'

/** /v1/integrations: Google Calendar connected with OAuth (authorization code + PKCE), for the productivity assistant (SPEC §17). */
const integrations: FastifyPluginAsyncTypebox = async (app) => {
  const returnUrl = app.config.INTEGRATIONS_RETURN_URL
  const back = (params: Record<string, string>) => {
    const url = new URL(returnUrl as string)
    for (const [name, value] of Object.entries({ integration: 'google-calendar', ...params })) url.searchParams.set(name, value)
    return url.toString()
  }

  /**
   * Who the browser at the callback is signed in as, when AUTH_COOKIE is set and its cookie is there and valid; null
   * otherwise (a missing or expired session says nothing either way: the state alone decides).
   */
  async function browserUser (request: FastifyRequest, reply: FastifyReply): Promise<string | null> {
    const name = app.config.AUTH_COOKIE
    if (name === undefined || typeof request.headers.cookie !== 'string' || app.parseCookie(request.headers.cookie)[name] === undefined) return null
    try {
      await app.authenticate(request, reply, 'credential')
    } catch {
      return null
    }
    return (request.credential as Credential).userId
  }

  app.get('', {
    config: common.config,
    schema: {
      operationId: 'listIntegrations',
      summary: 'List your integrations',
      description: 'Google Calendar, connected or not, in the mode of your token (a test-mode token sees the sandbox connection).',
      tags: common.tags,
      security: common.security,
      response: { 200: ref(IntegrationList), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async (request) => app.integrations.list(principalOf(request)))

  app.post('/google-calendar/connect', {
    config: common.config,
    schema: {
      operationId: 'connectGoogleCalendar',
      summary: 'Start connecting Google Calendar',
      description: 'Answers the consent page to open in the user\'s browser: Google\'s, with the authorization code flow and PKCE ' +
        `(S256), offline access, consent asked every time and one scope, \`${CALENDAR_SCOPE}\`. Its \`state\` is bound to you and works ` +
        `once within ${STATE_TTL_SECONDS / 60} minutes. Google then sends the browser to GET /v1/integrations/google-calendar/callback. ` +
        'In test mode the link goes straight to that callback with a sandbox code: the sandbox calendar, nothing from Google. ' +
        'Connecting again replaces (and revokes) the earlier grant. Live mode without Google set up is PROVIDER_NOT_CONFIGURED.',
      tags: common.tags,
      security: common.security,
      response: { 200: ref(ConnectResponse), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED', 'PROVIDER_NOT_CONFIGURED') }
    }
  }, async (request, reply) => {
    const sandboxCallback = app.config.GOOGLE_REDIRECT_URI ?? `${request.protocol}://${request.host}${CALLBACK_PATH}`
    return reply.header('cache-control', 'no-store').send(await app.integrations.connect(principalOf(request), sandboxCallback))
  })

  app.get('/google-calendar/callback', {
    config: { perAddressPerMinute: CALLBACKS_PER_MINUTE },
    schema: {
      operationId: 'googleCalendarCallback',
      summary: 'Google\'s return to the service (the browser\'s, not the app\'s)',
      description: 'The redirect URI of the OAuth client: no credential, the `state` names the user. The state is consumed on the ' +
        'first use, whatever happens; the code is exchanged with its PKCE verifier and the refresh token kept encrypted. With ' +
        'INTEGRATIONS_RETURN_URL the browser is sent there (`302`, `?integration=google-calendar&status=connected`, or ' +
        '`&error=<reason>`); otherwise the answer is JSON. Reasons (also `details.reason` of the JSON errors): `invalid_state` ' +
        '(missing, unknown, used or expired, or — with AUTH_COOKIE — the browser is signed in as another user than the one who started the connect), `access_denied` (the user declined), `missing_code`, `code_refused` (Google refused ' +
        'the code: expired, used, or not issued for this state\'s verifier), `scope_not_granted`, `google_unavailable`, `google_error`. ' +
        `At most ${CALLBACKS_PER_MINUTE} a minute per client address.`,
      tags: ['integrations'],
      querystring: CallbackQuery,
      response: {
        200: ref(Connected),
        302: { description: 'To INTEGRATIONS_RETURN_URL, with the outcome in its query.', type: 'null' },
        ...errorResponses('VALIDATION_ERROR', 'INTEGRATION_NOT_CONNECTED', 'RATE_LIMITED', 'PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT')
      }
    }
  }, async (request, reply) => {
    // The URL carried a code and a state: no caching, no referrer to wherever the user goes next.
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer')
    try {
      const done = await app.integrations.callback(request.query, await browserUser(request, reply))
      await app.audit.record({ actor: `user:${done.userId}`, action: 'integration.connected', target: 'integration:google-calendar', outcome: 'ok', requestId: request.id, details: { mode: done.mode } })
      if (returnUrl !== undefined) return reply.redirect(back({ status: 'connected' }), 302)
      return { integration: done.integration }
    } catch (err) {
      if (returnUrl === undefined || !(err instanceof AppError)) throw err
      // Every error the callback gives carries its reason (the store's failures are not AppErrors: they answer JSON).
      return reply.redirect(back({ error: (err.details as { reason: CallbackReason }).reason }), 302)
    }
  })

  app.delete('/google-calendar', {
    config: common.config,
    schema: {
      operationId: 'disconnectGoogleCalendar',
      summary: 'Disconnect Google Calendar',
      description: 'Revokes the grant at Google, then forgets it here (the stored tokens are deleted). If Google cannot be reached ' +
        'the connection is kept and the answer is PROVIDER_UNAVAILABLE: retry. Nothing connected is NOT_FOUND.',
      tags: common.tags,
      security: common.security,
      response: { 204: { description: 'Revoked and forgotten.', type: 'null' }, ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED', 'PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT') }
    }
  }, async (request, reply) => {
    const principal = principalOf(request)
    await app.integrations.disconnect(principal)
    await app.audit.record({ actor: `user:${principal.userId}`, action: 'integration.disconnected', target: 'integration:google-calendar', outcome: 'ok', requestId: request.id, details: { mode: principal.mode } })
    return reply.code(204).send(null)
  })

  app.get('/google-calendar/events', {
    config: common.config,
    schema: {
      operationId: 'listCalendarEvents',
      summary: 'Upcoming events of your Google Calendar',
      description: 'Events of your primary calendar from `from` (default now) to `to` (default 7 days later, at most ' +
        `${MAX_EVENT_RANGE_DAYS} days), soonest first, recurring events expanded. Read from Google on this request, never stored ` +
        'or logged; only id, title, start, end and location are read. The access token is refreshed when it has expired; a grant ' +
        'Google no longer honours turns the integration to `needs-reconnect` and answers INTEGRATION_NOT_CONNECTED (409), as does ' +
        'no connection. In test mode: the sandbox calendar.',
      tags: common.tags,
      security: common.security,
      querystring: EventsQuery,
      response: { 200: ref(EventList), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'INTEGRATION_NOT_CONNECTED', 'RATE_LIMITED', 'PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED', 'PROVIDER_TIMEOUT') }
    }
  }, async (request, reply) => {
    const page = await app.integrations.events(principalOf(request), request.query)
    return reply.header('cache-control', 'no-store').send({ data: page.events, from: page.from.toISOString(), to: page.to.toISOString(), truncated: page.truncated })
  })
}

export default integrations
