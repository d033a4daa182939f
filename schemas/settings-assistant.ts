import Type, { type Static } from 'typebox'
import { isoTime, ref } from './refs.js'

/** Limits of a request (SPEC §5); the prompt sent to the provider stays bounded whatever the client sends. */
export const MESSAGE_MAX_CHARS = 2000
export const HISTORY_MAX_TURNS = 10
export const HISTORY_TURN_MAX_CHARS = 4000
export const CONTEXT_MAX_SETTINGS = 40
const VALUE_MAX_CHARS = 1000

const SETTING_ID = '^[a-z][A-Za-z0-9]*(\\.[a-z][A-Za-z0-9]*)+$'
const settingId = (description: string) => Type.String({ pattern: SETTING_ID, maxLength: 80, description })

const settingBase = {
  id: settingId('Stable id the app knows the setting by, e.g. `export.sharpening`.'),
  label: Type.String({ minLength: 1, maxLength: 80, description: 'Name shown in the app.' }),
  panel: Type.String({ minLength: 1, maxLength: 60, description: 'Preferences panel the setting is on.' }),
  description: Type.String({ minLength: 1, maxLength: 500, description: 'What the setting does, in one or two sentences.' })
}

export const CatalogSetting = Type.Union([
  Type.Object({ ...settingBase, type: Type.Literal('boolean') }, { additionalProperties: false }),
  Type.Object({
    ...settingBase,
    type: Type.Literal('enum'),
    values: Type.Array(Type.String({ minLength: 1, maxLength: 80 }), { minItems: 1, maxItems: 50, uniqueItems: true, description: 'Allowed values.' })
  }, { additionalProperties: false }),
  Type.Object({
    ...settingBase,
    type: Type.Union([Type.Literal('integer'), Type.Literal('number')]),
    min: Type.Number({ description: 'Smallest allowed value.' }),
    max: Type.Number({ description: 'Largest allowed value.' })
  }, { additionalProperties: false }),
  Type.Object({
    ...settingBase,
    type: Type.Literal('string'),
    maxLength: Type.Integer({ minimum: 1, maximum: VALUE_MAX_CHARS, description: 'Longest allowed value, in characters.' }),
    pattern: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Regular expression a value must match.' }))
  }, { additionalProperties: false })
], { $id: 'CatalogSetting', title: 'CatalogSetting', description: 'One setting the assistant may suggest, with the values it accepts.' })
export type CatalogSettingValue = Static<typeof CatalogSetting>

export const SettingsCatalog = Type.Object({
  version: Type.String({ minLength: 1, maxLength: 40, description: 'Version of the catalog, for the app to compare with its own.' }),
  settings: Type.Array(ref(CatalogSetting), { minItems: 1, maxItems: 500 })
}, {
  $id: 'SettingsCatalog',
  title: 'SettingsCatalog',
  additionalProperties: false,
  description: 'The settings the assistant knows and may suggest changes to (SETTINGS_CATALOG_FILE, or the bundled catalog).',
  examples: [{
    version: '2026-11-1',
    settings: [{
      id: 'export.sharpening',
      label: 'Output sharpening',
      panel: 'Export',
      type: 'enum',
      values: ['off', 'low', 'standard', 'high'],
      description: 'Sharpening applied when exporting.'
    }]
  }]
})
export type SettingsCatalogValue = Static<typeof SettingsCatalog>

/** The catalog as a file: the same shape, checked without references. */
export const SettingsCatalogFile = Type.Object({
  version: SettingsCatalog.properties.version,
  settings: Type.Array(CatalogSetting, { minItems: 1, maxItems: 500 })
}, { additionalProperties: false })

export const SettingValue = Type.Union([Type.Boolean(), Type.Number(), Type.String({ maxLength: VALUE_MAX_CHARS })], {
  description: 'A boolean, a number or a string, as the setting\'s type says.'
})
export type SettingValueType = Static<typeof SettingValue>

export const AssistantRequest = Type.Object({
  message: Type.String({ minLength: 1, maxLength: MESSAGE_MAX_CHARS, description: 'The user\'s question.' }),
  history: Type.Optional(Type.Array(Type.Object({
    role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
    content: Type.String({ minLength: 1, maxLength: HISTORY_TURN_MAX_CHARS })
  }, { additionalProperties: false }), { maxItems: HISTORY_MAX_TURNS, description: 'Earlier turns of this conversation, oldest first.' })),
  context: Type.Optional(Type.Object({
    appVersion: Type.Optional(Type.String({ pattern: '^[0-9A-Za-z.+-]{1,40}$', description: 'Version of the desktop app.' })),
    platform: Type.Optional(Type.Union([Type.Literal('windows'), Type.Literal('macos'), Type.Literal('linux')])),
    settings: Type.Optional(Type.Array(Type.Object({
      id: settingId('Catalog id of the setting.'),
      value: SettingValue
    }, { additionalProperties: false }), { maxItems: CONTEXT_MAX_SETTINGS, description: 'Current values of relevant settings.' }))
  }, { additionalProperties: false }))
}, {
  $id: 'AssistantRequest',
  title: 'AssistantRequest',
  additionalProperties: false,
  examples: [{
    message: 'How do I make my exports sharper?',
    history: [],
    context: { appVersion: '4.2.0', platform: 'windows', settings: [{ id: 'export.sharpening', value: 'off' }] }
  }]
})
export type AssistantRequestValue = Static<typeof AssistantRequest>

export const Suggestion = Type.Object({
  settingId: settingId('Catalog id of the setting to change.'),
  value: SettingValue,
  reason: Type.String({ maxLength: 500, description: 'Why, in one sentence, for the one-click action.' })
}, {
  $id: 'Suggestion',
  title: 'Suggestion',
  additionalProperties: false,
  description: 'A setting change checked against the catalog (known id, right type, allowed value).',
  examples: [{ settingId: 'export.sharpening', value: 'standard', reason: 'Adds output sharpening to exported images.' }]
})
export type SuggestionValue = Static<typeof Suggestion>

export const AssistantUsage = Type.Object({
  inputTokens: Type.Integer({ minimum: 0 }),
  outputTokens: Type.Integer({ minimum: 0 }),
  costMicroUsd: Type.Integer({ minimum: 0, description: 'What the call cost you, in micro-USD: with your plan\'s markup when it is billed in credits, the provider\'s list price otherwise (0 in test mode).' }),
  costCents: Type.Integer({ minimum: 0, description: 'costMicroUsd in whole cents, rounded half up.' })
}, { additionalProperties: false })

export const QuotaState = Type.Object({
  limit: Type.Integer(),
  used: Type.Integer({ description: 'Units used in this period, calls in flight included.' }),
  remaining: Type.Integer(),
  resetsAt: isoTime('Start of the next period.')
}, { $id: 'QuotaState', title: 'QuotaState', additionalProperties: false })

const FinishReason = Type.Union([Type.Literal('stop'), Type.Literal('length'), Type.Literal('content_filter')], {
  description: '`stop`: complete; `length`: cut at the reply length limit; `content_filter`: cut by the provider\'s filter.'
})

export const AssistantReply = Type.Object({
  id: Type.String({ description: 'Id of this reply (the request id).' }),
  reply: Type.String({ description: 'The answer, plain text.' }),
  suggestions: Type.Array(ref(Suggestion)),
  finishReason: FinishReason,
  usage: AssistantUsage,
  quota: ref(QuotaState)
}, {
  $id: 'AssistantReply',
  title: 'AssistantReply',
  additionalProperties: false,
  examples: [{
    id: '7f2c1f9e-3b7a-4c59-9d43-6f0b1c2a9e10',
    reply: 'Turn on output sharpening in the Export panel.',
    suggestions: [{ settingId: 'export.sharpening', value: 'standard', reason: 'Adds output sharpening to exported images.' }],
    finishReason: 'stop',
    usage: { inputTokens: 812, outputTokens: 64, costMicroUsd: 161, costCents: 0 },
    quota: { limit: 20000, used: 876, remaining: 19124, resetsAt: '2026-11-23T00:00:00.000Z' }
  }]
})
export type AssistantReplyValue = Static<typeof AssistantReply>

/** The `delta` event of a stream: the next piece of the reply's text. */
export const AssistantDelta = Type.Object({
  text: Type.String({ description: 'The next piece of the reply; the reply is the deltas joined in order.' })
}, {
  $id: 'AssistantDelta',
  title: 'AssistantDelta',
  additionalProperties: false,
  examples: [{ text: 'Turn on output sharpening' }]
})

/** The `done` event of a stream: the reply without its text and suggestions, which came before. */
export const AssistantDone = Type.Object({
  id: AssistantReply.properties.id,
  finishReason: FinishReason,
  usage: AssistantUsage,
  quota: ref(QuotaState)
}, { $id: 'AssistantDone', title: 'AssistantDone', additionalProperties: false })

export const ASSISTANT_STREAM_DESCRIPTION = [
  'Server-sent events, one JSON object per `data:` line:',
  '`event: delta` an AssistantDelta `{"text": "..."}` (repeated) → `event: suggestion` a Suggestion (zero or more) →',
  '`event: done` an AssistantDone. A failure after the stream started ends it with `event: error` and an',
  'ErrorResponse body; the stream never ends silently.'
].join(' ')

export const settingsAssistantSchemas = [CatalogSetting, SettingsCatalog, AssistantRequest, Suggestion, QuotaState, AssistantReply, AssistantDelta, AssistantDone]
