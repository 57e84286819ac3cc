// A real browser for the web page's tests: Debian's chromium driven by playwright-core (which
// downloads no browser of its own), headless, on a fresh profile that is removed afterwards.
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { makeTempDir } from './tmp.js';
import { requireTool } from './tools.js';

export interface BrowserHandle {
  /** A new tab: its own sessionStorage, so a new tab starts logged out. */
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

// No network but loopback: no component updates, sync, field trials or QUIC probes.
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser(): Promise<BrowserHandle> {
  const executablePath = requireTool('chromium', 'chromium');
  const profile = await makeTempDir('chromium-profile');
  let context: BrowserContext;
  try {
    // launchPersistentContext is how playwright takes --user-data-dir.
    context = await chromium.launchPersistentContext(profile.path, {
      executablePath,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 860 },
    });
  } catch (error) {
    await profile.remove();
    throw error;
  }
  return {
    newPage: () => context.newPage(),
    close: async () => {
      await context.close();
      await profile.remove();
    },
  };
}
