import t from 'tap'
import { estimatePromptTokens, estimateTokens, toFinishReason, type ChatCall, type ChatEvent } from '../../providers/chat.js'
import { createSandboxChat, createSandboxModels } from '../../providers/sandbox-chat.js'
import { loadCatalog } from '../../plugins/settings-assistant.js'

const catalog = loadCatalog()
const sandbox = createSandboxChat(catalog)
const call = (content: string | null, signal = new AbortController().signal): ChatCall => ({
  messages: content === null ? [{ role: 'system', content: 'sys' }] : [{ role: 'system', content: 'sys' }, { role: 'user', content }],
  tools: [{ name: 'suggest_settings', description: 'd', parameters: {} }],
  user: 'u',
  maxOutputTokens: 100,
  signal
})

t.test('the sandbox answers from the catalog, the same way every time', async (t) => {
  const a = await sandbox.complete(call('How do I make my exports sharper?'))
  const b = await sandbox.complete(call('How do I make my exports sharper?'))
  t.same(a, b)
  const suggestions = JSON.parse(a.toolArguments[0] as string).suggestions
  t.equal(suggestions[0].settingId, 'export.sharpening', 'the best match first')
  t.ok(suggestions.length <= 3)
  t.match(a.text, /^Test mode \(sandbox/)
  t.same(a.usage, { inputTokens: estimatePromptTokens(call('How do I make my exports sharper?')), outputTokens: estimateTokens(a.text + a.toolArguments[0]) })
})

t.test('no match, no words, no question: an answer without suggestions', async (t) => {
  for (const content of ['???', 'zzzz qqqq', null]) {
    const r = await sandbox.complete(call(content))
    t.match(r.text, /no setting in the catalog matches/)
    t.same(r.toolArguments, [])
  }
})

t.test('the sandbox stream: deltas that add up to the text, tool arguments, end; a cancelled call stops', async (t) => {
  const events: ChatEvent[] = []
  for await (const e of sandbox.stream(call('autosave interval'))) events.push(e)
  const whole = await sandbox.complete(call('autosave interval'))
  t.equal(events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join(''), whole.text)
  t.match(events.slice(-2), [{ type: 'tool' }, { type: 'end', finishReason: 'stop' }])

  const controller = new AbortController()
  const iterator = sandbox.stream(call('autosave interval', controller.signal))[Symbol.asyncIterator]()
  await iterator.next()
  controller.abort()
  await t.rejects(iterator.next(), { code: 'PROVIDER_ERROR' })
  await t.rejects(sandbox.complete(call('autosave', controller.signal)), { code: 'PROVIDER_ERROR' })
})

t.test('finish reasons in the contract\'s words; estimates never read zero for text', async (t) => {
  t.same(['stop', 'tool_calls', 'length', 'content_filter', null].map((r) => toFinishReason(r)), ['stop', 'stop', 'length', 'content_filter', 'stop'])
  t.equal(estimateTokens('a'), 1)
  t.equal(estimateTokens(''), 0)
})

t.test('the sandbox of the model catalog names the model it stands for, or the routed one when none is named', async (t) => {
  const models = createSandboxModels()
  const named = await models.complete({ ...call('one two three'), model: 'claude-sonnet-4-5' })
  t.match(named.text, /standing in for claude-sonnet-4-5: your message has 3 words, and this conversation has 1 turn so far/)
  const unnamed = await models.complete(call('one'))
  t.match(unnamed.text, /standing in for the routed model: your message has 1 word,/)
  t.equal(unnamed.finishReason, 'stop')
  const events: ChatEvent[] = []
  for await (const e of models.stream({ ...call('one two'), model: 'gemini-2.5-flash' })) events.push(e)
  t.equal(events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join(''), (await models.complete({ ...call('one two'), model: 'gemini-2.5-flash' })).text, 'the stream adds up to the answer')
  t.match(events.at(-1), { type: 'end', finishReason: 'stop', usage: { inputTokens: Number, outputTokens: Number } })
  t.match((await models.complete(call(null))).text, /your message has 0 words, and this conversation has 0 turns so far/, 'no user message: nothing to count')
})

t.test('the catalog sandbox calls a tool the caller insists on, and answers JSON for structured output', async (t) => {
  const models = createSandboxModels()
  const tools = [{ name: 'first', description: '', parameters: { type: 'object' } }, { name: 'second', description: '', parameters: { type: 'object' } }]
  const required = await models.complete({ ...call('go'), tools, toolChoice: 'required' })
  t.same(required.toolCalls, [{ id: 'call_sandbox_1', name: 'first', arguments: '{}' }], 'required: the first tool')
  t.same(required.toolArguments, ['{}'])
  const named = await models.complete({ ...call('go'), tools, toolChoice: { name: 'second' } })
  t.same(named.toolCalls?.map((c) => c.name), ['second'])
  for (const choice of ['auto', 'none', undefined] as const) {
    t.same((await models.complete({ ...call('go'), tools, ...(choice === undefined ? {} : { toolChoice: choice }) })).toolCalls, [], `${choice ?? 'no choice'}: no call`)
  }
  const events: ChatEvent[] = []
  for await (const e of models.stream({ ...call('go'), tools, toolChoice: 'required', responseFormat: { name: 'r', schema: {} } })) events.push(e)
  t.match(events.at(-2), { type: 'tool', id: 'call_sandbox_1', name: 'first', arguments: '{}' })
  t.match(JSON.parse(events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join('')), { sandbox: /^Test mode/ })
})

t.test('the sandbox as the productivity assistant: reads the calendar, proposes tasks, answers from tool results', async (t) => {
  const models = createSandboxModels()
  const tools = [
    { name: 'list_calendar_events', description: '', parameters: {} },
    { name: 'create_task', description: '', parameters: {} }
  ]
  const base = { tools, user: 'h', maxOutputTokens: 100, signal: new AbortController().signal }
  const ask = (messages: ChatCall['messages']) => models.complete({ ...base, messages })
  t.match((await ask([{ role: 'user', content: 'What is on my calendar?' }])).toolCalls, [{ name: 'list_calendar_events' }])
  t.match((await ask([{ role: 'user', content: 'Remind me to.' }])).toolCalls, [{ name: 'create_task', arguments: /"title":"Follow up"/ }], 'a task with no words gets a title')
  const plain = await ask([{ role: 'user', content: 'Hello there' }])
  t.same(plain.toolCalls, [])
  t.match(plain.text, /your message has 2 words/, 'nothing to do with tools: the usual sandbox answer')
  const answered = await ask([
    { role: 'user', content: 'What is on my calendar?' },
    { role: 'assistant', content: '', toolCalls: [{ id: 'a', name: 'list_calendar_events', arguments: '{}' }] },
    { role: 'tool', toolCallId: 'a', content: JSON.stringify({ events: [] }) },
    { role: 'tool', toolCallId: 'b', content: JSON.stringify({ error: 'Google Calendar is not connected' }) }
  ])
  t.match(answered.text, /no events in the next 7 days.*A tool answered: Google Calendar is not connected/)
  // An OpenAI-compatible caller's own tool of the same name answers in plain text: no crash, a plain answer.
  const foreign = await ask([
    { role: 'user', content: 'What is on my calendar?' },
    { role: 'assistant', content: '', toolCalls: [{ id: 'a', name: 'list_calendar_events', arguments: '{}' }] },
    { role: 'tool', toolCallId: 'a', content: 'sunny, two meetings' }
  ])
  t.match(foreign.text, /Test mode .* A tool answered\.$/)
  const stream = models.stream({ ...base, messages: [{ role: 'user', content: 'Remind me to call Sam' }] })
  const events = []
  for await (const event of stream) events.push(event)
  t.same(events.map((e) => e.type), ['tool', 'end'], 'a reply that is only a tool call has no delta')
})
