// Bounds on what we buffer in memory. Layers are streamed and never bounded by memory.

/** Manifests and JSON documents larger than this are refused (the OCI spec's suggested 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
