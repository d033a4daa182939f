import { BrokenCircuitError, circuitBreaker, CircuitState, ConsecutiveBreaker, handleWhen, type CircuitBreakerPolicy } from 'cockatiel'
import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import type { TSchema } from 'typebox'
import Value from 'typebox/value'
import defaultModels from '../defaults/models.json' with { type: 'json' }
import defaultRouting from '../defaults/routing.json' with { type: 'json' }
import { createAnthropicChat } from '../providers/anthropic-chat.js'
import type { ChatCall, ChatCompletion, ChatEvent, ChatProvider } from '../providers/chat.js'
import { createOpenAIChat } from '../providers/openai-chat.js'
import { ProviderError } from '../providers/provider-error.js'
import { createSandboxModels } from '../providers/sandbox-chat.js'
import { VENDORS } from '../providers/vendors.js'
import {
  ModelsFile, RoutingFile, TASK_CLASSES, VENDOR_IDS, type CatalogModelValue, type ModelsFileValue, type RoutingFileValue,
  type TaskClass, type VendorId
} from '../schemas/models.js'
import type { Mode } from '../schemas/principal.js'
import { ConfigError, readJsonFile, type Config } from './config.js'
import { AppError } from './errors.js'

const MICRO_PER_USD = 1_000_000

/** A catalog model with its prices as whole micro-USD per million tokens (money is integers inside). */
export interface ModelEntry extends CatalogModelValue {
  inputMicroUsdPer1M: number
  outputMicroUsdPer1M: number
}

const schemaProblems = (variable: string, schema: TSchema, raw: unknown) =>
  Value.Errors(schema, raw).slice(0, 30).map((e) => `${variable} ${e.instancePath === '' ? '(top level)' : e.instancePath} ${e.message}.`)

/** Reads and checks the model catalog (MODELS_FILE or the bundled one), listing every problem at once. */
export function loadModels (file?: string): ModelEntry[] {
  const raw = readJsonFile('MODELS_FILE', file, defaultModels)
  const problems = schemaProblems('MODELS_FILE', ModelsFile, raw)
  const models: ModelEntry[] = []
  if (problems.length === 0) {
    const seen = new Set<string>()
    for (const [i, model] of (raw as ModelsFileValue).models.entries()) {
      const where = `MODELS_FILE /models/${i} (${model.id})`
      if (seen.has(model.id)) problems.push(`${where}: the id is used twice.`)
      seen.add(model.id)
      if (model.maxOutputTokens > model.contextTokens) problems.push(`${where}: maxOutputTokens is above contextTokens.`)
      const input = Math.round(model.inputCostPer1M * MICRO_PER_USD)
      const output = Math.round(model.outputCostPer1M * MICRO_PER_USD)
      if (Math.abs(input - model.inputCostPer1M * MICRO_PER_USD) > 1e-6 || Math.abs(output - model.outputCostPer1M * MICRO_PER_USD) > 1e-6) {
        problems.push(`${where}: a price has more than 6 decimals (prices are whole micro-USD per million tokens).`)
      }
      models.push({ ...model, inputMicroUsdPer1M: input, outputMicroUsdPer1M: output })
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return models
}

/** Reads and checks the routing file against the catalog, listing every problem at once. */
/** Plans of the routing file that PLANS_FILE does not have are never used (a plans file of its own may leave them out). */
export function loadRouting (file: string | undefined, models: ModelEntry[]): RoutingFileValue {
  const raw = readJsonFile('ROUTING_FILE', file, defaultRouting)
  const problems = schemaProblems('ROUTING_FILE', RoutingFile, raw)
  if (problems.length === 0) {
    const routing = raw as RoutingFileValue
    const byId = new Map(models.map((m) => [m.id, m]))
    const entries: Array<[string, RoutingFileValue['default']]> = [['default', routing.default], ...Object.entries(routing.plans).map(([id, p]) => [`plans/${id}`, p] as [string, RoutingFileValue['default']])]
    for (const [where, plan] of entries) {
      for (const task of TASK_CLASSES) {
        const model = byId.get(plan.routes[task])
        if (model === undefined) problems.push(`ROUTING_FILE /${where}/routes/${task}: no model ${plan.routes[task]} in the catalog.`)
        else if (model.premium && !plan.premium) problems.push(`ROUTING_FILE /${where}/routes/${task}: ${model.id} is premium, and this plan has no premium models.`)
      }
    }
    for (const [from, chain] of Object.entries(routing.fallbacks)) {
      if (!byId.has(from)) problems.push(`ROUTING_FILE /fallbacks/${from}: no such model in the catalog.`)
      for (const [i, to] of chain.entries()) {
        if (!byId.has(to)) problems.push(`ROUTING_FILE /fallbacks/${from}/${i}: no model ${to} in the catalog.`)
        else if (to === from || chain.indexOf(to) !== i) problems.push(`ROUTING_FILE /fallbacks/${from}/${i}: ${to} is already in the chain.`)
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return raw as RoutingFileValue
}

/** Words that point at a task class, tried in this order: the first class with the most hits wins; none → general. */
const TASK_SIGNALS: Array<[Exclude<TaskClass, 'general'>, RegExp]> = [
  ['code', /```|\b(code|function|class|method|bug|debug|compile[rsd]?|stack ?trace|exception|typescript|javascript|python|java|rust|golang|sql|regex|api|json|refactor|unit test|snippet|script)\b|=>|\(\)\s*[{;]/gi],
  ['summary', /\b(summari[sz]e|summary|tl;?dr|key points|main points|in short|condense|recap|outline|abstract|shorten)\b/gi],
  ['creative', /\b(story|poem|poetry|lyrics|song|haiku|fiction|imagine|brainstorm|slogan|creative|character|plot|novel|joke|limerick)\b/gi],
  ['reasoning', /\b(why|prove|proof|step by step|reason|calculate|solve|derive|compare|analy[sz]e|trade-?offs?|evaluate|logic|puzzle|math|equation|probability)\b|[=+*/^]\s*\d/gi]
]

/** The local task classifier (no provider call): which kind of work a message asks for. */
export function classifyTask (text: string): TaskClass {
  let best: TaskClass = 'general'
  let bestHits = 0
  for (const [task, pattern] of TASK_SIGNALS) {
    const hits = text.match(pattern)?.length ?? 0
    if (hits > bestHits) { best = task; bestHits = hits }
  }
  return best
}

/** A vendor as readiness shows it. */
export interface VendorHealth { configured: boolean, breaker: 'closed' | 'open' | 'half-open' }

/** Why a model is not accessible to a caller. */
export type Inaccessible = 'premium' | 'vendor-not-configured' | 'vendor-unavailable'

/** A client of the vendor left: not the vendor's fault, so its breaker does not count it. */
class ClientLeft extends Error {
  constructor (readonly left: unknown) { super('client left') }
}

export interface ModelsOptions {
  models: ModelEntry[]
  routing: RoutingFileValue
  /** The live provider of each vendor that has a key. */
  providers: Partial<Record<VendorId, ChatProvider>>
  /** Test-mode calls: answers for every model, offline. */
  sandbox: ChatProvider
  breaker: { failures: number, cooldownMs: number }
  log: FastifyBaseLogger
}

/** Told of each vendor that failed a call before its first byte (a fallback may still serve it). */
export type FailureObserver = (model: ModelEntry, code: string) => Promise<void>

/** SETTINGS_ASSISTANT_MODEL must name a model of the catalog that can call tools (the assistant suggests settings with one). */
export function assistantModelProblems (catalog: ModelEntry[], id: string | undefined): string[] {
  if (id === undefined) return []
  const entry = catalog.find((m) => m.id === id)
  if (entry === undefined) return [`SETTINGS_ASSISTANT_MODEL: "${id}" is not a model of the catalog (MODELS_FILE).`]
  return entry.capabilities.includes('tools') ? [] : [`SETTINGS_ASSISTANT_MODEL: ${id} cannot call tools (no "tools" in its capabilities), and the assistant suggests settings with one.`]
}

/** A call routed to its model: the chain tried in order (the model, then its fallbacks that can serve). */
export interface Route { model: ModelEntry, task: TaskClass | null, chain: ModelEntry[] }

/**
 * The model catalog, the routing matrix, and the vendors behind them, each with a circuit breaker (cockatiel): a
 * vendor failing BREAKER_FAILURES times in a row before its first byte, or refusing the account, is skipped for the
 * cooldown. Fallbacks are tried only before the first byte reaches the client.
 */
export function createModels (opts: ModelsOptions) {
  const byId = new Map(opts.models.map((m) => [m.id, m]))
  const breakers = new Map<VendorId, CircuitBreakerPolicy>()
  const isolated = new Map<VendorId, NodeJS.Timeout>()
  /** When each open breaker's cooldown ends: cockatiel moves to half-open only when it is next called. */
  const reopensAt = new Map<VendorId, number>()
  for (const vendor of VENDOR_IDS) {
    if (opts.providers[vendor] === undefined) continue
    const breaker = circuitBreaker(handleWhen((err) => !(err instanceof ClientLeft)), {
      halfOpenAfter: opts.breaker.cooldownMs,
      breaker: new ConsecutiveBreaker(opts.breaker.failures)
    })
    breaker.onBreak(() => reopensAt.set(vendor, Date.now() + opts.breaker.cooldownMs))
    breakers.set(vendor, breaker)
  }
  const breakerState = (vendor: VendorId): VendorHealth['breaker'] => {
    const state = breakers.get(vendor)?.state
    if (state === CircuitState.Isolated) return 'open'
    if (state === CircuitState.Open) return Date.now() >= (reopensAt.get(vendor) as number) ? 'half-open' : 'open'
    return state === CircuitState.HalfOpen ? 'half-open' : 'closed'
  }
  const planRouting = (plan: string) => opts.routing.plans[plan] ?? opts.routing.default

  /** Whether a caller of this plan and mode can use the model now, and if not, why. */
  function access (model: ModelEntry, plan: string, mode: Mode): Inaccessible | null {
    if (model.premium && !planRouting(plan).premium) return 'premium'
    if (mode === 'test') return null
    if (opts.providers[model.vendor] === undefined) return 'vendor-not-configured'
    return breakerState(model.vendor) === 'open' ? 'vendor-unavailable' : null
  }

  /** A vendor that refused the account serves no one until an operator acts: skipped for the cooldown, then tried again. */
  function isolate (vendor: VendorId) {
    if (isolated.has(vendor)) return
    const handle = (breakers.get(vendor) as CircuitBreakerPolicy).isolate()
    const timer = setTimeout(() => { isolated.delete(vendor); handle.dispose() }, opts.breaker.cooldownMs)
    timer.unref()
    isolated.set(vendor, timer)
  }

  /**
   * Runs `attempt` on each model of the chain in turn until one gives its first result; a failure moves on to the
   * next model (a client that left, or an error that is not a provider's, ends it). With nothing left: the last
   * failure, or 503 when every vendor was skipped.
   */
  async function firstOf<T> (route: Route, mode: Mode, signal: AbortSignal, attempt: (provider: ChatProvider, model: ModelEntry) => Promise<T>, onFailure: FailureObserver) {
    if (mode === 'test') return { model: route.model, provider: opts.sandbox, result: await attempt(opts.sandbox, route.model) }
    let last: unknown = null
    for (const [i, model] of route.chain.entries()) {
      const provider = opts.providers[model.vendor] as ChatProvider
      const breaker = breakers.get(model.vendor) as CircuitBreakerPolicy
      try {
        const result = await breaker.execute(async () => {
          try {
            return await attempt(provider, model)
          } catch (err) {
            throw signal.aborted ? new ClientLeft(err) : err
          }
        })
        return { model, provider, result }
      } catch (err) {
        if (err instanceof ClientLeft) throw err.left
        if (err instanceof BrokenCircuitError) continue
        if (!(err instanceof ProviderError)) throw err
        if (err.refusal !== null) isolate(model.vendor)
        last = err
        opts.log.warn({ vendor: model.vendor, model: model.id, code: err.code, fallback: route.chain[i + 1]?.id ?? null }, 'model call failed before its first byte')
        await onFailure(model, err.code)
      }
    }
    throw last ?? new ProviderError('PROVIDER_UNAVAILABLE', 'No model vendor can serve this call right now: retry later.', { retry: false },
      { 'retry-after': String(Math.ceil(opts.breaker.cooldownMs / 1000)) })
  }

  return {
    models: opts.models,
    get: (id: string) => byId.get(id),
    routing: planRouting,
    access,

    /** The catalog as a caller of this plan and mode sees it. */
    list (plan: string, mode: Mode) {
      return opts.models.map((m) => {
        const reason = access(m, plan, mode)
        return {
          id: m.id,
          name: m.name,
          vendor: m.vendor,
          contextTokens: m.contextTokens,
          maxOutputTokens: m.maxOutputTokens,
          inputCostPer1M: m.inputCostPer1M,
          outputCostPer1M: m.outputCostPer1M,
          premium: m.premium,
          capabilities: [...m.capabilities],
          accessible: reason === null,
          ...(reason === null ? {} : { reason })
        }
      })
    },

    /**
     * The model of a call: the one asked for (checked against the plan and the vendors), or the routing matrix's for
     * the message's task class; then its fallbacks that this caller can use.
     */
    route (input: { plan: string, mode: Mode, model?: string, text: string }): Route {
      let model: ModelEntry
      let task: TaskClass | null = null
      if (input.model !== undefined) {
        const asked = byId.get(input.model)
        if (asked === undefined) {
          throw new AppError('VALIDATION_ERROR', 'There is no such model: GET /v1/ai/models lists them.', {
            fields: [{ location: 'body', path: '/model', message: 'is not a model of the catalog' }]
          })
        }
        model = asked
      } else {
        task = classifyTask(input.text)
        model = byId.get(planRouting(input.plan).routes[task]) as ModelEntry
      }
      const reason = access(model, input.plan, input.mode)
      if (reason === 'premium') throw new AppError('NOT_ENTITLED', `${model.name} is a premium model, and your plan does not include premium models.`, { model: model.id })
      const candidates = [model, ...(opts.routing.fallbacks[model.id] ?? []).map((id) => byId.get(id) as ModelEntry)]
      const reasons = candidates.map((m) => access(m, input.plan, input.mode))
      const chain = candidates.filter((_m, i) => reasons[i] === null)
      // Nothing set up for this model and its fallbacks: the operator's to fix. Set up but out for a cooldown: 503 later.
      if (chain.length === 0 && !reasons.includes('vendor-unavailable')) {
        throw new AppError('PROVIDER_NOT_CONFIGURED', `${model.name} is not set up on this server (no ${VENDORS[model.vendor].name} key), and none of its fallbacks is: use another model, a test-mode key, or ask the operator.`)
      }
      return { model, task, chain }
    },

    /** Opens a streamed call on the first model of the route that gives its first event. */
    async stream (route: Route, mode: Mode, callFor: (model: ModelEntry) => ChatCall, onFailure: FailureObserver) {
      let call: ChatCall | undefined
      const signalOf = () => (call as ChatCall).signal
      const opened = await firstOf(route, mode, callFor(route.model).signal, async (provider, model) => {
        call = callFor(model)
        const events = provider.stream(call)[Symbol.asyncIterator]()
        return { events, first: await events.next() as IteratorResult<ChatEvent> }
      }, onFailure)
      return { model: opened.model, provider: opened.provider, call: call as ChatCall, signal: signalOf(), ...opened.result }
    },

    /** One whole call on the first model of the route that answers. */
    async complete (route: Route, mode: Mode, callFor: (model: ModelEntry) => ChatCall, onFailure: FailureObserver) {
      let call: ChatCall | undefined
      const done = await firstOf(route, mode, callFor(route.model).signal, async (provider, model) => {
        call = callFor(model)
        return provider.complete(call)
      }, onFailure)
      return { model: done.model, provider: done.provider, call: call as ChatCall, result: done.result as ChatCompletion }
    },

    /** The live chat provider of a vendor; undefined without its key. */
    provider: (vendor: VendorId): ChatProvider | undefined => opts.providers[vendor],

    health (): Record<string, VendorHealth> {
      return Object.fromEntries(VENDOR_IDS.map((v) => [v, { configured: opts.providers[v] !== undefined, breaker: breakerState(v) }]))
    },

    close () {
      for (const timer of isolated.values()) clearTimeout(timer)
    }
  }
}

export type Models = ReturnType<typeof createModels>

/** The live chat providers of every vendor that has a key. */
export function vendorProviders (config: Config, log: FastifyBaseLogger): Partial<Record<VendorId, ChatProvider>> {
  const keys: Record<VendorId, [string | undefined, string]> = {
    openai: [config.OPENAI_API_KEY, config.OPENAI_BASE_URL],
    anthropic: [config.ANTHROPIC_API_KEY, config.ANTHROPIC_BASE_URL],
    qwen: [config.QWEN_API_KEY, config.QWEN_BASE_URL],
    deepseek: [config.DEEPSEEK_API_KEY, config.DEEPSEEK_BASE_URL],
    xai: [config.XAI_API_KEY, config.XAI_BASE_URL],
    gemini: [config.GEMINI_API_KEY, config.GEMINI_BASE_URL]
  }
  const providers: Partial<Record<VendorId, ChatProvider>> = {}
  for (const vendor of VENDOR_IDS) {
    const [apiKey, baseURL] = keys[vendor]
    if (apiKey === undefined) continue
    const common = { apiKey, baseURL, model: '', timeoutMs: config.MODEL_TIMEOUT_MS, log }
    providers[vendor] = vendor === 'anthropic' ? createAnthropicChat(common) : createOpenAIChat({ ...common, vendor })
  }
  return providers
}

declare module 'fastify' {
  interface FastifyInstance {
    models: Models
  }
}

/** The model catalog and routing (checked at startup against the plans), the vendors with keys, and their breakers. */
export default fp(async function models (app) {
  const catalog = loadModels(app.config.MODELS_FILE)
  const routing = loadRouting(app.config.ROUTING_FILE, catalog)
  const problems = assistantModelProblems(catalog, app.config.SETTINGS_ASSISTANT_MODEL)
  if (problems.length > 0) throw new ConfigError(problems)
  const models = createModels({
    models: catalog,
    routing,
    providers: vendorProviders(app.config, app.log),
    sandbox: createSandboxModels(),
    breaker: { failures: app.config.BREAKER_FAILURES, cooldownMs: app.config.BREAKER_COOLDOWN_SECONDS * 1000 },
    log: app.log
  })
  app.decorate('models', models)
  app.metrics.sources.breakers = () => models.health()
  app.readiness.add('models', async () => ({ vendors: models.health() }))
  app.addHook('onClose', async () => models.close())
}, { name: 'models', fastify: '5.x', dependencies: ['config', 'health', 'entitlements', 'metrics'] })
