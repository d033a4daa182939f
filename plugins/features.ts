/**
 * The feature registry (SPEC §8): every AI feature is one entry here. Entitlements, tokens, metering, the
 * disclosure manifest (GET /v1/ai/features) and docs/privacy.md read it; adding a feature means adding an
 * entry and its route plugin.
 */

/** A provider a feature may send data to. `test` providers run inside the service and send nothing anywhere. */
export const PROVIDERS = {
  openai: { id: 'openai', name: 'OpenAI (or the OpenAI-compatible endpoint of OPENAI_BASE_URL)', location: 'external' },
  anthropic: { id: 'anthropic', name: 'Anthropic (Messages API, ANTHROPIC_BASE_URL)', location: 'external' },
  qwen: { id: 'qwen', name: 'Alibaba Cloud Model Studio, Qwen (QWEN_BASE_URL)', location: 'external' },
  deepseek: { id: 'deepseek', name: 'DeepSeek (DEEPSEEK_BASE_URL)', location: 'external' },
  xai: { id: 'xai', name: 'xAI, Grok (XAI_BASE_URL)', location: 'external' },
  gemini: { id: 'gemini', name: 'Google Gemini API, OpenAI-compatible endpoint (GEMINI_BASE_URL)', location: 'external' },
  removebg: { id: 'removebg', name: 'remove.bg (Kaleido AI)', location: 'external' },
  rembg: { id: 'rembg', name: 'rembg, self-hosted by the operator (REMBG_URL)', location: 'operator' },
  aiservice: { id: 'aiservice', name: 'The risk AI service, run by the operator (AI_SERVICE_URL)', location: 'operator' },
  sandbox: { id: 'sandbox', name: 'Built-in sandbox (test mode; nothing leaves the service)', location: 'in-process' }
} as const
export type ProviderId = keyof typeof PROVIDERS

export const FEATURES = {
  'settings-assistant': {
    id: 'settings-assistant',
    name: 'Settings Assistant',
    description: 'Chat that explains LightLane settings and suggests setting changes the app can apply in one click.',
    unit: 'tokens',
    endpoint: 'POST /v1/ai/settings-assistant/messages',
    providers: { live: ['openai'], test: 'sandbox' },
    /** Request fields that go to the live provider: exactly these, and nothing else of the request. */
    sends: [
      { field: 'message', note: 'The question, as the user\'s turn. With MODERATION=openai also to the OpenAI moderation endpoint first.' },
      { field: 'history', note: 'Earlier turns, as sent by the app. With MODERATION=openai its user turns are also moderated.' },
      { field: 'context.settings', note: 'Setting ids and current values, in a context message.' },
      { field: 'context.appVersion', note: 'In the context message.' },
      { field: 'context.platform', note: 'In the context message.' }
    ],
    serverAdds: [
      'A keyed hash of the user id (HMAC-SHA-256 with USER_HASH_SECRET) as OpenAI `safety_identifier`; never the id itself. With SETTINGS_ASSISTANT_MODEL on another vendor: in that vendor\'s documented field (Anthropic `metadata.user_id`, xAI `user`), or not at all (Qwen, DeepSeek, Gemini).',
      'The system prompt, built by the service from the settings catalog; the client cannot set it.',
      'The model (SETTINGS_ASSISTANT_MODEL from the catalog, or OPENAI_MODEL), a reply-length limit, one tool (suggest_settings) and, to OpenAI, `store: false`.'
    ],
    neverSent: ['The user id, e-mail or IP address', 'Tokens, API keys and request ids'],
    logged: 'Request id, hashed ids, sizes, token counts, suggestion counts and timings; never the message, history or settings.',
    stored: 'One usage-ledger row per call (feature, provider, model, token counts, cost, request id); never the text.',
    limits: {
      message: '1 to 2,000 characters',
      history: 'At most 10 turns of at most 4,000 characters',
      'context.settings': 'At most 40 settings',
      reply: 'At most 800 tokens',
      timeouts: 'First byte within 15 s, whole call within OPENAI_TIMEOUT_MS (60 s)'
    }
  },
  'background-removal': {
    id: 'background-removal',
    name: 'Background removal',
    description: 'Cuts the subject of one image out of its background (a PNG cut-out or a mask).',
    unit: 'images',
    endpoint: 'POST /v1/ai/background-removal',
    providers: { live: ['removebg', 'rembg'], test: 'sandbox' },
    sends: [
      { field: 'image', note: 'The one selected image without its metadata (EXIF with GPS and camera, XMP, IPTC, comments, trailers): an upright sRGB JPEG or PNG keeps its own pixels, anything else is re-encoded with its orientation applied.' },
      { field: 'output', note: 'Whether a cut-out or a mask is wanted.' }
    ],
    serverAdds: ['The provider\'s API key (remove.bg only) and its fixed options (size=auto, PNG out).'],
    neverSent: ['The user id, e-mail or IP address', 'Image metadata (EXIF, XMP, GPS, camera, location)', 'Tokens and request ids'],
    logged: 'Request id, hashed ids, byte sizes, dimensions, provider and timings; never the image.',
    stored: 'One usage-ledger row per call (feature, provider, images, cost, request id); never the image.',
    limits: {
      image: 'PNG, JPEG or WebP, at most 12 MB and 25 megapixels',
      timeouts: 'Each provider attempt within BG_REMOVAL_TIMEOUT_MS (30 s)'
    }
  },
  chat: {
    id: 'chat',
    name: 'Chat sessions',
    description: 'Conversations kept by the service over the model catalog: routed to a model for the task and the plan, with fallback to another vendor when one fails.',
    unit: 'tokens',
    endpoint: 'POST /v1/chats/{id}/messages (and /stream)',
    providers: { live: ['openai', 'anthropic', 'qwen', 'deepseek', 'xai', 'gemini'], test: 'sandbox' },
    sends: [
      { field: 'content', note: 'The new message, as the user\'s turn, to the vendor of the model that serves the call (a fallback vendor when the first one fails). With MODERATION=openai it goes to the OpenAI moderation endpoint first, and so does the finished reply.' },
      { field: 'history', note: 'The chat\'s earlier messages as the service stored them, the newest ones, as many as fit the model\'s context.' },
      { field: 'tools', note: 'Chats created with `tools` (productivity assistant): the tools\' names and descriptions. With `calendar`, when the model calls list_calendar_events, the title, start, end and all-day flag of the user\'s Google Calendar events in the range it asked for (at most 25 events, titles cut to 100 characters), read from Google for this message only; never the event ids, places, descriptions or attendees. With `tasks`: the task the model proposed, back to it as "proposed"; never the user\'s stored tasks.' }
    ],
    serverAdds: [
      'For a chat with tools: today\'s date and time (UTC) and a line on how to use each tool, in the system prompt; the results of the tool calls as tool turns.',
      'A keyed hash of the user id (HMAC-SHA-256 with USER_HASH_SECRET) only where the vendor documents a field for it: OpenAI `safety_identifier`, Anthropic `metadata.user_id`, xAI `user`. Qwen, DeepSeek and Gemini receive no user identifier at all.',
      'A fixed system prompt of the service, the vendor\'s model name, a reply-length limit, whether the reply is streamed (on Chat Completions streams with `stream_options.include_usage`, for the token counts), and to OpenAI `store: false`.'
    ],
    neverSent: ['The user id, e-mail or IP address', 'The chat\'s title, its contextRef and feedback', 'Tokens, API keys and request ids'],
    logged: 'Request id, hashed ids, chat and message ids, model, vendor, token counts, cost and timings, moderation severities and categories; never a message, a title or a comment.',
    stored: 'Chats (title and contextRef encrypted, tool names in plain), messages (text encrypted with AES-256-GCM; model, tokens, cost and timings in plain), feedback (comment encrypted), one usage-ledger row per reply (its tool rounds counted together). Calendar events and task suggestions are not stored. Deleted with the chat, after CHAT_RETENTION_DAYS without a message, or on DELETE /v1/ai/me/data.',
    limits: {
      content: '1 to 8,000 characters',
      history: 'The chat\'s latest 200 messages, cut to the model\'s context by token counts',
      reply: 'At most 4,096 tokens (or the model\'s own limit when lower)',
      tools: 'At most 2 rounds of tool calls per reply (3 model calls), on the model that answered first; a reply with tools reserves quota for all of them and is charged what they used',
      timeouts: 'First byte within 15 s, whole call within MODEL_TIMEOUT_MS (60 s)'
    }
  },
  'openai-compatible': {
    id: 'openai-compatible',
    name: 'OpenAI-compatible chat completions',
    description: 'Chat Completions in OpenAI\'s wire format over the model catalog, so any OpenAI SDK is a client: the caller\'s messages and tools, routed and fallen back like chats, metered in tokens.',
    unit: 'tokens',
    endpoint: 'POST /v1/openai/chat/completions',
    providers: { live: ['openai', 'anthropic', 'qwen', 'deepseek', 'xai', 'gemini'], test: 'sandbox' },
    sends: [
      { field: 'messages', note: 'Sent as given (system, developer, user, assistant and tool turns, tool calls included), to the vendor of the model that serves the call (a fallback vendor when the first one fails); to Anthropic in its Messages format. With MODERATION=openai the last user turn goes to the OpenAI moderation endpoint first, and so does the finished reply.' },
      { field: 'tools', note: 'The function definitions, as given.' },
      { field: 'tool_choice', note: 'As given (Anthropic: auto, none, any or the named tool).' },
      { field: 'response_format', note: 'A json_schema, as given (vendors of the Chat Completions format only).' },
      { field: 'temperature', note: 'As given.' },
      { field: 'stop', note: 'As given (Anthropic: stop_sequences).' },
      { field: 'max_tokens', note: 'Or max_completion_tokens: the reply-length limit, as given or the service\'s default.' },
      { field: 'stream', note: 'Whether the reply is streamed (then with `stream_options.include_usage`, for the token counts, whatever the caller asked).' }
    ],
    serverAdds: [
      'A keyed hash of the user id (HMAC-SHA-256 with USER_HASH_SECRET) only where the vendor documents a field for it: OpenAI `safety_identifier`, Anthropic `metadata.user_id`, xAI `user`. Qwen, DeepSeek and Gemini receive no user identifier at all.',
      'The vendor\'s model name for the catalog id, a reply-length limit when the caller set none, `tool_choice: auto` with tools when the caller set none (Chat Completions vendors), and to OpenAI `store: false`. No system prompt of the service.'
    ],
    neverSent: ['The user id, e-mail or IP address', 'Tokens, API keys and request ids'],
    logged: 'Request id, hashed ids, model, vendor, message and tool counts, token counts, cost and timings, moderation severities and categories; never a message, a tool definition or a reply.',
    stored: 'Nothing but one usage-ledger row per call (feature, vendor, model, token counts, cost, request id) and the operators\' analytics row of the call (model, vendor, outcome, tokens, timings).',
    limits: {
      messages: '1 to 256 messages, at most 400,000 characters in all (texts, tool arguments and tool definitions), within the model\'s context',
      tools: 'At most 64 function tools, each with a JSON Schema of at most 16,000 characters',
      max_tokens: 'At most the model\'s own output limit; 4,096 (or the model\'s limit when lower) when not set',
      body: 'At most 1 MiB',
      timeouts: 'First byte within 15 s, whole call within MODEL_TIMEOUT_MS (60 s)'
    }
  },
  'virtual-staging': {
    id: 'virtual-staging',
    name: 'Virtual staging',
    description: 'Furnishes a photo of an empty room in a style of the catalog, as an asynchronous job with progress, webhooks and a signed link to the result.',
    unit: 'stagings',
    endpoint: 'POST /v1/ai/stagings (and /batches)',
    providers: { live: ['openai'], test: 'sandbox' },
    sends: [
      { field: 'image', note: 'The photo without its metadata (EXIF with GPS and camera, XMP, IPTC, comments, trailers; an upright sRGB JPEG or PNG keeps its own pixels, anything else is re-encoded with its orientation applied): to OpenAI Images edit (STAGING_MODEL) and, at most 1,024 px on its longest side, to the vision model (STAGING_VISION_MODEL) for the room check when no roomType is given and for the premium integrity check (with the staged image).' },
      { field: 'style', note: 'Not sent as such: it picks the server\'s prompt template of the style.' },
      { field: 'roomType', note: 'Given or detected, in the prompt (e.g. "living room").' },
      { field: 'qualityMode', note: 'As the edit\'s `quality` (premium: high, standard: medium).' }
    ],
    serverAdds: [
      'The style\'s prompt from the server\'s catalog (STAGING_STYLES_FILE) and fixed instructions to keep the architecture (stricter on the premium retry); the client cannot set them.',
      'A keyed hash of the user id (HMAC-SHA-256 with USER_HASH_SECRET) as OpenAI `safety_identifier`; never the id itself.',
      'The model, `n=1`, a size matched to the photo\'s aspect (1536x1024, 1024x1536 or 1024x1024), `output_format=jpeg`, `input_fidelity=high` where the model takes it; to the vision model a JSON schema of its answer and `store: false`.'
    ],
    neverSent: ['The property name', 'The user id, e-mail or IP address', 'Image metadata (EXIF, XMP, GPS, camera, location)', 'Tokens, API keys, request ids and the Idempotency-Key'],
    logged: 'Request id, hashed ids, staging and batch ids, style, quality mode, byte sizes, dimensions, job states and error codes, cost and timings; never the photo, the result or the property name.',
    stored: 'The staging (options; property name encrypted with AES-256-GCM; status, progress, result dimensions and scores, cost); the stripped photo only until its job ends; the staged image for FILE_RETENTION_DAYS (30), or until the staging is deleted; one usage-ledger row per completed staging. All of it deleted on DELETE /v1/ai/me/data.',
    limits: {
      image: 'JPEG, PNG or WebP, at most 12 MB and 25 megapixels',
      images: 'A batch holds 1 to 10 photos',
      propertyName: 'At most 200 characters',
      timeouts: 'A job within STAGING_TIMEOUT_MS (300 s), all its provider calls included; STAGING_CONCURRENCY jobs at once per instance'
    }
  },
  'risk-scan': {
    id: 'risk-scan',
    name: 'Document risk scans',
    description: 'Lists the risks of a project document or text (each with a category and the passage it comes from) and keeps the list for the user.',
    unit: 'scans',
    endpoint: 'POST /v1/ai/scans',
    providers: { live: ['aiservice', 'openai'], test: 'sandbox' },
    sends: [
      { field: 'file', note: 'To the risk AI service: the document\'s bytes as uploaded (PDF, DOCX, TXT or MD), under a generic name (document.pdf…), never its file name. To OpenAI (the LLM scanner): only the text extracted from it on this server, in parts of at most 48,000 characters.' },
      { field: 'text', note: 'As given, to the provider that serves the scan.' },
      { field: 'forceLlm', note: 'To the risk AI service as `force_llm`; the LLM scanner is a language model anyway.' }
    ],
    serverAdds: [
      'To OpenAI: a fixed system prompt of the service, the model (SCAN_MODEL), a JSON schema of the answer (structured output), a reply-length limit, `store: false` and a keyed hash of the user id (HMAC-SHA-256 with USER_HASH_SECRET) as `safety_identifier`.',
      'To the risk AI service: nothing but the fields above (it is the operator\'s own service).'
    ],
    neverSent: ['The file name', 'The user id, e-mail or IP address', 'Document metadata (author, title, revision history) to OpenAI', 'Tokens, API keys and request ids'],
    logged: 'Request id, hashed ids, scan id, document type, byte size, page count, character count, provider, number of risks, token counts and timings; never the text, the file name or a risk.',
    stored: 'The scan: the risk list and the file name encrypted with AES-256-GCM, its source, provider and creation time; never the document or its text (read in memory and dropped). One usage-ledger row per scan. Deleted on DELETE /v1/ai/scans/{id} or DELETE /v1/ai/me/data.',
    limits: {
      file: 'PDF, DOCX, TXT or MD (by its bytes), at most 10 MB, 200 pages and 400,000 characters of text; read in a worker thread within SCAN_EXTRACT_TIMEOUT_MS (20 s) and SCAN_EXTRACT_MEMORY_MB (256 MB)',
      text: '1 to 100,000 characters',
      timeouts: 'The risk AI service within AI_SERVICE_TIMEOUT_MS (60 s); each LLM call within OPENAI_TIMEOUT_MS (60 s)'
    }
  }
} as const

export type FeatureId = keyof typeof FEATURES
export const FEATURE_IDS = Object.keys(FEATURES) as FeatureId[]

export function isFeatureId (value: string): value is FeatureId {
  return Object.hasOwn(FEATURES, value)
}
