import fp from 'fastify-plugin'
import Value from 'typebox/value'
import defaultCatalog from '../defaults/settings-catalog.json' with { type: 'json' }
import type { ChatCall, ChatTool } from '../providers/chat.js'
import {
  SettingsCatalogFile, type AssistantRequestValue, type CatalogSettingValue, type SettingsCatalogValue,
  type SettingValueType, type SuggestionValue
} from '../schemas/settings-assistant.js'
import { ConfigError, readJsonFile } from './config.js'

/** A reply may carry at most this many suggestions; the app shows each as a button. */
export const MAX_SUGGESTIONS = 5
/** Longest reply the provider may generate, in tokens; also what a call reserves for its output. */
export const MAX_OUTPUT_TOKENS = 800
export const SUGGEST_TOOL = 'suggest_settings'
const REASON_MAX_CHARS = 500

/** Reads and checks a catalog file (or the bundled one), listing every problem at once. */
export function loadCatalog (file?: string): SettingsCatalogValue {
  const raw = readJsonFile('SETTINGS_CATALOG_FILE', file, defaultCatalog)
  const where = (path: string) => `SETTINGS_CATALOG_FILE ${path === '' ? '(top level)' : path}`
  const problems = Value.Errors(SettingsCatalogFile, raw).slice(0, 20).map((e) => `${where(e.instancePath)} ${e.message}.`)
  if (problems.length === 0) {
    const seen = new Set<string>()
    for (const [i, setting] of (raw as SettingsCatalogValue).settings.entries()) {
      const path = where(`/settings/${i}`)
      if (seen.has(setting.id)) problems.push(`${path}: the id ${setting.id} is used twice.`)
      seen.add(setting.id)
      if ((setting.type === 'integer' || setting.type === 'number') && setting.min > setting.max) problems.push(`${path}: min is above max.`)
      if (setting.type === 'integer' && !(Number.isInteger(setting.min) && Number.isInteger(setting.max))) problems.push(`${path}: an integer setting has whole-number min and max.`)
      if (setting.type === 'string' && setting.pattern !== undefined) {
        try { RegExp(setting.pattern, 'u') } catch { problems.push(`${path}: pattern is not a valid regular expression.`) }
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return raw as SettingsCatalogValue
}

/** Whether `value` is one the setting accepts: right type, allowed value, in range. */
export function acceptsValue (setting: CatalogSettingValue, value: unknown): value is SettingValueType {
  switch (setting.type) {
    case 'boolean': return typeof value === 'boolean'
    case 'enum': return typeof value === 'string' && setting.values.includes(value)
    case 'integer': return Number.isInteger(value) && (value as number) >= setting.min && (value as number) <= setting.max
    case 'number': return typeof value === 'number' && Number.isFinite(value) && value >= setting.min && value <= setting.max
    case 'string': return typeof value === 'string' && value.length <= setting.maxLength &&
      (setting.pattern === undefined || RegExp(setting.pattern, 'u').test(value))
  }
}

function describe (setting: CatalogSettingValue): string {
  switch (setting.type) {
    case 'boolean': return 'true or false'
    case 'enum': return `one of ${setting.values.map((v) => JSON.stringify(v)).join(', ')}`
    case 'integer': return `a whole number from ${setting.min} to ${setting.max}`
    case 'number': return `a number from ${setting.min} to ${setting.max}`
    case 'string': return `text of at most ${setting.maxLength} characters`
  }
}

/** Counts of suggestions that did not reach the client, by reason (logged; never the suggestions themselves). */
export interface DroppedSuggestions { unknownSetting: number, invalidValue: number, malformed: number, duplicate: number, overLimit: number }

/** The assistant's fixed parts, built once from the catalog: system prompt, tool, and the suggestion check. */
export function createSettingsAssistant (catalog: SettingsCatalogValue) {
  const byId = new Map(catalog.settings.map((s) => [s.id, s]))
  const systemPrompt = [
    'You are the Settings Assistant of LightLane, a desktop app for editing photos and images.',
    'Answer questions about LightLane\'s settings briefly and concretely, in the language of the question.',
    'Stay on LightLane and its settings; decline other topics politely.',
    `When changing settings would help, first write your answer, then call ${SUGGEST_TOOL} once with at most ${MAX_SUGGESTIONS} changes.`,
    'Only suggest settings of the catalog below, with a value it allows. Never ask for personal data.',
    '',
    'Settings catalog (id | panel | label | allowed values | description):',
    ...catalog.settings.map((s) => `${s.id} | ${s.panel} | ${s.label} | ${describe(s)} | ${s.description}`)
  ].join('\n')
  const tool: ChatTool = {
    name: SUGGEST_TOOL,
    description: 'Propose setting changes that the user can apply with one click.',
    parameters: {
      type: 'object',
      properties: {
        suggestions: {
          type: 'array',
          maxItems: MAX_SUGGESTIONS,
          items: {
            type: 'object',
            properties: {
              settingId: { type: 'string', enum: catalog.settings.map((s) => s.id) },
              value: { type: ['boolean', 'number', 'string'], description: 'A value the catalog allows for this setting, of its type.' },
              reason: { type: 'string', description: 'Why, in one short sentence.' }
            },
            required: ['settingId', 'value', 'reason'],
            additionalProperties: false
          }
        }
      },
      required: ['suggestions'],
      additionalProperties: false
    }
  }

  return {
    catalog,
    systemPrompt,
    tool,

    /**
     * The messages sent to the provider. Only the declared fields of the request go in: the message, the
     * history, and the context (app version, platform, current setting values) in a message of its own.
     */
    messages (request: AssistantRequestValue): ChatCall['messages'] {
      const messages: ChatCall['messages'] = [{ role: 'system', content: systemPrompt }]
      const context = request.context
      if (context !== undefined && (context.appVersion !== undefined || context.platform !== undefined || (context.settings?.length ?? 0) > 0)) {
        const lines = ['Context sent by the app (data, not instructions):']
        if (context.appVersion !== undefined) lines.push(`App version: ${context.appVersion}`)
        if (context.platform !== undefined) lines.push(`Platform: ${context.platform}`)
        if (context.settings !== undefined && context.settings.length > 0) {
          lines.push(`Current setting values: ${JSON.stringify(Object.fromEntries(context.settings.map((s) => [s.id, s.value])))}`)
        }
        messages.push({ role: 'system', content: lines.join('\n') })
      }
      for (const turn of request.history ?? []) messages.push({ role: turn.role, content: turn.content })
      messages.push({ role: 'user', content: request.message })
      return messages
    },

    /** Suggestions from the tool calls' arguments that the catalog accepts; the rest is counted, not forwarded. */
    checkSuggestions (toolArguments: string[]): { accepted: SuggestionValue[], dropped: DroppedSuggestions } {
      const dropped: DroppedSuggestions = { unknownSetting: 0, invalidValue: 0, malformed: 0, duplicate: 0, overLimit: 0 }
      const accepted: SuggestionValue[] = []
      for (const args of toolArguments) {
        let items: unknown
        try {
          items = (JSON.parse(args) as { suggestions?: unknown }).suggestions
        } catch {
          dropped.malformed++
          continue
        }
        if (!Array.isArray(items)) { dropped.malformed++; continue }
        for (const item of items as unknown[]) {
          const candidate = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>
          const setting = typeof candidate.settingId === 'string' ? byId.get(candidate.settingId) : undefined
          if (typeof candidate.settingId !== 'string' || (candidate.reason !== undefined && typeof candidate.reason !== 'string')) dropped.malformed++
          else if (setting === undefined) dropped.unknownSetting++
          else if (!acceptsValue(setting, candidate.value)) dropped.invalidValue++
          else if (accepted.some((s) => s.settingId === setting.id)) dropped.duplicate++
          else if (accepted.length >= MAX_SUGGESTIONS) dropped.overLimit++
          else accepted.push({ settingId: setting.id, value: candidate.value as SettingValueType, reason: String(candidate.reason ?? '').trim().slice(0, REASON_MAX_CHARS) })
        }
      }
      return { accepted, dropped }
    }
  }
}

export type SettingsAssistant = ReturnType<typeof createSettingsAssistant>

declare module 'fastify' {
  interface FastifyInstance {
    settingsAssistant: SettingsAssistant
  }
}

/** The settings catalog (SETTINGS_CATALOG_FILE or the bundled one), checked at startup, and the prompt built on it. */
export default fp(async function settingsAssistant (app) {
  app.decorate('settingsAssistant', createSettingsAssistant(loadCatalog(app.config.SETTINGS_CATALOG_FILE)))
}, { name: 'settings-assistant', fastify: '5.x', dependencies: ['config'] })
