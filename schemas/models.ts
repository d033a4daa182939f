import Type, { type Static } from 'typebox'

/** The model vendors the service can call (SPEC §15); each has `<VENDOR>_API_KEY` and `<VENDOR>_BASE_URL`. */
export const VENDOR_IDS = ['openai', 'anthropic', 'qwen', 'deepseek', 'xai', 'gemini'] as const
export type VendorId = typeof VENDOR_IDS[number]

/** What the local classifier finds a message asks for; the routing matrix maps it (and the plan) to a model. */
export const TASK_CLASSES = ['summary', 'reasoning', 'creative', 'code', 'general'] as const
export type TaskClass = typeof TASK_CLASSES[number]

const MODEL_ID_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$'
const usdPer1M = (description: string) => Type.Number({ minimum: 0, maximum: 10_000, description })

const vendorSchema = (description: string) => Type.Unsafe<VendorId>(Type.Union(VENDOR_IDS.map((v) => Type.Literal(v)), { description }))
const Vendor = vendorSchema('Who serves the model.')

/** One model of the catalog file (MODELS_FILE, default defaults/models.json). */
export const CatalogModel = Type.Object({
  id: Type.String({ pattern: MODEL_ID_PATTERN, description: 'Our id of the model: what clients send as `model`.' }),
  name: Type.String({ minLength: 1, maxLength: 80 }),
  vendor: Vendor,
  upstreamModel: Type.String({ minLength: 1, maxLength: 128, description: 'The vendor\'s own model name, sent in its API call.' }),
  contextTokens: Type.Integer({ minimum: 1024, maximum: 10_000_000 }),
  maxOutputTokens: Type.Integer({ minimum: 16, maximum: 1_000_000 }),
  inputCostPer1M: usdPer1M('USD per million input tokens, the vendor\'s list price (whole micro-USD: at most 6 decimals).'),
  outputCostPer1M: usdPer1M('USD per million output tokens.'),
  premium: Type.Boolean({ description: 'Only plans whose routing entry allows premium models may use it.' }),
  capabilities: Type.Array(Type.String({ pattern: '^[a-z][a-z-]{0,31}$' }), { maxItems: 20, description: 'For example chat, tools, reasoning, code, long-context.' })
}, { additionalProperties: false })
export type CatalogModelValue = Static<typeof CatalogModel>

export const ModelsFile = Type.Object({
  pricesAsOf: Type.String({ format: 'date', description: 'When the prices were last checked against the vendors\' price pages.' }),
  models: Type.Array(CatalogModel, { minItems: 1, maxItems: 500 })
}, { additionalProperties: false })
export type ModelsFileValue = Static<typeof ModelsFile>

const ModelRef = Type.String({ pattern: MODEL_ID_PATTERN })
const Routes = Type.Object(Object.fromEntries(TASK_CLASSES.map((task) => [task, ModelRef])) as Record<TaskClass, typeof ModelRef>, {
  additionalProperties: false,
  description: 'The model for each task class.'
})
const PlanRouting = Type.Object({
  premium: Type.Boolean({ description: 'Whether the plan may use premium models (routed or asked for).' }),
  routes: Routes
}, { additionalProperties: false })

/** The routing file (ROUTING_FILE, default defaults/routing.json): plan × task class → model, and fallback chains. */
export const RoutingFile = Type.Object({
  default: PlanRouting,
  plans: Type.Record(Type.String(), PlanRouting, { description: 'Plans routed otherwise than `default`.' }),
  fallbacks: Type.Record(ModelRef, Type.Array(ModelRef, { maxItems: 8 }), {
    description: 'Models tried, in order, when a model\'s vendor fails before the first byte.'
  })
}, { additionalProperties: false })
export type RoutingFileValue = Static<typeof RoutingFile>

/** A model as `GET /v1/ai/models` shows it to a caller. */
export const ModelInfo = Type.Object({
  id: Type.String({ examples: ['gpt-4o-mini'] }),
  name: Type.String({ examples: ['GPT-4o mini'] }),
  vendor: vendorSchema('openai, anthropic, qwen, deepseek, xai or gemini.'),
  contextTokens: Type.Integer({ examples: [128000] }),
  maxOutputTokens: Type.Integer({ examples: [16384] }),
  inputCostPer1M: Type.Number({ description: 'USD per million input tokens (vendor list price, before any markup).', examples: [0.15] }),
  outputCostPer1M: Type.Number({ description: 'USD per million output tokens.', examples: [0.6] }),
  premium: Type.Boolean(),
  capabilities: Type.Array(Type.String(), { examples: [['chat', 'tools']] }),
  accessible: Type.Boolean({ description: 'Whether this caller can use it now.' }),
  reason: Type.Optional(Type.Union([Type.Literal('premium'), Type.Literal('vendor-not-configured'), Type.Literal('vendor-unavailable')], {
    description: '`premium`: the plan does not include premium models; `vendor-not-configured`: this deployment has no key for the vendor; ' +
      '`vendor-unavailable`: the vendor is taken out for a cooldown after failing (it comes back by itself).'
  }))
}, { $id: 'ModelInfo', title: 'ModelInfo', additionalProperties: false })

export const ModelList = Type.Object({
  data: Type.Array(Type.Unsafe<Static<typeof ModelInfo>>(Type.Ref('ModelInfo'))),
  routing: Type.Object({
    premium: Type.Boolean({ description: 'Whether the caller\'s plan includes premium models.' }),
    routes: Type.Record(Type.String(), Type.String(), { description: 'Task class → the model chosen when a call names none.' })
  }, { additionalProperties: false })
}, {
  $id: 'ModelList',
  title: 'ModelList',
  additionalProperties: false,
  description: 'The model catalog for the caller\'s plan, with the routing used when a call names no model.',
  examples: [{
    data: [{
      id: 'gpt-4o-mini',
      name: 'GPT-4o mini',
      vendor: 'openai',
      contextTokens: 128000,
      maxOutputTokens: 16384,
      inputCostPer1M: 0.15,
      outputCostPer1M: 0.6,
      premium: false,
      capabilities: ['chat', 'tools'],
      accessible: true
    }],
    routing: { premium: false, routes: { summary: 'gpt-4o-mini', reasoning: 'deepseek-chat', creative: 'gpt-4o-mini', code: 'deepseek-chat', general: 'gpt-4o-mini' } }
  }]
})
export type ModelListValue = Static<typeof ModelList>

export const modelSchemas = [ModelInfo, ModelList]
