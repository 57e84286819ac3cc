// Bounds on what we buffer in memory. Layers are streamed and never bounded by memory.

/** Manifests and JSON documents larger than this are refused (the OCI spec's suggested 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Token server answers are a JWT and a few fields; anything bigger is not a token. */
export const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
