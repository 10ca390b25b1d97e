// Code packages: function code as content-addressed zips in PostgreSQL (docs/code.md).
//
//   limits.ts    the limits a package keeps (Lambda's 50 MB zipped, 250 MB unzipped, …)
//   hash.ts      a package's name: SHA-256 hex, and Lambda's base64 `CodeSha256`
//   paths.ts     which entry names are safe
//   refusals.ts  why a package is refused (LedgerError `InvalidCodePackage` + reason)
//   inspect.ts   check an untrusted zip completely; extract it through the same checks
//   pack.ts      pack a file or directory into a deterministic zip
//   packages.ts  the SQL: store, load, exists, info, stats
//   cache.ts     materialise a package into the local cache by hash
export { CODE_LIMITS, DEFAULT_CODE_STORAGE_BYTES, type CodeLimits } from './limits.ts';
export { assertSha256, codeSha256Of, sha256FromCodeSha256, sha256Hex } from './hash.ts';
export { foldPath, whyUnsafePath } from './paths.ts';
export type { CodePackageRefusal } from './refusals.ts';
export { extractCodePackage, inspectCodePackage, type CodePackageFile, type CodePackageManifest } from './inspect.ts';
export { packCodePackage, PACK_EXCLUDED_NAMES, type PackedCodePackage } from './pack.ts';
export {
  codePackageExists,
  codePackageInfo,
  codePackageStats,
  loadCodePackage,
  storeCodePackage,
  type CodePackageInfo,
  type CodeStorageStats,
  type StoreCodePackageOptions,
  type StoredCodePackage,
} from './packages.ts';
export {
  cachedPackageDir,
  codeCacheDir,
  DEFAULT_CODE_CACHE_DIR,
  materializeCodePackage,
  type MaterializedCodePackage,
  type MaterializeOptions,
} from './cache.ts';
