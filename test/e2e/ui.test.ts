// The web page in a real browser (Debian's chromium through playwright-core), after real
// pulls through the mirror (skopeo against the reference registry as upstream) and a private
// push: repositories and tags with their sizes, the hit ratio after a second pull, what an
// anonymous visitor and a logged-in user see. Screenshots go to the test's temp dir (and to
// $UI_SCREENSHOT_DIR when set: that is how docs/*.png are made).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { request } from 'undici';
import type { Page } from 'playwright-core';
import { launchBrowser } from '../harness/browser.js';
import { makeOciLayout, pushDockerImage } from '../harness/images.js';
import { startLongshore } from '../harness/longshore.js';
import { startRegistry } from '../harness/registry.js';
import { skopeo } from '../harness/skopeo.js';
import { makeTempDir } from '../harness/tmp.js';
import { V1Client } from '../harness/v1-client.js';
import { catalogShard } from '../../src/ui/repository-catalog.js';
import { onCleanup } from '../support/cleanup.js';
import { writeHtpasswd } from '../support/users.js';
import { v1Chain } from '../support/v1-images.js';

async function screenshot(page: Page, dir: string, name: string): Promise<string> {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.UI_SCREENSHOT_DIR) await copyFile(file, path.join(process.env.UI_SCREENSHOT_DIR, `${name}.png`));
  return file;
}

/** Text nodes that are a JavaScript value printed by mistake. */
function rawValues(page: Page): Promise<string[]> {
  // Evaluated in the page (a string: this program is type-checked without the DOM library).
  return page.evaluate<string[]>(`(() => {
    const found = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = (node.textContent || '').trim();
      if (/^(null|undefined)$|NaN|undefined/.test(text)) found.push(text);
    }
    return found;
  })()`);
}

// Start-up compiles the sources (tsx) with the browser and other suites competing for two cores.
const START_TIMEOUT_MS = 60_000;

const percent = (text: string | null) => Number(/([\d.]+)\s*%/.exec(text ?? '')?.[1] ?? 'NaN');

test('web page: repositories, tags and sizes after real pulls; the hit ratio moves on a second pull; private content only after logging in', async (t) => {
  const work = await makeTempDir('ui');
  onCleanup(t, () => work.remove());
  const screenshots = path.join(work.path, 'screenshots');
  await mkdir(screenshots);
  const upstream = await startRegistry();
  onCleanup(t, () => upstream.dispose());
  const web = await pushDockerImage(upstream.url, 'apps/web', '1.4', [300_000, 40_000]);
  const webSize = web.configBytes.length + web.layers.reduce((total, layer) => total + layer.size, 0);

  const htpasswd = path.join(work.path, 'htpasswd');
  await writeHtpasswd(htpasswd, { alice: 'wonderland' });
  const mirror = await startLongshore({
    private: { namespaces: ['corp'] },
    auth: { htpasswd },
    storage: { cache: { maxBytes: '1GiB' } },
    upstreams: [{ name: 'up', url: upstream.url, default: true, tagTtl: '1h' }],
  }, { startTimeoutMs: START_TIMEOUT_MS });
  onCleanup(t, () => mirror.dispose());
  const host = new URL(mirror.url).host;

  await skopeo(['copy', '--src-tls-verify=false', '--src-no-creds', `docker://${host}/apps/web:1.4`, `dir:${path.join(work.path, 'pull-1')}`]);
  const layout = path.join(work.path, 'layout');
  const [secret] = await makeOciLayout(layout, [{ tag: 'v2', layerSizes: [120_000] }]);
  assert.ok(secret);
  const secretSize = secret.configBytes.length + secret.layers.reduce((total, layer) => total + layer.size, 0);
  await skopeo(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', `oci:${layout}:v2`, `docker://${host}/corp/payroll:v2`]);
  // A Docker 1.10 `docker push` over /v1 into the private namespace: its tag is a v1 record.
  const legacy = await v1Chain('ui-legacy', ['a', 'b']);
  const legacyTop = legacy.at(-1);
  assert.ok(legacyTop);
  await new V1Client(mirror.url, { username: 'alice', password: 'wonderland' }).push('corp/legacy', legacy, { '0.9': legacyTop.id });
  const legacySize = legacy.reduce((total, image) => total + image.layer.length, 0);

  // GET / answers API clients as before; a browser is sent to the page.
  const api = await request(`${mirror.url}/`, { headers: { accept: 'application/json' } });
  assert.equal(api.statusCode, 404);
  assert.match(await api.body.text(), /"errors"/);

  const browser = await launchBrowser();
  onCleanup(t, () => browser.close());
  const page = await browser.newPage();
  const externalRequests: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(mirror.url)) externalRequests.push(r.url());
  });
  // Script errors and Content-Security-Policy refusals (an inline style, say) show up here.
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(error.message));
  await page.goto(`${mirror.url}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/', 'a browser asking for / lands on the page');
  await page.locator('#hit-ratio').waitFor();
  const firstRatio = percent(await page.locator('#hit-ratio').textContent());

  await page.goto(`${mirror.url}/ui/#/repositories`);
  await page.locator('tr[data-repository]').first().waitFor();
  const anonymousNames = await Promise.all((await page.locator('tr[data-repository]').all()).map((row) => row.getAttribute('data-repository')));
  assert.deepEqual(anonymousNames, ['apps/web'], 'anonymous visitors see mirrored content, not the private repositories');

  await page.locator('a', { hasText: 'apps/web' }).click();
  const tagRow = page.locator('tr[data-tag="1.4"]');
  await tagRow.waitFor();
  assert.equal(await tagRow.locator('td[data-size]').getAttribute('data-size'), String(webSize), 'the tag shows the image size (config + layers)');
  assert.match((await page.locator('main').textContent()) ?? '', new RegExp(`docker pull ${host.replace(/\./g, '\\.')}/apps/web:1\\.4`));
  assert.deepEqual(await rawValues(page), [], 'no raw null/undefined/NaN rendered as text');
  await page.locator('tr[data-tag="1.4"] a').click();
  await page.locator('tr[data-layer]').first().waitFor();
  const layerStates = await page.locator('tr[data-layer]').allTextContents();
  assert.equal(layerStates.length, 3, 'config and two layers');
  assert.ok(layerStates.every((text) => text.includes('cached') && !text.includes('not cached')), layerStates.join(' | '));
  await screenshot(page, screenshots, 'image');

  // A second pull is served from the cache: the overview's hit ratio goes up.
  await skopeo(['copy', '--src-tls-verify=false', '--src-no-creds', `docker://${host}/apps/web:1.4`, `dir:${path.join(work.path, 'pull-2')}`]);
  await page.goto(`${mirror.url}/ui/#/`);
  await page.reload();
  await page.locator('#hit-ratio').waitFor();
  const secondRatio = percent(await page.locator('#hit-ratio').textContent());
  assert.ok(secondRatio > firstRatio, `hit ratio ${firstRatio} % -> ${secondRatio} %`);
  await screenshot(page, screenshots, 'overview');

  await page.goto(`${mirror.url}/ui/#/r/apps/web`);
  await page.locator('tr[data-tag="1.4"]').waitFor();
  assert.match((await page.locator('tr[data-tag="1.4"]').textContent()) ?? '', /\b2\b/, 'two pulls of the tag counted');

  // Logging in (the /token endpoint, token kept in this tab's session) shows the private repository.
  await page.locator('#login').click();
  await page.locator('input[name=username]').fill('alice');
  await page.locator('input[name=password]').fill('wonderland');
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#session', { hasText: 'Signed in as alice' }).waitFor();
  await page.goto(`${mirror.url}/ui/#/repositories`);
  await page.locator('tr[data-repository="corp/payroll"]').waitFor();
  await screenshot(page, screenshots, 'repositories');
  await page.locator('a', { hasText: 'corp/payroll' }).click();
  await page.locator('tr[data-tag="v2"]').waitFor();
  assert.equal(await page.locator('tr[data-tag="v2"] td[data-size]').getAttribute('data-size'), String(secretSize));
  await screenshot(page, screenshots, 'repository-private');
  // The v1-pushed repository is listed, with its v1 tag: image id and size (every layer of the chain).
  await page.goto(`${mirror.url}/ui/#/repositories`);
  await page.locator('a', { hasText: 'corp/legacy' }).click();
  const legacyRow = page.locator('tr[data-tag="0.9"][data-api="v1"]');
  await legacyRow.waitFor();
  assert.equal(await legacyRow.locator('td[data-size]').getAttribute('data-size'), String(legacySize), 'the v1 tag shows the size of its image chain');
  assert.match((await legacyRow.textContent()) ?? '', new RegExp(`id ${legacyTop.id.slice(0, 12)}`));
  assert.deepEqual(await rawValues(page), [], 'no raw null/undefined/NaN on a v1 tag row');
  const legacyText = (await page.locator('main').textContent()) ?? '';
  assert.ok(legacyText.includes(`docker pull ${host}/corp/legacy:0.9`), 'the pull line names the v1 tag');
  assert.ok(!legacyText.includes('podman pull'), 'no podman line for a tag only v1 serves');
  await screenshot(page, screenshots, 'repository-v1');
  await page.goto(`${mirror.url}/ui/#/r/apps/web`);
  await page.locator('tr[data-tag="1.4"]').waitFor();
  await screenshot(page, screenshots, 'repository');

  // Another tab has no session: the private repository is not there, even by its address.
  const stranger = await browser.newPage();
  await stranger.goto(`${mirror.url}/ui/#/r/corp/payroll`);
  await stranger.locator('h1', { hasText: 'Not found' }).waitFor();
  assert.equal(await stranger.locator('tr[data-tag]').count(), 0);
  const wide = await stranger.evaluate<number>('document.documentElement.scrollWidth');
  await stranger.setViewportSize({ width: 390, height: 844 });
  await stranger.goto(`${mirror.url}/ui/#/r/apps/web`);
  await stranger.locator('tr[data-tag="1.4"]').waitFor();
  const narrow = await stranger.evaluate<number>('document.documentElement.scrollWidth');
  assert.ok(narrow <= 390, `phone width: the page fits (${narrow} px wide; ${wide} px on a laptop)`);
  await screenshot(stranger, screenshots, 'repository-phone');

  assert.deepEqual(externalRequests, [], 'the page loads nothing from elsewhere');
  assert.deepEqual(consoleErrors, [], 'no script errors, nothing refused by the page\'s Content-Security-Policy');
});

test('web page: the repository list with 10,000 repositories renders fast, page after page', async (t) => {
  const work = await makeTempDir('ui-scale');
  onCleanup(t, () => work.remove());
  // The catalog as a running mirror writes it: 256 shard records in the metadata store.
  const dataDir = path.join(work.path, 'data');
  const shards = new Map<string, Record<string, unknown>>();
  for (let i = 0; i < 10_000; i += 1) {
    const name = `team-${String(i % 100).padStart(2, '0')}/service-${String(i).padStart(5, '0')}`;
    const shard = catalogShard(name);
    if (!shards.has(shard)) shards.set(shard, {});
    shards.get(shard)![name] = { kind: 'mirrored', upstream: 'up', repository: name, pulls: i, lastPulledAt: Date.now() - i * 60_000, tags: {} };
  }
  const shardDir = path.join(dataDir, 'meta', 'catalog', 'repositories');
  await mkdir(shardDir, { recursive: true });
  for (const [shard, record] of shards) await writeFile(path.join(shardDir, `${shard}.json`), JSON.stringify(record));
  const upstream = await startRegistry();
  onCleanup(t, () => upstream.dispose());
  const mirror = await startLongshore({ upstreams: [{ name: 'up', url: upstream.url, default: true }] }, { dataDir, startTimeoutMs: START_TIMEOUT_MS });
  onCleanup(t, () => mirror.dispose());

  const browser = await launchBrowser();
  onCleanup(t, () => browser.close());
  const page = await browser.newPage();
  await page.goto(`${mirror.url}/ui/#/`);
  await page.locator('#hit-ratio').waitFor(); // the first view loads the snapshot

  // Each view is awaited by what only it shows (its first row and its count), so a view that
  // has not replaced the one before cannot satisfy the wait.
  const views = [
    ['#/repositories', 'team-00/service-00000', '10,000 repositories'],
    ['#/repositories?page=2', 'team-00/service-05000', '10,000 repositories'],
    ['#/repositories?page=150', 'team-74/service-05074', '10,000 repositories'],
    ['#/repositories?q=service-0999', 'team-90/service-09990', '10 repositories'],
  ] as const;
  const timings: number[] = [];
  for (const [hash, firstRow, count] of views) {
    const started = performance.now();
    await page.goto(`${mirror.url}/ui/${hash}`);
    await page.locator(`tr[data-repository="${firstRow}"]`).waitFor();
    timings.push(performance.now() - started);
    assert.equal(await page.locator('#repository-count').textContent(), count, hash);
    assert.equal(await page.locator('tr[data-repository]').count(), count === '10 repositories' ? 10 : 50, hash);
  }
  const report = timings.map((ms) => `${ms.toFixed(0)} ms`).join(', ');
  console.error(`ui: repository list with 10,000 repositories rendered in the browser in ${report} (first page, page 2, page 150, a search)`);
  assert.ok(Math.max(...timings) < 3000, report);
});
