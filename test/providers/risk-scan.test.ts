import { http, HttpResponse } from 'msw'
import pino from 'pino'
import t from 'tap'
import type { ChatCall, ChatCompletion, ChatProvider } from '../../providers/chat.js'
import {
  createAiServiceScanner, createLlmScanner, createSandboxScanner, LLM_CHUNK_CHARS, llmScanTokens, MAX_CATEGORY_CHARS, MAX_RISK_CHARS, MAX_RISKS, mergeRisks, splitText
} from '../../providers/risk-scan.js'
import { interceptNetwork } from '../network.js'

const log = pino({ level: 'silent' })
const never = new AbortController().signal
const input = (text: string) => ({ text, file: null, forceLlm: false, user: 'hash', signal: never })

t.test('lists are merged as kept: trimmed, empty risks dropped, categories in lower case or "other", long fields cut, at most MAX_RISKS', async (t) => {
  t.same(mergeRisks([[{ risk: '  Late steel  ', category: ' Schedule ', context: ' p. 3 ' }, { risk: '   ', category: 'cost', context: '' }], [{ risk: 'late steel!', category: '', context: 'again' }, { risk: 'Budget', category: '', context: '' }]]), [
    { risk: 'Late steel', category: 'schedule', context: 'p. 3' },
    { risk: 'Budget', category: 'other', context: '' }
  ])
  const [long] = mergeRisks([[{ risk: 'r'.repeat(MAX_RISK_CHARS + 5), category: 'c'.repeat(MAX_CATEGORY_CHARS + 5), context: 'x' }]])
  t.equal(long?.risk.length, MAX_RISK_CHARS)
  t.ok(long?.risk.endsWith('…'))
  t.equal(long?.category.length, MAX_CATEGORY_CHARS)
  t.equal(mergeRisks([Array.from({ length: MAX_RISKS + 10 }, (_, i) => ({ risk: `risk ${i}`, category: 'other', context: '' }))]).length, MAX_RISKS)
})

t.test('text is split at paragraph, line, sentence or word breaks, or hard at the limit', async (t) => {
  t.same(splitText('short'), ['short'])
  t.same(splitText('aaaa\n\nbbbb', 6), ['aaaa', 'bbbb'])
  t.same(splitText('aaaa\nbbbb', 6), ['aaaa', 'bbbb'])
  t.same(splitText('aaaa. bbbb', 7), ['aaaa.', 'bbbb'])
  t.same(splitText('aaaa bbbb', 6), ['aaaa', 'bbbb'])
  t.same(splitText('abcdefghij', 4), ['abcd', 'efgh', 'ij'], 'no break at all: cut at the limit')
  t.same(splitText(''), [])
  const parts = splitText('word '.repeat(30_000))
  t.equal(parts.length, Math.ceil(150_000 / LLM_CHUNK_CHARS))
  t.ok(parts.every((p) => p.length <= LLM_CHUNK_CHARS))
  const tokens = llmScanTokens('x'.repeat(100_000))
  t.equal(tokens.output, 3 * 4_000, 'a reply limit per part')
  t.ok(tokens.input > 25_000)
})

/** A chat provider answering from a list, one answer per call. */
function fakeChat (answers: Array<Partial<ChatCompletion>>, calls: ChatCall[] = []): ChatProvider {
  let n = 0
  return {
    name: 'openai',
    model: 'gpt-4o-mini',
    stream: () => { throw new Error('not used') },
    async complete (call) {
      calls.push(call)
      return { text: '', toolArguments: [], toolCalls: [], finishReason: 'stop', usage: null, ...answers[n++ % answers.length] }
    }
  }
}

t.test('the LLM scanner: parts two at a time, counts estimated when the vendor sends none, refusals and broken answers are PROVIDER_ERROR', async (t) => {
  const calls: ChatCall[] = []
  const answer = (risk: string) => ({ text: JSON.stringify({ risks: [{ risk, category: 'cost', context: '' }] }) })
  const scanner = createLlmScanner({ chat: fakeChat([answer('A'), answer('B'), answer('A')], calls), model: 'gpt-4o-mini' })
  const out = await scanner.scan(input(`${'a '.repeat(LLM_CHUNK_CHARS / 2)}\n\n${'b '.repeat(LLM_CHUNK_CHARS / 2)}\n\nc`))
  t.equal(calls.length, 3)
  t.same(out.data.map((r) => r.risk), ['A', 'B'])
  t.ok(out.usage.inputTokens > 0 && out.usage.outputTokens > 0, 'estimated from the text')
  t.match(calls[0], { model: 'gpt-4o-mini', maxOutputTokens: 4000, responseFormat: { name: 'risk_list' }, tools: [] })

  const refused = createLlmScanner({ chat: fakeChat([{ finishReason: 'content_filter' }]), model: 'm' })
  await t.rejects(refused.scan(input('x')), { code: 'PROVIDER_ERROR', message: /refused/ })
  const broken = createLlmScanner({ chat: fakeChat([{ text: '{"risks": [' }]), model: 'm' })
  await t.rejects(broken.scan(input('x')), { code: 'PROVIDER_ERROR', message: /not a complete risk list/ })
})

t.test('the sandbox stops for a client that left, and finds nothing in text without risk words', async (t) => {
  const sandbox = createSandboxScanner()
  const left = new AbortController()
  left.abort()
  await t.rejects(sandbox.scan({ ...input('The crane is late.'), signal: left.signal }))
  t.same((await sandbox.scan(input('All is well. Nothing to see.'))).data, [])
  t.same((await sandbox.scan(input('We will relate the plan later.'))).data, [], 'words that merely contain "late"')
})

t.test('the AI service: busy without Retry-After, 5xx retried then PROVIDER_ERROR', async (t) => {
  let calls = 0
  const answers = [() => HttpResponse.json({ detail: 'busy' }, { status: 429 }), () => HttpResponse.json({ detail: 'down' }, { status: 502 })]
  let which = 0
  interceptNetwork(t, http.post('http://risk.internal/scan', () => { calls++; return (answers[which] as () => Response)() }))
  const scanner = createAiServiceScanner({ url: 'http://risk.internal/', timeoutMs: 1000, retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 10 }, log })
  const busy = await scanner.scan(input('x')).catch((err: unknown) => err)
  t.match(busy, { code: 'PROVIDER_UNAVAILABLE', headers: {} })
  t.notOk((busy as { headers: Record<string, string> }).headers['retry-after'])
  which = 1
  calls = 0
  await t.rejects(scanner.scan(input('x')), { code: 'PROVIDER_ERROR' })
  t.equal(calls, 2, 'a 5xx is tried again')
})
