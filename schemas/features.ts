import Type, { type Static } from 'typebox'
import type { FeatureId } from '../plugins/features.js'

const Provider = Type.Object({
  id: Type.String({ description: 'openai, removebg, rembg or sandbox.' }),
  name: Type.String(),
  location: Type.Union([Type.Literal('external'), Type.Literal('operator'), Type.Literal('in-process')], {
    description: '`external`: a third party; `operator`: a server the operator runs; `in-process`: nothing leaves the service.'
  }),
  mode: Type.Union([Type.Literal('live'), Type.Literal('test')], { description: 'Which tokens use it.' }),
  configured: Type.Boolean({ description: 'Whether this deployment has it set up (it is never called to find out).' })
}, { additionalProperties: false })

/** One feature as the disclosure manifest shows it: what it sends, to whom, what is kept, its limits. */
export const FeatureDisclosure = Type.Object({
  id: Type.Unsafe<FeatureId>(Type.Ref('FeatureId')),
  name: Type.String(),
  description: Type.String(),
  unit: Type.Union([Type.Literal('tokens'), Type.Literal('images'), Type.Literal('stagings'), Type.Literal('scans'), Type.Literal('requests')], { description: 'What its quota counts.' }),
  endpoint: Type.String(),
  providers: Type.Array(Provider, { description: 'Live providers in fallback order, then the test-mode sandbox.' }),
  sends: Type.Array(Type.Object({
    field: Type.String({ description: 'Request field, as a dotted path.' }),
    note: Type.String()
  }, { additionalProperties: false }), { description: 'The request fields that go to a live provider: these and nothing else.' }),
  serverAdds: Type.Array(Type.String(), { description: 'What the service itself adds to the provider request.' }),
  neverSent: Type.Array(Type.String()),
  logged: Type.String(),
  stored: Type.String(),
  limits: Type.Record(Type.String(), Type.String())
}, { $id: 'FeatureDisclosure', title: 'FeatureDisclosure', additionalProperties: false })

export const FeatureManifest = Type.Object({
  features: Type.Array(Type.Unsafe<Static<typeof FeatureDisclosure>>(Type.Ref('FeatureDisclosure')))
}, {
  $id: 'FeatureManifest',
  title: 'FeatureManifest',
  additionalProperties: false,
  description: 'Every AI feature and exactly what it sends to which provider (the disclosure manifest).'
})
export type FeatureManifestValue = Static<typeof FeatureManifest>

export const featureSchemas = [FeatureDisclosure, FeatureManifest]
