import Type, { type Static } from 'typebox'

/** Room types a staging may name (SPEC §12); when absent, the room is detected. */
export const ROOM_TYPES = ['living_room', 'bedroom', 'kitchen', 'dining_room', 'home_office', 'bathroom', 'kids_room', 'outdoor'] as const
export const RoomType = Type.Union(ROOM_TYPES.map((r) => Type.Literal(r)), { description: 'The kind of room in the photo.' })

export const PriceRange = Type.Union([Type.Literal('luxury'), Type.Literal('premium'), Type.Literal('standard')], { description: 'The furnishing budget the style stands for.' })

/** Placeholders a style's prompt template may use; anything else in braces is refused at startup. */
export const PROMPT_PLACEHOLDERS = ['roomType', 'styleName'] as const

const HexColor = Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })

/** One style of STAGING_STYLES_FILE, as the operator writes it (the prompt template stays on the server). */
export const StagingStyleEntry = Type.Object({
  id: Type.String({ pattern: '^[a-z][a-z0-9_]{1,39}$', description: 'Stable id (lowercase letters, digits, underscores).' }),
  name: Type.String({ minLength: 1, maxLength: 60 }),
  description: Type.String({ minLength: 1, maxLength: 400 }),
  bestFor: Type.Array(Type.String({ minLength: 1, maxLength: 60 }), { minItems: 1, maxItems: 8 }),
  priceRange: PriceRange,
  sortOrder: Type.Integer({ minimum: 0, maximum: 10_000 }),
  active: Type.Boolean(),
  palette: Type.Array(HexColor, { minItems: 2, maxItems: 6, description: 'Colours of the style; the preview image is drawn from them.' }),
  promptTemplate: Type.String({ minLength: 20, maxLength: 4000, description: 'The instruction sent to the image model; placeholders {roomType} and {styleName}.' })
}, { additionalProperties: false })
export type StagingStyleEntryValue = Static<typeof StagingStyleEntry>

export const StagingStylesFile = Type.Object({
  styles: Type.Array(StagingStyleEntry, { minItems: 1, maxItems: 100 })
}, { additionalProperties: false })
export type StagingStylesFileValue = Static<typeof StagingStylesFile>

/** A style as clients read it: never the prompt template. */
export const StagingStyle = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  previewImageUrl: Type.String({ description: 'A preview of the style (PNG), served by this service; no credential needed.' }),
  bestFor: Type.Array(Type.String()),
  priceRange: PriceRange
}, { $id: 'StagingStyle', title: 'StagingStyle', additionalProperties: false })

export const StagingStyleList = Type.Object({
  data: Type.Array(Type.Unsafe<Static<typeof StagingStyle>>(Type.Ref('StagingStyle')))
}, {
  $id: 'StagingStyleList',
  title: 'StagingStyleList',
  additionalProperties: false,
  examples: [{ data: [{ id: 'modern_luxury', name: 'Modern luxury', description: 'Clean lines, warm neutrals, brass and marble accents, statement lighting.', previewImageUrl: '/v1/ai/staging/styles/modern_luxury/preview.png', bestFor: ['penthouses', 'new builds'], priceRange: 'luxury' }] }]
})

export const stagingSchemas = [StagingStyle, StagingStyleList]
