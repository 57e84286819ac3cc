// What `longshore --help` and `longshore <command> --help` print.
export const COMMAND_USAGE: Record<string, string> = {
  serve: `usage: longshore serve [--config FILE]
  Run the mirror. SIGHUP re-reads the TLS certificate and key; SIGTERM drains and stops.
`,
  gc: `usage: longshore gc [--config FILE] [--dry-run] [--grace 1h]
  Delete blobs no manifest references (untouched for at least --grace). Safe beside a running
  server, whose cache figures follow within seconds.
`,
  warm: `usage: longshore warm (--url URL | --config FILE) [--creds USER:PASS] [--platform OS/ARCH[/VARIANT]]...
                     [--all-platforms] [--file LIST] IMAGE...
  Pull images into the cache, through the Longshore at --url or one started from --config
  (or the one already serving that config's storage.path). --creds, or the docker/podman
  login stored for the mirror's host, for mirrors that want credentials.
`,
  export: `usage: longshore export [--url URL | --config FILE] [--creds USER:PASS] [--platform ...]... [--all-platforms]
                       -o BUNDLE.tar IMAGE...
  Write images as an OCI layout tar, for import at another site.
`,
  ls: `usage: longshore ls [--url URL [--creds USER:PASS] | --config FILE] [--json] [REPO]
  List cached (mirrored) and private repositories with their tags, sizes and last pull time:
  asked of the Longshore at --url (private ones with --creds, or the docker/podman login stored
  for its host), or read from the data directory of --config (safe beside a running server).
`,
  import: `usage: longshore import [--config FILE] BUNDLE.tar...
  Load bundles written by export into the cache. Safe beside a running server, whose cache
  figures follow within seconds.
`,
};

export const USAGE = `usage: longshore <command> [options]

commands:
  serve  [--config FILE]                      run the mirror
  gc     [--config FILE] [--dry-run] [--grace 1h]
                                              delete blobs no manifest references
  warm   (--url URL | --config FILE) [--creds USER:PASS] [--platform OS/ARCH[/VARIANT]]...
         [--all-platforms] [--file LIST] IMAGE...
                                              pull images into the cache
  export [--url URL | --config FILE] [--creds USER:PASS] [--platform ...]... -o BUNDLE.tar IMAGE...
                                              write images as an OCI layout tar
  import [--config FILE] BUNDLE.tar...        load bundles into the cache
  ls     [--url URL [--creds USER:PASS] | --config FILE] [--json] [REPO]
                                              list cached and private repositories and tags

  longshore <command> --help                  that command's options
  longshore --version                         the version

Config: YAML (see config/default.yaml); every key can be overridden by LONGSHORE_* variables.
`;
