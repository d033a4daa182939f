import fp from 'fastify-plugin'
import type { OpenAIChat } from '../providers/openai-chat.js'
import type { Mode } from '../schemas/principal.js'

/** The levels of MODERATION_THRESHOLDS, most severe first. */
export const LEVELS = ['high', 'medium', 'low'] as const
export type Level = (typeof LEVELS)[number]
export type Severity = Level | 'none'
export type Thresholds = Record<Level, number> & { categories: Record<string, Partial<Record<Level, number>>> }

export const DEFAULT_THRESHOLDS = 'high=0.8,medium=0.5,low=0.2'
const ENTRY = /^(?:([a-z][a-z/-]*):)?(high|medium|low)=(0(?:\.\d+)?|1(?:\.0+)?)$/

/**
 * MODERATION_THRESHOLDS: comma-separated `level=score` entries (high, medium, low; scores 0 to 1), each of which
 * may be given for one category as `category:level=score` (`self-harm:high=0.4`). Returns the problems instead
 * when there are any; a category's levels fall back to the general ones, capped by its own more severe ones.
 */
export function parseThresholds (text: string): Thresholds | string[] {
  const thresholds: Thresholds = { high: 0.8, medium: 0.5, low: 0.2, categories: {} }
  const problems: string[] = []
  for (const raw of text.split(',')) {
    const entry = raw.trim()
    const match = ENTRY.exec(entry)
    if (match === null) {
      problems.push(`MODERATION_THRESHOLDS: "${entry}" is not level=score or category:level=score (levels high, medium, low; scores 0 to 1).`)
      continue
    }
    const [, category, level, score] = match as unknown as [string, string | undefined, Level, string]
    if (category === undefined) thresholds[level] = Number(score)
    else (thresholds.categories[category] ??= {})[level] = Number(score)
  }
  for (const category of [undefined, ...Object.keys(thresholds.categories)]) {
    const levels = category === undefined ? thresholds : levelsOf(thresholds, category)
    if (!(levels.high >= levels.medium && levels.medium >= levels.low)) {
      problems.push(`MODERATION_THRESHOLDS: ${category === undefined ? 'the levels' : `the levels of ${category}`} must not rise from high to low (high ${levels.high}, medium ${levels.medium}, low ${levels.low}).`)
    }
  }
  return problems.length > 0 ? problems : thresholds
}

function levelsOf (thresholds: Thresholds, category: string): Record<Level, number> {
  const own = thresholds.categories[category] ?? {}
  // A category's level not given is the general one, never above its own more severe level.
  const high = own.high ?? thresholds.high
  const medium = own.medium ?? Math.min(thresholds.medium, high)
  return { high, medium, low: own.low ?? Math.min(thresholds.low, medium) }
}

/** What a check found: the most severe level any category reached, and the categories that reached it. */
export interface Verdict { severity: Severity, categories: string[] }

/** The severity of a set of scores (one record per text): per category, the highest level its score reaches. */
export function severityOf (scores: Array<Record<string, number>>, thresholds: Thresholds): Verdict {
  let severity: Severity = 'none'
  let categories: string[] = []
  const rank = (s: Severity) => s === 'none' ? LEVELS.length : LEVELS.indexOf(s)
  for (const record of scores) {
    for (const [category, score] of Object.entries(record)) {
      const levels = levelsOf(thresholds, category)
      const level = LEVELS.find((l) => score >= levels[l])
      if (level === undefined || rank(level) > rank(severity)) continue
      if (rank(level) < rank(severity)) { severity = level; categories = [] }
      if (!categories.includes(category)) categories.push(category)
    }
  }
  return { severity, categories: categories.sort() }
}

const SANDBOX_MARK = /\bmoderation-test:([a-z][a-z/-]*)=(0(?:\.\d+)?|1(?:\.0+)?)\b/g

/**
 * The test-mode moderator: offline and deterministic, it scores a text only by the marks it carries —
 * `moderation-test:violence=0.9` gives the category violence the score 0.9 — and everything else 0.
 */
export function sandboxScores (texts: string[]): Array<Record<string, number>> {
  return texts.map((text) => Object.fromEntries([...text.matchAll(SANDBOX_MARK)].map((m) => [m[1] as string, Number(m[2])])))
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Two-way moderation of chats (MODERATION=openai): what the texts score, in the thresholds' severities. */
    moderation: {
      enabled: boolean
      check: (mode: Mode, texts: string[], signal: AbortSignal) => Promise<Verdict>
    }
  }
}

/** MODERATION=openai: chats are checked through OpenAI's moderation endpoint (test mode: the sandbox moderator). */
export default fp(async function moderation (app) {
  const thresholds = parseThresholds(app.config.MODERATION_THRESHOLDS) as Thresholds
  app.decorate('moderation', {
    enabled: app.config.MODERATION === 'openai',
    async check (mode: Mode, texts: string[], signal: AbortSignal) {
      if (mode === 'test') return severityOf(sandboxScores(texts), thresholds)
      // Startup refuses MODERATION=openai without OPENAI_API_KEY.
      return severityOf(await (app.openaiChat as OpenAIChat).moderationScores(texts, signal), thresholds)
    }
  })
}, { name: 'moderation', fastify: '5.x', dependencies: ['config', 'openai-chat'] })
