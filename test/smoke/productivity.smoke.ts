import t from 'tap'
import { mintToken, refused, send, smokeClient } from './client.js'

t.test('tasks: create, filter, read, change, delete; bad input refused', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: created } = await portal.POST('/v1/tasks', { body: { title: 'smoke task', dueDate: '2031-01-15' } })
  t.match(created, { title: 'smoke task', status: 'todo', dueDate: '2031-01-15' })
  const byId = { params: { path: { id: created.id } } }
  const found: string[] = []
  for await (const task of portal.pages('/v1/tasks', { query: { status: 'todo', dueFrom: '2031-01-15', dueTo: '2031-01-15', limit: 100 } })) found.push(task.id)
  t.ok(found.includes(created.id), 'the filters find it')
  await portal.GET('/v1/tasks/{id}', byId)
  const { data: done } = await portal.PATCH('/v1/tasks/{id}', { ...byId, body: { status: 'done', dueDate: null } })
  t.equal(done.dueDate, undefined)
  await refused(t, portal.POST('/v1/tasks', { body: { title: 'x'.repeat(10_000) } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.POST('/v1/tasks', { body: { title: 'x', dueDate: '2031-02-30' } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.GET('/v1/tasks', { params: { query: { dueFrom: '2031-02-01', dueTo: '2031-01-01' } } }), 400, 'VALIDATION_ERROR')
  await portal.DELETE('/v1/tasks/{id}', byId)
  await refused(t, portal.GET('/v1/tasks/{id}', byId), 404, 'NOT_FOUND')
  await refused(t, smokeClient(t).GET('/v1/tasks'), 401, 'UNAUTHENTICATED')
})

t.test('Google Calendar and the assistant, the whole flow on the sandbox calendar (the smoke key is a test-mode key)', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: connect } = await portal.POST('/v1/integrations/google-calendar/connect')
  const link = new URL(connect.authorizationUrl)
  t.match(link.searchParams.get('state'), /^[A-Za-z0-9_-]{43}$/)
  // The browser's part of the flow: the redirect is the answer, not followed.
  const callback = await send({ path: `${link.pathname}${link.search}`, redirect: 'manual' })
  t.ok(callback.status === 200 || callback.status === 302, 'connected (JSON, or back to INTEGRATIONS_RETURN_URL)')
  const replayed = await send({ path: `${link.pathname}${link.search}`, redirect: 'manual' })
  t.ok(replayed.status === 400 || /error=invalid_state/.test(replayed.headers.get('location') ?? ''), 'a state works once')
  const { data: integrations } = await portal.GET('/v1/integrations')
  t.match(integrations, { data: [{ connected: true, status: 'ok', sandbox: true }] })
  const { data: events } = await portal.GET('/v1/integrations/google-calendar/events', { params: { query: { from: '2031-01-06T00:00:00Z', to: '2031-01-13T00:00:00Z', limit: 5 } } })
  t.ok(events.data.length > 0, 'the sandbox week has events')
  await refused(t, portal.GET('/v1/integrations/google-calendar/events', { params: { query: { from: '2031-01-01T00:00:00Z', to: '2032-01-01T00:00:00Z' } } }), 400, 'VALIDATION_ERROR')

  const { data: chat } = await portal.POST('/v1/chats', { body: { title: 'smoke assistant', tools: ['calendar', 'tasks'] } })
  const { data: reply } = await portal.POST('/v1/chats/{id}/messages', { params: { path: { id: chat.id } }, body: { content: 'What is on my calendar this week?' } })
  t.same(reply.toolsUsed, ['list_calendar_events'])
  const suggested: string[] = []
  for await (const event of await portal.streamChatMessage(chat.id, { content: 'Remind me to water the plants.' })) {
    if (event.event === 'suggestion') suggested.push(event.data.type)
  }
  t.same(suggested, ['create_task'], 'a task is proposed')
  await portal.DELETE('/v1/chats/{id}', { params: { path: { id: chat.id } } })
  await portal.DELETE('/v1/integrations/google-calendar')
  await refused(t, portal.GET('/v1/integrations/google-calendar/events'), 409, 'INTEGRATION_NOT_CONNECTED')
})
