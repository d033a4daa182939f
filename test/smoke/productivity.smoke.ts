import t from 'tap'
import { call, expectError, mint, send, settings } from './client.js'

t.test('tasks: create, filter, read, change, delete; bad input refused', async (t) => {
  const token = (await mint(t, settings().apiKey)).json.token as string
  const created = await call(t, 'createTask', 201, { method: 'POST', path: '/v1/tasks', token, body: { title: 'smoke task', dueDate: '2031-01-15' } })
  const id = created.json.id as string
  t.match(created.json, { title: 'smoke task', status: 'todo', dueDate: '2031-01-15' })
  const listed = await call(t, 'listTasks', 200, { path: '/v1/tasks?status=todo&dueFrom=2031-01-15&dueTo=2031-01-15&limit=100', token })
  t.ok((listed.json.data as Array<{ id: string }>).some((task) => task.id === id), 'the filters find it')
  await call(t, 'getTask', 200, { path: `/v1/tasks/${id}`, token })
  const done = await call(t, 'updateTask', 200, { method: 'PATCH', path: `/v1/tasks/${id}`, token, body: { status: 'done', dueDate: null } })
  t.equal(done.json.dueDate, undefined)
  expectError(t, await call(t, 'createTask', 400, { method: 'POST', path: '/v1/tasks', token, body: { title: 'x'.repeat(10_000) } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'createTask', 400, { method: 'POST', path: '/v1/tasks', token, body: { title: 'x', dueDate: '2031-02-30' } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'listTasks', 400, { path: '/v1/tasks?dueFrom=2031-02-01&dueTo=2031-01-01', token }), 'VALIDATION_ERROR')
  await call(t, 'deleteTask', 204, { method: 'DELETE', path: `/v1/tasks/${id}`, token })
  expectError(t, await call(t, 'getTask', 404, { path: `/v1/tasks/${id}`, token }), 'NOT_FOUND')
  expectError(t, await call(t, 'listTasks', 401, { path: '/v1/tasks' }), 'UNAUTHENTICATED')
})

t.test('Google Calendar and the assistant, the whole flow on the sandbox calendar (the smoke key is a test-mode key)', async (t) => {
  const token = (await mint(t, settings().apiKey)).json.token as string
  const connect = await call(t, 'connectGoogleCalendar', 200, { method: 'POST', path: '/v1/integrations/google-calendar/connect', token })
  const link = new URL(connect.json.authorizationUrl as string)
  t.match(link.searchParams.get('state'), /^[A-Za-z0-9_-]{43}$/)
  const callback = await send({ path: `${link.pathname}${link.search}`, redirect: 'manual' })
  t.ok(callback.status === 200 || callback.status === 302, 'connected (JSON, or back to INTEGRATIONS_RETURN_URL)')
  const replayed = await send({ path: `${link.pathname}${link.search}`, redirect: 'manual' })
  t.ok(replayed.status === 400 || /error=invalid_state/.test(replayed.headers.get('location') ?? ''), 'a state works once')
  const listed = await call(t, 'listIntegrations', 200, { path: '/v1/integrations', token })
  t.match(listed.json, { data: [{ connected: true, status: 'ok', sandbox: true }] })
  const events = await call(t, 'listCalendarEvents', 200, { path: '/v1/integrations/google-calendar/events?from=2031-01-06T00:00:00Z&to=2031-01-13T00:00:00Z&limit=5', token })
  t.ok((events.json.data as unknown[]).length > 0, 'the sandbox week has events')
  expectError(t, await call(t, 'listCalendarEvents', 400, { path: '/v1/integrations/google-calendar/events?from=2031-01-01T00:00:00Z&to=2032-01-01T00:00:00Z', token }), 'VALIDATION_ERROR')

  const chat = await call(t, 'createChat', 201, { method: 'POST', path: '/v1/chats', token, body: { title: 'smoke assistant', tools: ['calendar', 'tasks'] } })
  const chatId = chat.json.id as string
  const reply = await call(t, 'sendChatMessage', 201, { method: 'POST', path: `/v1/chats/${chatId}/messages`, token, body: { content: 'What is on my calendar this week?' } })
  t.same(reply.json.toolsUsed, ['list_calendar_events'])
  const streamed = await call(t, 'streamChatMessage', 200, { method: 'POST', path: `/v1/chats/${chatId}/stream`, token, body: { content: 'Remind me to water the plants.' } })
  t.match(streamed.text, /event: suggestion\ndata: \{"type":"create_task"/, 'a task is proposed')
  await call(t, 'deleteChat', 204, { method: 'DELETE', path: `/v1/chats/${chatId}`, token })
  await call(t, 'disconnectGoogleCalendar', 204, { method: 'DELETE', path: '/v1/integrations/google-calendar', token })
  expectError(t, await call(t, 'listCalendarEvents', 409, { path: '/v1/integrations/google-calendar/events', token }), 'INTEGRATION_NOT_CONNECTED')
})
