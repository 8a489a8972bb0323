#!/usr/bin/env node
// Browser test of the Swagger UI that backnd-api serves at /docs.
//
// It builds the server (`cargo build`), starts it on a free port with a throwaway SQLite
// database, registers a user over HTTP, then drives Debian's Chromium headless through
// playwright-core: opens /docs, authorizes through the OAuth2 password flow (tokenUrl
// /auth/login), runs GET /auth/me from the page and checks the response shows the user with a
// 200. Every request the page makes must go to the server itself: the docs work offline. A
// screenshot is saved to tests/browser/screenshots/docs-me.png (git-ignored). Then a page
// served from another origin frames /docs/, and the browser must refuse to show it.
//
// Run:   make test-browser        (or: cd tests/browser && npm ci && node docs.test.mjs)
// Env:   CHROMIUM_PATH            browser binary, default /usr/bin/chromium
//        REQUIRE_BROWSER=1        a missing Chromium or playwright-core fails instead of skipping (CI)
//        BACKND_API_BIN           use this server binary instead of building target/debug/backnd-api
//        DOCS_HOST                host name the page uses, default backnd-api.test (not localhost,
//                                 where Swagger UI behaves differently), mapped to 127.0.0.1
//        BROWSER_TIMEOUT_MS       budget for the whole test, default 60000
//        BROWSER_VERBOSE=1        list every request the page made
// Output ends with `browser: 1 passed, 0 failed` (or `browser: 0 passed, 1 failed`); exit code
// 0 on pass or skip, 1 on failure.
//
// playwright-core is pinned in package.json and never downloads a browser; install it with
// PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from './chromium.mjs';
import { buildServer, startServer, stopServer } from './server.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REQUIRE = process.env.REQUIRE_BROWSER === '1';
const DOCS_HOST = process.env.DOCS_HOST || 'backnd-api.test';
const BUDGET_MS = Number(process.env.BROWSER_TIMEOUT_MS || 60_000);
const SCREENSHOT = join(HERE, 'screenshots', 'docs-me.png');
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', DOCS_HOST.toLowerCase()]);

const started = Date.now();
const log = (msg) => console.log(`[browser ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

function skipOrFail(reason) {
  if (REQUIRE) {
    console.error(`browser test FAILED: ${reason} (REQUIRE_BROWSER=1)`);
    console.log('browser: 0 passed, 1 failed');
    process.exit(1);
  }
  console.log(`browser tests SKIPPED: ${reason}`);
  process.exit(0);
}

const chromium = loadChromium(skipOrFail);

// ---------------------------------------------------------------------------------------------
// The server (server.mjs)

let server = null; // from startServer: { port, child, stderr: string[], workdir, ready }

// ---------------------------------------------------------------------------------------------
// The test

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function run() {
  const bin = buildServer({ log });
  server = startServer(bin, { prefix: 'backnd-browser-' });
  const port = await server.ready;
  const api = `http://127.0.0.1:${port}`;
  const base = `http://${DOCS_HOST}:${port}`;
  log(`server listening on ${api}`);

  const user = {
    name: 'Ada Lovelace',
    phone: '+44 20 7946 0958',
    email: `ada.${randomBytes(4).toString('hex')}@example.com`,
    password: 'analytical-engine',
  };
  const registered = await fetch(`${api}/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(user),
  });
  check(registered.status === 201, `POST /auth/register: ${registered.status} ${await registered.text()}`);
  log(`registered ${user.email}`);

  const args = [...CHROMIUM_ARGS];
  if (!['127.0.0.1', 'localhost'].includes(DOCS_HOST)) {
    args.push(`--host-resolver-rules=MAP ${DOCS_HOST} 127.0.0.1`);
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  try {
    log(`chromium ${browser.version()} launched`);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(10_000);

    // Record every request the page makes; anything not to this server is a failure (and is
    // aborted, so that a machine with a network behaves like one without).
    const requests = [];
    const foreign = [];
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol) && !LOCAL_HOSTS.has(url.hostname)) {
        return route.abort('blockedbyclient');
      }
      return route.continue();
    });
    context.on('request', (request) => {
      const url = new URL(request.url());
      requests.push(`${request.method()} ${request.url()}`);
      if (!['data:', 'blob:', 'about:'].includes(url.protocol) && !LOCAL_HOSTS.has(url.hostname)) {
        foreign.push(`${request.method()} ${request.url()}`);
      }
    });
    const pageErrors = [];
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`);
    });

    // The page, rendered from /openapi.json.
    const response = await page.goto(`${base}/docs`, { waitUntil: 'domcontentloaded' });
    check(response && response.ok(), `GET /docs: ${response && response.status()}`);
    check(new URL(page.url()).pathname === '/docs/', `/docs did not redirect to /docs/ (at ${page.url()})`);
    await page.locator('.swagger-ui .info .title').filter({ hasText: 'backnd-api' }).waitFor();
    const meBlock = page.locator('.opblock.opblock-get').filter({
      has: page.locator('.opblock-summary-path', { hasText: /^\/auth\/me$/ }),
    });
    await meBlock.waitFor();
    log('Swagger UI rendered');

    // Authorize: the OAuth2 password flow posts the form to /auth/login.
    await page.locator('.scheme-container button.authorize').click();
    const dialog = page.locator('.dialog-ux .modal-ux');
    await dialog.waitFor();
    check(
      (await dialog.textContent()).includes('OAuth2PasswordBearer'),
      'the Authorize dialog does not name OAuth2PasswordBearer',
    );
    // The dialog lists each scheme (the OAuth2 flow, and the same token as plain HTTP bearer);
    // use the OAuth2 one's form.
    const oauth = dialog.locator('.auth-container').filter({ hasText: 'OAuth2PasswordBearer' });
    await oauth.locator('#oauth_username').fill(user.email);
    await oauth.locator('#oauth_password').fill(user.password);
    const [login] = await Promise.all([
      page.waitForResponse(
        (r) => new URL(r.url()).pathname === '/auth/login' && r.request().method() === 'POST',
      ),
      oauth.locator('.auth-btn-wrapper button.authorize').click(),
    ]);
    check(login.status() === 200, `the dialog's POST /auth/login got ${login.status()}: ${await login.text()}`);
    // Swagger UI shows the scheme as authorized and offers Logout instead of Authorize.
    await oauth.locator('.auth-btn-wrapper button.authorize', { hasText: 'Logout' }).waitFor();
    await oauth.locator('.auth-btn-wrapper button.btn-done').click();
    await dialog.waitFor({ state: 'detached' });
    await page.locator('.scheme-container button.authorize.locked').waitFor();
    log('authorized through the OAuth2 password dialog');

    // GET /auth/me from the page.
    await meBlock.locator('.opblock-summary-control').click();
    const tryItOut = meBlock.locator('button.try-out__btn', { hasText: 'Try it out' });
    if (await tryItOut.isVisible()) await tryItOut.click();
    const [me] = await Promise.all([
      page.waitForResponse(
        (r) => new URL(r.url()).pathname === '/auth/me' && r.request().method() === 'GET',
      ),
      meBlock.locator('button.execute').click(),
    ]);
    const authorization = await me.request().headerValue('authorization');
    check(/^Bearer \S+$/.test(authorization || ''), `GET /auth/me was sent without a bearer token (${authorization})`);
    check(me.status() === 200, `GET /auth/me from the page got ${me.status()}: ${await me.text()}`);

    const live = meBlock.locator('.live-responses-table');
    const status = live.locator('.response .response-col_status').first();
    await status.waitFor();
    const body = live.locator('.response .response-col_description pre').first();
    await body.waitFor();
    const statusText = (await status.textContent()).trim();
    const bodyText = await body.textContent();
    check(statusText === '200', `the page shows status ${JSON.stringify(statusText)}, not 200`);
    let shown;
    try {
      shown = JSON.parse(bodyText);
    } catch {
      throw new Error(`the response body shown is not JSON: ${bodyText}`);
    }
    check(
      shown.email === user.email && shown.name === user.name && shown.phone === user.phone,
      `the page shows ${bodyText.trim()}, not the user ${user.email}`,
    );
    check(!('password' in shown) && !('hashed_password' in shown), `the page shows a password field: ${bodyText}`);
    log(`the page shows 200 and ${user.email}`);

    // From the top of the page (the Authorize button, now locked) down to the live response.
    const liveBox = await live.boundingBox();
    const scrollY = await page.evaluate(() => window.scrollY);
    check(liveBox, 'the live response table has no size on the page');
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({
      path: SCREENSHOT,
      fullPage: true,
      clip: { x: 0, y: 0, width: 1280, height: Math.ceil(scrollY + liveBox.y + liveBox.height + 16) },
    });
    log(`screenshot: ${relative(process.cwd(), SCREENSHOT) || SCREENSHOT}`);

    check(requests.length > 0, 'no request was recorded');
    check(
      foreign.length === 0,
      `the page made ${foreign.length} request(s) off this server:\n  ${foreign.join('\n  ')}`,
    );
    log(`${requests.length} requests, all to ${[...new Set(requests.map((r) => new URL(r.split(' ')[1]).host))].join(', ')}`);
    if (process.env.BROWSER_VERBOSE === '1') log(`requests:\n  ${requests.join('\n  ')}`);
    if (pageErrors.length) log(`page errors (not fatal):\n  ${pageErrors.join('\n  ')}`);
    await context.close();

    await checkFramingRefused(browser, base);
  } finally {
    await browser.close();
  }
}

// Clickjacking: a page on another site, served for real from another port of this machine,
// frames /docs/. The browser must refuse to show it (CSP frame-ancestors 'none', X-Frame-Options:
// DENY): the frame ends on Chromium's error page, never on the docs.
async function checkFramingRefused(browser, base) {
  const attacker = createServer((_, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><iframe src="${base}/docs/" width="800" height="600"></iframe>`);
  });
  await new Promise((listening) => attacker.listen(0, '127.0.0.1', listening));
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  try {
    const framed = [];
    context.on('response', (r) => {
      if (r.url().startsWith(`${base}/docs/`)) framed.push(r.status());
    });
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${attacker.address().port}/`, { waitUntil: 'load' });
    // The server did answer: the refusal is the browser's, on our headers.
    check(framed.includes(200), `the framed GET /docs/ was not answered 200 (${framed})`);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    check(frame, 'the attacker page has no frame');
    const shown = frame.url();
    const docs = await frame.locator('#swagger-ui').count().catch(() => 0);
    check(
      !shown.startsWith(base) && docs === 0,
      `a page on another site framed the docs: its frame is at ${shown}`,
    );
    log(`a page on another site that frames /docs/ gets an empty frame (${shown})`);
  } finally {
    await context.close();
    attacker.close();
  }
}

// ---------------------------------------------------------------------------------------------

async function cleanup() {
  await stopServer(server);
  server = null;
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    console.error(`browser test interrupted (${signal})`);
    await cleanup();
    console.log('browser: 0 passed, 1 failed');
    process.exit(1);
  });
}

let failure = null;
const budget = setTimeout(() => {
  failure = new Error(`took longer than ${BUDGET_MS / 1000} s`);
  cleanup().finally(() => {
    console.error(`browser test FAILED: ${failure.message}`);
    console.log('browser: 0 passed, 1 failed');
    process.exit(1);
  });
}, BUDGET_MS);

try {
  await run();
} catch (err) {
  failure = err;
}
clearTimeout(budget);
const serverLog = server ? server.stderr.slice(-20) : [];
await cleanup();
if (failure) {
  console.error(`browser test FAILED: ${failure.message}`);
  if (serverLog.length) console.error(`last server log lines:\n  ${serverLog.join('\n  ')}`);
  console.log('browser: 0 passed, 1 failed');
  process.exit(1);
}
log('passed');
console.log('browser: 1 passed, 0 failed');
