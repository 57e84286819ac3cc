// What `longshore --help` and `longshore <command> --help` print.
export const COMMAND_USAGE: Record<string, string> = {
  serve: `usage: longshore serve [--config FILE]
  Run the mirror. SIGHUP re-reads the TLS certificate and key; SIGTERM drains and stops.
`,
  gc: `usage: longshore gc [--config FILE] [--dry-run] [--grace 1h]
  Delete blobs no manifest references (untouched for at least --grace).
`,
  warm: `usage: longshore warm (--url URL | --config FILE) [--platform OS/ARCH[/VARIANT]]... [--all-platforms]
                     [--file LIST] IMAGE...
  Pull images into the cache, through the Longshore at --url or one started from --config.
`,
  export: `usage: longshore export [--url URL | --config FILE] [--platform ...]... [--all-platforms] -o BUNDLE.tar IMAGE...
  Write images as an OCI layout tar, for import at another site.
`,
  import: `usage: longshore import [--config FILE] BUNDLE.tar...
  Load bundles written by export into the cache.
`,
};

export const USAGE = `usage: longshore <command> [options]

commands:
  serve  [--config FILE]                      run the mirror
  gc     [--config FILE] [--dry-run] [--grace 1h]
                                              delete blobs no manifest references
  warm   (--url URL | --config FILE) [--platform OS/ARCH[/VARIANT]]... [--all-platforms]
         [--file LIST] IMAGE...               pull images into the cache
  export [--url URL | --config FILE] [--platform ...]... -o BUNDLE.tar IMAGE...
                                              write images as an OCI layout tar
  import [--config FILE] BUNDLE.tar...        load bundles into the cache

  longshore <command> --help                  that command's options
  longshore --version                         the version

Config: YAML (see config/default.yaml); every key can be overridden by LONGSHORE_* variables.
`;
