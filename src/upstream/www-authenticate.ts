// Parses registry auth challenges: `Bearer realm="...",service="...",scope="a:b:pull,push"`.

export interface AuthChallenge {
  scheme: string; // lower-case: "bearer", "basic"
  params: Record<string, string>;
}

export function parseWwwAuthenticate(header: string | string[] | undefined): AuthChallenge | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const match = /^\s*([A-Za-z]+)\s*(.*)$/.exec(value);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  // Quoted values may contain commas (scope="repository:x:pull,push"), so match pairs, not split.
  const pair = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let m = pair.exec(match[2] ?? ''); m; m = pair.exec(match[2] ?? '')) {
    params[(m[1] as string).toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
  }
  return { scheme: (match[1] as string).toLowerCase(), params };
}
