import Type, { type Static, type TSchema } from 'typebox'

/** A reference to a shared schema by its `$id`, typed as the schema it points to. */
export const ref = <S extends TSchema>(schema: S & { $id?: string }) =>
  Type.Unsafe<Static<S>>(Type.Ref(schema.$id as string))
