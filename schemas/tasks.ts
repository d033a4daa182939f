import Type, { type Static } from 'typebox'
import { Page, PageQuery } from './pagination.js'
import { isoTime } from './refs.js'

/** The longest task title (a task is a line in a list, not a document). */
export const MAX_TASK_TITLE = 500
/** Tasks a user may keep: far beyond a to-do list, bounded so one account cannot grow without end. */
export const MAX_TASKS_PER_USER = 10_000

export const TASK_STATUSES = ['todo', 'doing', 'done'] as const
export type TaskStatus = typeof TASK_STATUSES[number]

export const TaskId = Type.String({ pattern: '^task_[0-9A-Za-z]{16}$', description: 'Id of a task.', examples: ['task_8hQ2vN5kT1pX7mR3'] })
const Status = Type.Union([Type.Literal('todo'), Type.Literal('doing'), Type.Literal('done')], { description: '`todo`, `doing` or `done`.' })
const Title = Type.String({ minLength: 1, maxLength: MAX_TASK_TITLE, pattern: '\\S', description: `What is to be done: 1 to ${MAX_TASK_TITLE} characters, not only spaces. Stored encrypted.` })
const DueDate = Type.String({ format: 'date', description: 'The day it is due (YYYY-MM-DD, the user\'s own calendar day).', examples: ['2026-12-18'] })

export const CreateTaskRequest = Type.Object({
  title: Title,
  status: Type.Optional(Status),
  dueDate: Type.Optional(DueDate)
}, { $id: 'CreateTaskRequest', title: 'CreateTaskRequest', additionalProperties: false, examples: [{ title: 'Book the venue for the offsite', dueDate: '2026-12-18' }] })

export const UpdateTaskRequest = Type.Object({
  title: Type.Optional(Title),
  status: Type.Optional(Status),
  dueDate: Type.Optional(Type.Union([DueDate, Type.Null()], { description: 'A day, or null to remove the due date.' }))
}, { $id: 'UpdateTaskRequest', title: 'UpdateTaskRequest', additionalProperties: false, minProperties: 1, examples: [{ status: 'done' }] })

export const Task = Type.Object({
  id: TaskId,
  title: Type.String(),
  status: Status,
  dueDate: Type.Optional(DueDate),
  createdAt: isoTime('When it was created.'),
  updatedAt: isoTime('When it last changed.')
}, {
  $id: 'Task',
  title: 'Task',
  additionalProperties: false,
  examples: [{ id: 'task_8hQ2vN5kT1pX7mR3', title: 'Book the venue for the offsite', status: 'todo', dueDate: '2026-12-18', createdAt: '2026-12-04T09:00:00.000Z', updatedAt: '2026-12-04T09:00:00.000Z' }]
})
export type TaskValue = Static<typeof Task>

export const TaskListQuery = Type.Object({
  ...PageQuery,
  status: Type.Optional(Status),
  dueFrom: Type.Optional(Type.String({ format: 'date', description: 'Only tasks due on this day or later (tasks without a due date are left out).' })),
  dueTo: Type.Optional(Type.String({ format: 'date', description: 'Only tasks due on this day or earlier (tasks without a due date are left out).' }))
}, { additionalProperties: false })

export const TaskPage = Page(Task, { $id: 'TaskPage', description: 'A page of your tasks, newest first.' })

export const taskSchemas = [CreateTaskRequest, UpdateTaskRequest, Task, TaskPage]
