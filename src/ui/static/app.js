// Longshore's web page: renders the JSON API under /ui/api/ into the page. No build step, no
// outside resources. The login token (from /token, like `docker login`) lives in
// sessionStorage: it goes with this tab's requests and is gone when the tab closes.
const TOKEN_KEY = 'longshore.token';
const main = document.getElementById('main');
let session = { user: null, anonymousPull: true, loginAvailable: false, registryHost: location.host };

// ---------- formatting for people ----------
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function formatBytes(bytes) {
  if (bytes === undefined || bytes === null) return '—';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}
function formatAgo(ms) {
  if (!ms) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}
const formatCount = (n) => new Intl.NumberFormat('en').format(n ?? 0);
const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;
const formatRatio = (r) => (r === undefined || r === null ? '—' : `${(r * 100).toFixed(1)} %`);
const shortDigest = (d) => (d ? d.replace(/^sha256:/, '').slice(0, 12) : '');

// ---------- DOM ----------
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    else if (key === 'style') Object.assign(element.style, value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}
// Views load asynchronously: a slow one must not paint over the view navigated to after it.
let routeSeq = 0;
function render(seq, ...nodes) {
  if (seq !== routeSeq) return;
  main.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
}
const card = (label, value, sub, extra) => h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null, extra);
const empty = (text) => h('div', { class: 'empty' }, text);
function table(headers, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', {}, h('thead', {}, h('tr', {}, headers.map(([label, cls]) => h('th', { class: cls }, label)))), h('tbody', {}, rows)),
  );
}

// ---------- API ----------
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(`/ui/api/${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = await response.json().catch(() => ({}));
  if (response.ok) return body;
  const message = body.errors?.[0]?.message ?? `HTTP ${response.status}`;
  if (response.status === 401 && token) {
    // Expired (tokens last auth.tokenTtl): back to anonymous, and say so.
    sessionStorage.removeItem(TOKEN_KEY);
    await loadSession();
    throw new ApiError(401, 'Your session has expired: log in again.');
  }
  throw new ApiError(response.status, message);
}

async function loadSession() {
  session = await api('session');
  const box = document.getElementById('session');
  if (session.user) {
    box.replaceChildren(h('span', {}, `Signed in as ${session.user}`), h('button', { id: 'logout', onclick: logout }, 'Log out'));
  } else if (session.loginAvailable) {
    box.replaceChildren(h('span', { class: 'hide-narrow' }, 'Anonymous'), h('button', { id: 'login', onclick: openLogin }, 'Log in'));
  } else {
    box.replaceChildren();
  }
}

function openLogin() {
  document.getElementById('login-error').textContent = '';
  document.getElementById('login-dialog').showModal();
}
async function login(event) {
  event.preventDefault();
  const form = event.target;
  const username = form.username.value;
  const password = form.password.value;
  const basic = btoa(String.fromCharCode(...new TextEncoder().encode(`${username}:${password}`)));
  const response = await fetch('/token?service=longshore', { headers: { authorization: `Basic ${basic}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.token) {
    document.getElementById('login-error').textContent = body.errors?.[0]?.message ?? `login failed (HTTP ${response.status})`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, body.token);
  form.reset();
  document.getElementById('login-dialog').close();
  await loadSession();
  await route();
}
async function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  await loadSession();
  await route();
}

// ---------- views ----------
async function overviewView() {
  const mine = routeSeq;
  const [overview, upstreams] = await Promise.all([api('overview'), api('upstreams')]);
  const { cache, traffic } = overview;
  const used = cache.maxBytes ? Math.min(1, cache.mirroredBytes / cache.maxBytes) : undefined;
  const hour = traffic.lastHour;
  const since = traffic.sinceStart;
  const down = upstreams.upstreams.filter((u) => u.circuit && u.circuit !== 'closed');
  render(
    mine,
    h('h1', {}, 'Overview'),
    down.length > 0 ? h('div', { class: 'notice' }, `Upstream trouble: ${down.map((u) => `${u.name} (circuit ${u.circuit})`).join(', ')}`) : null,
    h(
      'div',
      { class: 'cards' },
      card(
        'Cache size',
        formatBytes(cache.mirroredBytes),
        cache.maxBytes ? `of ${formatBytes(cache.maxBytes)} (${formatRatio(used)})` : 'no size bound (storage.cache.maxBytes)',
        used === undefined ? null : h('div', { class: 'bar' }, h('span', { style: { width: `${(used * 100).toFixed(1)}%` } })),
      ),
      card('Objects cached', formatCount(cache.mirroredObjects), `${formatCount(cache.privateObjects)} private (${formatBytes(cache.privateBytes)}), never evicted`),
      card('Hit ratio (last hour)', h('span', { id: 'hit-ratio-hour' }, formatRatio(hour.hitRatio)), `${formatCount(hour.hits)} of ${formatCount(hour.lookups)} lookups`),
      card('Hit ratio (since start)', h('span', { id: 'hit-ratio' }, formatRatio(since.hitRatio)), `${formatCount(since.hits)} of ${formatCount(since.lookups)} lookups`),
      card('Served from cache', formatBytes(since.bytesFromCache), `last hour ${formatBytes(hour.bytesFromCache)}`),
      card('Fetched from upstreams', formatBytes(since.upstreamBytes), `last hour ${formatBytes(hour.upstreamBytes)}`),
      card('Upstream bytes saved', formatBytes(since.bytesFromCache), 'bytes clients got without an upstream fetch'),
      card('Fetches in flight', h('span', { id: 'inflight' }, formatCount(overview.inflightFetches)), 'live: refreshed every 5 s'),
      card('Evictions', formatCount(cache.evictions), 'since start, to stay within the bound'),
      card('Repositories', formatCount(overview.repositories.mirrored + overview.repositories.private), `${formatCount(overview.repositories.mirrored)} mirrored, ${formatCount(overview.repositories.private)} private`),
    ),
    h('h2', {}, 'Upstreams'),
    upstreamTable(upstreams.upstreams),
  );
  // In-flight fetches and ratios change by the second: refresh while this view is shown.
  if (mine === routeSeq) scheduleRefresh(async () => {
    const fresh = await api('overview');
    const set = (id, text) => {
      const element = document.getElementById(id);
      if (element) element.textContent = text;
    };
    set('inflight', formatCount(fresh.inflightFetches));
    set('hit-ratio', formatRatio(fresh.traffic.sinceStart.hitRatio));
    set('hit-ratio-hour', formatRatio(fresh.traffic.lastHour.hitRatio));
  });
}

function upstreamTable(upstreams) {
  if (upstreams.length === 0) return empty('No upstreams configured: this Longshore is a private registry only.');
  const circuitBadge = (state) =>
    state === undefined ? h('span', { class: 'muted' }, 'n/a') : h('span', { class: `badge ${state === 'closed' ? 'good' : state === 'open' ? 'bad' : 'warn'}` }, state);
  return table(
    [['Upstream'], ['URL', 'hide-narrow'], ['Circuit'], ['Latency', 'num'], ['Last error'], ['Rate limit left', 'num hide-narrow']],
    upstreams.map((u) =>
      h(
        'tr',
        {},
        h('td', {}, u.name, u.isDefault ? h('span', { class: 'badge' }, 'default') : null),
        h('td', { class: 'mono hide-narrow' }, u.url ?? u.v1Index ?? ''),
        h('td', {}, circuitBadge(u.circuit)),
        h('td', { class: 'num' }, u.latencyMs === undefined || u.latencyMs === null ? '—' : `${Math.round(u.latencyMs)} ms`),
        h('td', {}, u.lastFailure ? `${u.lastFailure.status} (${u.lastFailure.kind}), ${formatAgo(u.lastFailure.at)}` : h('span', { class: 'muted' }, 'none')),
        h('td', { class: 'num hide-narrow' }, u.rateLimitRemaining === undefined || u.rateLimitRemaining === null ? '—' : formatCount(u.rateLimitRemaining)),
      ),
    ),
  );
}

async function upstreamsView() {
  const mine = routeSeq;
  const { upstreams } = await api('upstreams');
  render(mine, h('h1', {}, 'Upstreams'), upstreamTable(upstreams), h('p', { class: 'hint' }, 'Latency: median time to response headers of the last 50 requests from this replica.'));
}

function pager(result, hrefFor) {
  const pages = Math.max(1, Math.ceil(result.total / result.perPage));
  if (pages <= 1) return null;
  return h(
    'div',
    { class: 'pager' },
    h('a', { href: hrefFor(result.page - 1), class: result.page <= 1 ? 'disabled' : null, rel: 'prev' }, '← Previous'),
    h('span', {}, `Page ${result.page} of ${formatCount(pages)}`),
    h('a', { href: hrefFor(result.page + 1), class: result.page >= pages ? 'disabled' : null, rel: 'next' }, 'Next →'),
  );
}

async function repositoriesView(params) {
  const mine = routeSeq;
  const q = params.get('q') ?? '';
  const page = Number(params.get('page') ?? '1') || 1;
  const query = new URLSearchParams({ page: String(page), perPage: '50' });
  if (q) query.set('q', q);
  const result = await api(`repositories?${query}`);
  const hrefFor = (p) => `#/repositories?${new URLSearchParams({ ...(q ? { q } : {}), page: String(p) })}`;
  const search = h('input', { type: 'search', name: 'q', value: q, placeholder: 'Search repositories', 'aria-label': 'Search repositories' });
  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); location.hash = `#/repositories?${new URLSearchParams(search.value ? { q: search.value } : {})}`; } }, search, h('button', { type: 'submit' }, 'Search'));
  let body;
  if (result.total === 0) {
    body = empty(
      q
        ? `No repository matches “${q}”.`
        : session.user || session.anonymousPull
          ? 'Nothing here yet: pull an image through this mirror (or push one into a private namespace) and it shows up here.'
          : 'Log in to see what this mirror holds.',
    );
  } else {
    body = table(
      [['Repository'], ['Kind'], ['Tags', 'num'], ['Pulls', 'num'], ['Last pulled', 'hide-narrow']],
      result.items.map((r) =>
        h(
          'tr',
          { 'data-repository': r.name },
          h('td', {}, h('a', { href: `#/r/${r.name}` }, r.name)),
          h('td', {}, r.kind === 'private' ? h('span', { class: 'badge private' }, 'private') : h('span', { class: 'badge' }, `mirror: ${r.upstream}`)),
          h('td', { class: 'num' }, formatCount(r.tagCount)),
          h('td', { class: 'num' }, formatCount(r.pulls)),
          h('td', { class: 'hide-narrow' }, formatAgo(r.lastPulledAt)),
        ),
      ),
    );
  }
  render(mine, h('h1', {}, 'Repositories'), form, h('p', { class: 'muted', id: 'repository-count' }, plural(result.total, 'repository').replace(/ys$/, 'ies')), body, pager(result, hrefFor));
}

function pullLines(reference, v1Only = false) {
  const copy = (text) => h('button', { type: 'button', onclick: () => navigator.clipboard?.writeText(text) }, 'copy');
  // A tag that only exists over v1 pulls with a Docker 1.x daemon; podman never spoke v1.
  const lines = v1Only ? [`docker pull ${reference}`] : [`docker pull ${reference}`, `podman pull ${reference}`];
  return lines.map((line) => h('div', { class: 'pull' }, h('code', {}, line), copy(line)));
}

async function repositoryView(name, params) {
  const mine = routeSeq;
  const page = Number(params.get('page') ?? '1') || 1;
  const repo = await api(`repository?${new URLSearchParams({ name, page: String(page), perPage: '50' })}`);
  const hrefFor = (p) => `#/r/${name}?page=${p}`;
  // v1 tags (a v1 push, a pull through a v1 index) name an image id, not a manifest: no layer page.
  const tagCell = (t) =>
    t.api === 'v1'
      ? h('td', {}, t.tag, ' ', h('span', { class: 'badge' }, 'v1'), h('div', { class: 'mono muted', title: t.imageId }, `id ${t.imageId.slice(0, 12)}`))
      : h('td', {}, h('a', { href: `#/r/${name}@${t.digest}` }, t.tag), h('div', { class: 'mono muted' }, shortDigest(t.digest)));
  const typeText = (t) => {
    const platforms = t.platforms.length ? ` (${t.platforms.join(', ')})` : '';
    if (t.kind === 'index') return `index: ${t.platforms.join(', ') || 'platforms unknown'}`;
    if (t.kind === 'image') return `${t.api === 'v1' ? 'v1 image' : 'image'}${platforms}`;
    return t.cached ? 'other' : 'not cached';
  };
  const rows = repo.tags.items.map((t) =>
    h(
      'tr',
      { 'data-tag': t.tag, 'data-api': t.api },
      tagCell(t),
      h('td', {}, typeText(t), t.mediaType ? h('div', { class: 'muted hide-narrow' }, t.mediaType) : null),
      h('td', { class: 'num', 'data-size': t.size ?? '' }, formatBytes(t.size), t.size !== undefined && !t.sizeComplete ? h('div', { class: 'muted' }, 'cached part') : null),
      h('td', { class: 'num' }, formatCount(t.pulls)),
      h('td', { class: 'hide-narrow' }, formatAgo(t.lastPulledAt)),
    ),
  );
  const first = repo.tags.items.find((t) => t.api !== 'v1') ?? repo.tags.items[0];
  const firstTag = first?.tag ?? 'latest';
  render(
    mine,
    h('div', { class: 'crumbs' }, h('a', { href: '#/repositories' }, 'Repositories'), ' /'),
    h('h1', {}, name, ' ', repo.kind === 'private' ? h('span', { class: 'badge private' }, 'private') : h('span', { class: 'badge' }, `mirror: ${repo.upstream}`)),
    h('p', { class: 'muted' }, `${plural(repo.tagCount, 'tag')} · ${plural(repo.pulls, 'pull')} · last pulled ${formatAgo(repo.lastPulledAt)}`),
    ...pullLines(`${session.registryHost}/${name}:${firstTag}`, first?.api === 'v1'),
    h('h2', {}, 'Tags'),
    repo.tags.total === 0 ? empty('No tags recorded for this repository yet.') : table([['Tag'], ['Type'], ['Size', 'num'], ['Pulls', 'num'], ['Last pulled', 'hide-narrow']], rows),
    pager(repo.tags, hrefFor),
  );
}

async function imageView(name, digest) {
  const mine = routeSeq;
  const image = await api(`image?${new URLSearchParams({ name, digest })}`);
  const cachedBadge = (cached) => h('span', { class: `badge ${cached ? 'good' : 'warn'}` }, cached ? 'cached' : 'not cached');
  let body;
  if (image.kind === 'index') {
    body = table(
      [['Platform'], ['Manifest'], ['Size', 'num'], ['']],
      image.manifests.map((m) =>
        h('tr', {}, h('td', {}, m.platform ?? 'unknown'), h('td', { class: 'mono' }, m.cached ? h('a', { href: `#/r/${name}@${m.digest}` }, shortDigest(m.digest)) : shortDigest(m.digest)), h('td', { class: 'num' }, formatBytes(m.size)), h('td', {}, cachedBadge(m.cached))),
      ),
    );
  } else if (image.kind === 'image') {
    const rows = [['config', image.config], ...image.layers.map((layer, i) => [`layer ${i + 1}`, layer])].map(([label, layer]) =>
      h('tr', { 'data-layer': layer.digest }, h('td', {}, label), h('td', { class: 'mono' }, shortDigest(layer.digest)), h('td', { class: 'num' }, formatBytes(layer.size)), h('td', {}, cachedBadge(layer.cached))),
    );
    body = table([['Part'], ['Digest'], ['Size', 'num'], ['']], rows);
  } else {
    body = empty('This manifest is neither an image nor an index: nothing to break down.');
  }
  render(
    mine,
    h('div', { class: 'crumbs' }, h('a', { href: '#/repositories' }, 'Repositories'), ' / ', h('a', { href: `#/r/${name}` }, name), ' /'),
    h('h1', {}, `${name}@${shortDigest(image.digest)}`),
    h('p', { class: 'muted mono' }, image.digest),
    h('p', {}, `${image.kind === 'index' ? 'Index' : 'Image'} · ${image.mediaType} · ${formatBytes(image.size)}`),
    ...pullLines(`${session.registryHost}/${name}@${image.digest}`),
    h('h2', {}, image.kind === 'index' ? 'Images' : 'Layers'),
    body,
  );
}

// ---------- routing ----------
let refreshTimer;
function scheduleRefresh(work) {
  refreshTimer = setInterval(() => work().catch(() => clearInterval(refreshTimer)), 5000);
}

async function route() {
  clearInterval(refreshTimer);
  const seq = ++routeSeq;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  const params = new URLSearchParams(search);
  const section = path.startsWith('/r/') || path.startsWith('/repositories') ? 'repositories' : path.startsWith('/upstreams') ? 'upstreams' : 'overview';
  for (const link of document.querySelectorAll('[data-nav]')) link.classList.toggle('active', link.dataset.nav === section);
  try {
    if (path.startsWith('/r/')) {
      const ref = decodeURIComponent(path.slice(3));
      const at = ref.indexOf('@');
      await (at > 0 ? imageView(ref.slice(0, at), ref.slice(at + 1)) : repositoryView(ref, params));
    } else if (path === '/repositories') await repositoriesView(params);
    else if (path === '/upstreams') await upstreamsView();
    else await overviewView();
  } catch (error) {
    const needsLogin = error instanceof ApiError && (error.status === 401 || error.status === 404) && !session.user && session.loginAvailable;
    render(
      seq,
      h('h1', {}, error instanceof ApiError && error.status === 404 ? 'Not found' : 'Cannot show this'),
      h('p', { class: 'error' }, error.message),
      needsLogin ? h('p', {}, h('button', { onclick: openLogin }, 'Log in'), ' to see private repositories.') : null,
    );
  }
}

document.getElementById('login-form').addEventListener('submit', (event) => void login(event));
document.getElementById('login-cancel').addEventListener('click', () => document.getElementById('login-dialog').close());
window.addEventListener('hashchange', () => void route());
await loadSession();
await route();
