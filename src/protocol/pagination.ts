// Tag and catalog pagination (OCI Distribution: lexically sorted, `n` items after `last`).

export interface Page<T> {
  items: T[];
  /** The last item, when more follow (for the Link header). */
  next: string | undefined;
}

export function paginate(sorted: string[], n: number | undefined, last: string | undefined): Page<string> {
  const after = last === undefined ? sorted : sorted.filter((item) => item > last);
  if (n === undefined) return { items: after, next: undefined };
  const items = after.slice(0, n);
  return { items, next: after.length > n && items.length > 0 ? items[items.length - 1] : undefined };
}
