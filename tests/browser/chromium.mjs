// Chromium for the browser tests (docs.test.mjs, cors.test.mjs): Debian's /usr/bin/chromium (or
// CHROMIUM_PATH), driven headless through playwright-core, which never downloads a browser.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/// playwright-core's `chromium`. If the browser or playwright-core is missing, calls
/// `skipOrFail(reason)`, the test's own, which ends the process (skipped, or failed under
/// REQUIRE_BROWSER=1).
export function loadChromium(skipOrFail) {
  if (!existsSync(CHROMIUM)) {
    skipOrFail(`${CHROMIUM} is not installed (apt-get install -y chromium)`);
  }
  try {
    // Resolved from this folder, so the tests run from any working directory.
    return createRequire(join(HERE, 'package.json'))('playwright-core').chromium;
  } catch {
    return skipOrFail(
      'playwright-core is not installed (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)',
    );
  }
}
