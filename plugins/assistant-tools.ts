import type { FastifyInstance } from 'fastify'
import type { ChatMessage, ChatTool, ChatToolCall } from '../providers/chat.js'
import type { ChatToolName, TaskSuggestionValue } from '../schemas/chats.js'
import type { Principal } from '../schemas/principal.js'
import { MAX_TASK_TITLE } from '../schemas/tasks.js'
import type { AppError } from './errors.js'

/**
 * The assistant tools of a chat (SPEC §17). `list_calendar_events` runs here, on the user's own request (their
 * message), and hands the model titles and times only; `create_task` is never run: it becomes a suggestion the app
 * confirms with POST /v1/tasks.
 */
export const LIST_CALENDAR_EVENTS = 'list_calendar_events'
export const CREATE_TASK = 'create_task'
/** Rounds of tool calls in one reply; the call after the last one may not call tools any more. */
export const MAX_TOOL_ROUNDS = 2
/** What one round's tool calls and results may add to the prompt, in tokens (what a reply's reservation counts per round). */
export const TOOL_ROUND_TOKENS = 2000
/** Events handed to the model at most per call, and the longest title it sees. */
export const MAX_EVENTS_FOR_MODEL = 25
const MAX_TITLE_FOR_MODEL = 100
/** The widest range the model may read at once. */
const MAX_TOOL_RANGE_DAYS = 31
const DAY_MS = 86_400_000
const DATE = /^\d{4}-\d{2}-\d{2}$/

const TOOLS: Record<ChatToolName, ChatTool> = {
  calendar: {
    name: LIST_CALENDAR_EVENTS,
    description: 'Lists the user\'s Google Calendar events between `from` and `to` (ISO 8601 date-times with an offset, at most 31 days apart), ' +
      'soonest first: title, start, end and whether it lasts all day. Use it to answer questions about the user\'s schedule.',
    parameters: {
      type: 'object',
      properties: {
        from: { type: 'string', description: 'Start of the range, e.g. 2026-12-07T00:00:00Z.' },
        to: { type: 'string', description: 'End of the range, e.g. 2026-12-14T00:00:00Z.' }
      },
      required: ['from', 'to'],
      additionalProperties: false
    }
  },
  tasks: {
    name: CREATE_TASK,
    description: 'Proposes a task to the user, who confirms it in the app: the task is NOT created by calling this. Use it when the user ' +
      'wants to do something later or be reminded of it.',
    parameters: {
      type: 'object',
      properties: {
        title: { type: 'string', description: `What is to be done, at most ${MAX_TASK_TITLE} characters.` },
        dueDate: { type: 'string', description: 'The day it is due, YYYY-MM-DD (optional).' }
      },
      required: ['title'],
      additionalProperties: false
    }
  }
}

/** The tools a chat's model is offered. */
export const chatTools = (names: readonly ChatToolName[]): ChatTool[] => names.map((name) => TOOLS[name])

/** What the system prompt adds for a chat with tools: today's date (for "tomorrow") and how to use them. */
export function toolInstructions (names: readonly ChatToolName[], now: Date): string {
  const lines = [`Today is ${now.toISOString().slice(0, 10)} (UTC; it is now ${now.toISOString().slice(11, 16)} UTC).`]
  if (names.includes('calendar')) lines.push(`Call ${LIST_CALENDAR_EVENTS} to learn the user's schedule; never invent events.`)
  if (names.includes('tasks')) lines.push(`Call ${CREATE_TASK} to propose a task; it only exists once the user confirms it, so never say it was created.`)
  return lines.join('\n')
}

/** What running a tool call gave: the text the model reads, and a suggestion for the app (create_task). */
export interface ToolOutcome { call: ChatToolCall, result: string, suggestion?: TaskSuggestionValue, ranOnServer: boolean }

const refusal = (call: ChatToolCall, error: string): ToolOutcome => ({ call, result: JSON.stringify({ error }), ranOnServer: false })

function argumentsOf (call: ChatToolCall): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(call.arguments)
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : null
  } catch {
    return null
  }
}

/** A valid calendar day (not 2026-02-30). */
function isDay (value: string): boolean {
  if (!DATE.test(value)) return false
  const at = new Date(`${value}T00:00:00Z`)
  return !Number.isNaN(at.getTime()) && at.toISOString().slice(0, 10) === value
}

async function listEvents (app: FastifyInstance, principal: Principal, call: ChatToolCall, args: Record<string, unknown>): Promise<ToolOutcome> {
  const from = new Date(String(args.from))
  const to = new Date(String(args.to))
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from) {
    return refusal(call, '`from` and `to` must be ISO 8601 date-times, `to` after `from`.')
  }
  // A range too wide is cut to its first 31 days (the model is told so), not refused.
  const end = new Date(Math.min(to.getTime(), from.getTime() + MAX_TOOL_RANGE_DAYS * DAY_MS))
  try {
    const page = await app.integrations.events(principal, { from: from.toISOString(), to: end.toISOString(), limit: MAX_EVENTS_FOR_MODEL })
    // Titles and times only: no ids, no places.
    const events = page.events.map((e) => ({ title: e.title.slice(0, MAX_TITLE_FOR_MODEL), start: e.start, end: e.end, allDay: e.allDay }))
    return { call, result: JSON.stringify({ from: page.from.toISOString(), to: page.to.toISOString(), events, more: page.truncated }), ranOnServer: true }
  } catch (err) {
    const code = (err as AppError).code
    if (code === 'INTEGRATION_NOT_CONNECTED') {
      return { ...refusal(call, 'Google Calendar is not connected (or must be connected again): tell the user to connect it in the app.'), ranOnServer: true }
    }
    return { ...refusal(call, 'The calendar cannot be read right now: tell the user to try again shortly.'), ranOnServer: true }
  }
}

function proposeTask (call: ChatToolCall, args: Record<string, unknown>): ToolOutcome {
  const title = typeof args.title === 'string' ? args.title.trim() : ''
  if (title === '' || title.length > MAX_TASK_TITLE) return refusal(call, `\`title\` must be 1 to ${MAX_TASK_TITLE} characters.`)
  const dueDate = args.dueDate
  if (dueDate !== undefined && dueDate !== null && (typeof dueDate !== 'string' || !isDay(dueDate))) return refusal(call, '`dueDate` must be a day, YYYY-MM-DD.')
  const task = typeof dueDate === 'string' ? { title, dueDate } : { title }
  return { call, result: JSON.stringify({ proposed: true, awaitingConfirmation: true }), suggestion: { type: 'create_task', task }, ranOnServer: false }
}

/** Runs a round's tool calls of a chat with `tools`; never throws (a failure is the model's to explain). */
export async function runTools (app: FastifyInstance, principal: Principal, names: readonly ChatToolName[], calls: ChatToolCall[]): Promise<ToolOutcome[]> {
  const outcomes: ToolOutcome[] = []
  for (const call of calls) {
    const offered = chatTools(names).some((tool) => tool.name === call.name)
    const args = argumentsOf(call)
    if (!offered) outcomes.push(refusal(call, `There is no tool ${call.name.slice(0, 64)}.`))
    else if (args === null) outcomes.push(refusal(call, 'The arguments are not a JSON object.'))
    else if (call.name === LIST_CALENDAR_EVENTS) outcomes.push(await listEvents(app, principal, call, args))
    else outcomes.push(proposeTask(call, args))
  }
  return outcomes
}

/** The turns a round adds to the conversation: the model's tool calls, then an answer to each. */
export function roundTurns (text: string, outcomes: ToolOutcome[]): ChatMessage[] {
  return [
    { role: 'assistant', content: text, toolCalls: outcomes.map((o) => o.call) },
    ...outcomes.map((o): ChatMessage => ({ role: 'tool', content: o.result, toolCallId: o.call.id }))
  ]
}
