import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { CreateTaskRequest, MAX_TASKS_PER_USER, Task, TaskId, TaskListQuery, TaskPage, UpdateTaskRequest } from '../../../schemas/tasks.js'

const common = { config: { auth: 'ai-token' as const }, tags: ['tasks'], security: [{ aiToken: [] }] }
const byId = Type.Object({ id: TaskId })
const userOf = (request: { principal: Principal | null }) => (request.principal as Principal).userId
const READ_ERRORS = ['VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED'] as const

/** /v1/tasks: the productivity assistant's tasks (SPEC §17). Another user's task is NOT_FOUND. */
const tasks: FastifyPluginAsyncTypebox = async (app) => {
  app.post('', {
    config: common.config,
    schema: {
      operationId: 'createTask',
      summary: 'Create a task',
      description: 'Also how an app confirms a `create_task` suggestion of the assistant (the assistant never creates one itself). ' +
        `The title is stored encrypted. At most ${MAX_TASKS_PER_USER.toLocaleString('en-US')} tasks per user (CONFLICT beyond).`,
      tags: common.tags,
      security: common.security,
      body: ref(CreateTaskRequest),
      response: { 201: ref(Task), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'CONFLICT', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    const task = await app.tasks.create(userOf(request), request.body)
    return reply.code(201).header('location', `/v1/tasks/${task.id}`).send(task)
  })

  app.get('', {
    config: common.config,
    schema: {
      operationId: 'listTasks',
      summary: 'List your tasks',
      description: 'Newest first, paged with `cursor` and `limit`; filtered by `status` and by due day (`dueFrom`, `dueTo`, inclusive).',
      tags: common.tags,
      security: common.security,
      querystring: TaskListQuery,
      response: { 200: ref(TaskPage), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async (request) => app.tasks.list(userOf(request), request.query))

  app.get('/:id', {
    config: common.config,
    schema: { operationId: 'getTask', summary: 'Read a task', tags: common.tags, security: common.security, params: byId, response: { 200: ref(Task), ...errorResponses(...READ_ERRORS) } }
  }, async (request) => app.tasks.get(userOf(request), request.params.id))

  app.patch('/:id', {
    config: common.config,
    schema: {
      operationId: 'updateTask',
      summary: 'Change a task',
      description: 'Any of title, status and dueDate (`null` removes the due date).',
      tags: common.tags,
      security: common.security,
      params: byId,
      body: ref(UpdateTaskRequest),
      response: { 200: ref(Task), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request) => app.tasks.update(userOf(request), request.params.id, request.body))

  app.delete('/:id', {
    config: common.config,
    schema: {
      operationId: 'deleteTask',
      summary: 'Delete a task',
      tags: common.tags,
      security: common.security,
      params: byId,
      response: { 204: { description: 'Deleted.', type: 'null' }, ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    await app.tasks.remove(userOf(request), request.params.id)
    return reply.code(204).send(null)
  })
}

export default tasks
