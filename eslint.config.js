import neostandard from 'neostandard'

export default neostandard({
  ts: true,
  ignores: ['dist/**', 'coverage/**', '.tap/**', 'data/**', 'clients/typescript/dist/**', 'clients/typescript/src/schema.ts']
})
