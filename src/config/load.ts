// Loads the YAML config file, applies LONGSHORE_* environment overrides, and validates the
// result. Every failure names the offending key (and the env variable, when one set it).
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { configSchema, type Config } from './schema.js';

export const ENV_PREFIX = 'LONGSHORE_';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Path = Array<string | number>;

/** `LONGSHORE_UPSTREAMS__0__TAG_TTL` → ['upstreams', 0, 'tagTtl'] */
export function envNameToPath(name: string): Path {
  return name
    .slice(ENV_PREFIX.length)
    .split('__')
    .map((segment) => {
      if (/^\d+$/.test(segment)) return Number(segment);
      return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    });
}

/** ['upstreams', 0, 'tagTtl'] → `LONGSHORE_UPSTREAMS__0__TAG_TTL` */
export function pathToEnvName(path: Path): string {
  return ENV_PREFIX + path.map((p) => String(p).replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__');
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : out ? `${out}.${String(p)}` : String(p)), '');
}

function setAtPath(target: Record<string, unknown>, path: Path, value: unknown, envName: string): void {
  let node: Record<string | number, unknown> = target;
  path.forEach((key, i) => {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (next === undefined || next === null) {
      node[key] = typeof path[i + 1] === 'number' ? [] : {};
    } else if (typeof next !== 'object') {
      throw new ConfigError(`${envName}: "${formatPath(path.slice(0, i + 1))}" is a value, not a section`);
    }
    node = node[key] as Record<string | number, unknown>;
  });
}

/** Env values are YAML scalars or flow collections, so `true`, `5m` and `[a, b]` all work. */
function parseEnvValue(raw: string): unknown {
  try {
    return parseYaml(raw) as unknown;
  } catch {
    return raw;
  }
}

/** Receives non-fatal findings while a config is read (e.g. variables that were ignored). */
export type ConfigWarning = (message: string, details: Record<string, unknown>) => void;

/** Outside the server there is no logger yet: a plain line on stderr. */
const warnOnStderr: ConfigWarning = (message, details) => {
  process.stderr.write(`longshore: warning: ${message}: ${Object.values(details).flat().join(', ')}\n`);
};

const TOP_LEVEL_KEYS = new Set(Object.keys(configSchema.shape));

export function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, warn: ConfigWarning = warnOnStderr): Map<string, string> {
  const origins = new Map<string, string>();
  // Kubernetes gives every pod of a Service named "longshore" LONGSHORE_PORT=tcp://…,
  // LONGSHORE_SERVICE_HOST and the like; they share our prefix but are not ours. Only
  // variables under a top-level key we know are applied (and validated as strictly as ever).
  const ignored: string[] = [];
  for (const [name, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    const path = envNameToPath(name);
    if (!TOP_LEVEL_KEYS.has(String(path[0]))) {
      ignored.push(name);
      continue;
    }
    if (path.some((p) => p === '')) throw new ConfigError(`${name}: malformed variable name`);
    setAtPath(raw, path, parseEnvValue(value), name);
    origins.set(formatPath(path), name);
  }
  if (ignored.length > 0) warn(`ignored ${ENV_PREFIX}* variables that name no configuration key`, { variables: ignored });
  return origins;
}

/** The variable that set `path` or a section above it, for the "(set by …)" hint. */
function originOf(origins: Map<string, string>, path: ReadonlyArray<PropertyKey>): string | undefined {
  for (let length = path.length; length > 0; length--) {
    const origin = origins.get(formatPath(path.slice(0, length)));
    if (origin) return origin;
  }
  return undefined;
}

export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = {}, source = 'config', warn?: ConfigWarning): Config {
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: the top level must be a mapping`);
  const origins = applyEnvOverrides(raw as Record<string, unknown>, env, warn);
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys' && issue.keys.length > 1) {
      // Several unknown keys of one section come as one issue; each keeps its own origin.
      const keys = issue.keys.map((key) => {
        const origin = originOf(origins, [...issue.path, key]);
        return `${formatPath([...issue.path, key])}${origin ? ` (set by ${origin})` : ''}`;
      });
      return `  ${keys.join(', ')}: unknown keys`;
    }
    const keyPath = issue.code === 'unrecognized_keys' ? [...issue.path, ...issue.keys] : issue.path;
    const origin = originOf(origins, keyPath);
    const message = issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message;
    return `  ${formatPath(keyPath) || '(top level)'}: ${message}${origin ? ` (set by ${origin})` : ''}`;
  });
  throw new ConfigError(`invalid configuration in ${source}:\n${problems.join('\n')}`);
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, warn?: ConfigWarning): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(error as Error).message}`);
  }
  return parseConfig(raw, env, file, warn);
}
