// JSON exactly as Go's encoding/json writes it, where v1 image ids depend on the bytes:
// HTML-sensitive characters escaped (<, >, & and U+2028/U+2029), and raw JSON compacted
// without re-encoding numbers or existing escapes (json.RawMessage behaviour).

const GO_ESCAPES: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029' };

/** A Go-encoded JSON string literal. */
export function goString(value: string): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] as string);
}

/** Compacts raw JSON text: whitespace outside strings dropped, HTML characters in strings escaped. */
export function goCompact(raw: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (inString) {
      if (c === '\\') {
        out += c + (raw[i + 1] ?? '');
        i += 1;
      } else {
        if (c === '"') inString = false;
        out += GO_ESCAPES[c] ?? c;
      }
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c !== ' ' && c !== '\n' && c !== '\r' && c !== '\t') {
      out += c;
    }
  }
  return out;
}

/** The members of a compacted top-level JSON object as [decoded key, raw value] pairs. */
export function rawObjectMembers(compact: string): Array<[string, string]> {
  if (!compact.startsWith('{') || !compact.endsWith('}')) throw new Error('not a JSON object');
  const members: Array<[string, string]> = [];
  let i = 1;
  const end = compact.length - 1;
  const skipString = (from: number): number => {
    let j = from + 1;
    while (j < end && compact[j] !== '"') j += compact[j] === '\\' ? 2 : 1;
    return j + 1;
  };
  while (i < end) {
    const keyEnd = skipString(i);
    const key = JSON.parse(compact.slice(i, keyEnd)) as string;
    let j = keyEnd + 1; // past ':'
    const valueStart = j;
    let depth = 0;
    while (j < end) {
      const c = compact[j];
      if (c === '"') {
        j = skipString(j);
        continue;
      }
      if (c === '{' || c === '[') depth += 1;
      else if (c === '}' || c === ']') depth -= 1;
      else if (c === ',' && depth === 0) break;
      j += 1;
    }
    members.push([key, compact.slice(valueStart, j)]);
    i = j + 1;
  }
  return members;
}
