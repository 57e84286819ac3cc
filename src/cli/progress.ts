// Progress for long-running commands: bars on a terminal (one per image plus a total),
// plain lines otherwise (CI logs, pipes), so the same command reads well in both.

/** Where a finished blob came from, when the command knows (warm: the mirror's Cache-Status). */
export interface BlobSource {
  cached: boolean;
  bytes: number;
}

export interface Progress {
  begin(image: string, totalBytes: number, totalBlobs: number): void;
  advance(image: string, bytes: number): void;
  blobDone(image: string, source?: BlobSource): void;
  end(image: string, error?: Error): void;
  finish(): void;
}

interface Row {
  totalBytes: number;
  doneBytes: number;
  totalBlobs: number;
  doneBlobs: number;
  /** Of the done blobs, those the mirror had already (the rest were fetched from upstream). */
  cachedBlobs: number;
  cachedBytes: number;
  /** Whether any blob said where it came from: only then is the split shown. */
  sourced: boolean;
  state: 'running' | 'done' | 'failed';
}

function emptyRow(totalBytes = 0, totalBlobs = 0): Row {
  return { totalBytes, doneBytes: 0, totalBlobs, doneBlobs: 0, cachedBlobs: 0, cachedBytes: 0, sourced: false, state: 'running' };
}

/** "1 cached (1.0 KiB), 2 fetched (4.0 MiB)": empty when no blob said where it came from. */
export function formatSources(row: Pick<Row, 'doneBlobs' | 'doneBytes' | 'cachedBlobs' | 'cachedBytes' | 'sourced'>): string {
  if (!row.sourced) return '';
  const fetchedBytes = Math.max(row.doneBytes - row.cachedBytes, 0);
  return `${row.cachedBlobs} cached (${formatBytes(row.cachedBytes)}), ${row.doneBlobs - row.cachedBlobs} fetched (${formatBytes(fetchedBytes)})`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export interface ProgressOptions {
  /** What each begin() is, for the total line: "images" (warm, export) or "bundles" (import). */
  unit?: string;
  /** Plain-line output: how often a line with bytes, rate and ETA is written while work runs. */
  heartbeatMs?: number;
  now?: () => number;
}

/** A pipe or a CI log gets a line at least this often, so a long layer never looks hung. */
const HEARTBEAT_MS = 5000;

export function createProgress(out: NodeJS.WriteStream, options: ProgressOptions = {}): Progress {
  return out.isTTY ? new BarProgress(out) : new LineProgress(out, options.heartbeatMs ?? HEARTBEAT_MS, options.now ?? Date.now, options.unit ?? 'images');
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

abstract class TrackedProgress implements Progress {
  protected readonly rows = new Map<string, Row>();

  begin(image: string, totalBytes: number, totalBlobs: number): void {
    this.rows.set(image, emptyRow(totalBytes, totalBlobs));
    this.changed(image, 'begin');
  }

  advance(image: string, bytes: number): void {
    const row = this.rows.get(image);
    if (row) row.doneBytes += bytes;
    this.changed(image, 'advance');
  }

  blobDone(image: string, source?: BlobSource): void {
    const row = this.rows.get(image);
    if (row) {
      row.doneBlobs += 1;
      if (source) {
        row.sourced = true;
        if (source.cached) {
          row.cachedBlobs += 1;
          row.cachedBytes += source.bytes;
        }
      }
    }
    this.changed(image, 'blob');
  }

  end(image: string, error?: Error): void {
    const row = this.rows.get(image) ?? emptyRow();
    row.state = error ? 'failed' : 'done';
    this.rows.set(image, row);
    this.changed(image, 'end', error);
  }

  abstract finish(): void;
  protected abstract changed(image: string, event: 'begin' | 'advance' | 'blob' | 'end', error?: Error): void;

  protected total(): Row {
    return sumRows([...this.rows.values()]);
  }
}

class LineProgress extends TrackedProgress {
  private heartbeat: NodeJS.Timeout | undefined;
  private startedAt: number | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly heartbeatMs: number,
    private readonly now: () => number,
    private readonly unit: string,
  ) {
    super();
  }

  protected changed(image: string, event: 'begin' | 'advance' | 'blob' | 'end', error?: Error): void {
    if (event === 'begin' && !this.heartbeat) {
      this.startedAt = this.now();
      this.heartbeat = setInterval(() => this.out.write(this.rateLine()), this.heartbeatMs);
      this.heartbeat.unref(); // never what keeps the command alive
    }
    const row = this.rows.get(image);
    if (!row) return;
    // A total of 0 blobs means "not known up front" (a bundle is read as it comes): no "1/0".
    const blobsOf = (done: number | undefined) => (row.totalBlobs > 0 ? `${done === undefined ? '' : `${done}/`}${row.totalBlobs} blobs` : `${done ?? 0} blobs`);
    if (event === 'begin') this.out.write(row.totalBlobs > 0 ? `${image}: ${blobsOf(undefined)}, ${formatBytes(row.totalBytes)}\n` : `${image}: ${formatBytes(row.totalBytes)}\n`);
    const sources = formatSources(row);
    if (event === 'blob') this.out.write(`${image}: ${blobsOf(row.doneBlobs)}, ${formatBytes(row.doneBytes)}${sources ? `: ${sources}` : ''}\n`);
    if (event === 'end') this.out.write(error ? `${image}: FAILED: ${error.message}\n` : `${image}: done\n`);
  }

  /** "progress: 12.0 MiB of 40.0 MiB (30%), 2.0 MiB/s, ETA 14s" */
  private rateLine(): string {
    const total = this.total();
    const seconds = Math.max((this.now() - (this.startedAt ?? this.now())) / 1000, 0.001);
    const rate = total.doneBytes / seconds;
    const left = Math.max(total.totalBytes - total.doneBytes, 0);
    const percent = total.totalBytes > 0 ? ` (${Math.floor((total.doneBytes / total.totalBytes) * 100)}%)` : '';
    return `progress: ${formatBytes(total.doneBytes)} of ${formatBytes(total.totalBytes)}${percent}, ${formatBytes(rate)}/s, ETA ${rate > 0 ? formatDuration(left / rate) : '?'}\n`;
  }

  finish(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    // What failed brought nothing in: its bytes and blobs are not part of the total.
    const done = [...this.rows.values()].filter((r) => r.state !== 'failed');
    const total = sumRows(done);
    const sources = formatSources(total);
    this.out.write(`total: ${done.length}/${this.rows.size} ${this.unit}, ${total.doneBlobs} blobs, ${formatBytes(total.doneBytes)}${sources ? `: ${sources}` : ''}\n`);
  }
}

const BAR_WIDTH = 30;
const REDRAW_MS = 100;

class BarProgress extends TrackedProgress {
  private drawnLines = 0;
  private lastDraw = 0;
  private readonly errors: string[] = [];

  constructor(private readonly out: NodeJS.WriteStream) {
    super();
  }

  protected changed(image: string, event: string, error?: Error): void {
    if (error) this.errors.push(`${image}: ${error.message}`);
    const now = Date.now();
    if (event === 'advance' && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.draw();
  }

  private line(label: string, row: Row): string {
    const fraction = row.totalBytes > 0 ? Math.min(1, row.doneBytes / row.totalBytes) : row.state === 'done' ? 1 : 0;
    const filled = Math.round(fraction * BAR_WIDTH);
    const mark = row.state === 'failed' ? ' FAILED' : row.state === 'done' ? ' done' : '';
    const cached = row.sourced ? ` (${row.cachedBlobs} cached)` : '';
    return `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}% ${formatBytes(row.doneBytes)}/${formatBytes(row.totalBytes)} ${row.doneBlobs}/${row.totalBlobs} blobs${cached}  ${label}${mark}`;
  }

  private draw(): void {
    const lines = [...this.rows.entries()].map(([image, row]) => this.line(image, row));
    lines.push(this.line('total', this.total()));
    let text = this.drawnLines > 0 ? `\x1b[${this.drawnLines}A` : '';
    for (const line of lines) text += `\x1b[2K${line}\n`;
    this.out.write(text);
    this.drawnLines = lines.length;
  }

  finish(): void {
    this.draw();
    const sources = formatSources(sumRows([...this.rows.values()].filter((r) => r.state !== 'failed')));
    if (sources) this.out.write(`blobs: ${sources}\n`);
    for (const error of this.errors) this.out.write(`error: ${error}\n`);
  }
}

function sumRows(rows: Row[]): Row {
  const total = emptyRow();
  for (const row of rows) {
    total.totalBytes += row.totalBytes;
    total.doneBytes += row.doneBytes;
    total.totalBlobs += row.totalBlobs;
    total.doneBlobs += row.doneBlobs;
    total.cachedBlobs += row.cachedBlobs;
    total.cachedBytes += row.cachedBytes;
    total.sourced ||= row.sourced;
  }
  return total;
}
