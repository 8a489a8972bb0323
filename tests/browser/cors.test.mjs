#!/usr/bin/env node
// Browser test of CORS (CORS_ORIGINS): a web page on another origin calls the API with fetch().
//
// Two tiny pages are served by node's http module on 127.0.0.1, each on a port of its own (a
// different port is a different origin). The server (server.mjs builds and starts it) starts
// with CORS_ORIGINS set to the first page's origin only. Debian's Chromium, driven headless
// through playwright-core, then runs fetch() from each page, and the DevTools protocol shows
// every preflight the browser sent and the headers that came back:
//
//   1. allowed: from the listed origin, register, log in (JSON, so after a preflight) and
//      GET /auth/me with the bearer token all succeed, and a 401 lets the page read
//      WWW-Authenticate (Access-Control-Expose-Headers);
//   2. not allowed: from the other origin the same calls, with the same user's password and a
//      real token, reject with TypeError; their preflights reached the server (its access log
//      shows them) and were answered 405 with no Access-Control-* header, so the registration
//      and JSON login were never sent; a form-encoded login, which needs no preflight, did run
//      on the server, but the page could not read its token.
//
// Run:   make test-browser        (or: cd tests/browser && npm ci && node cors.test.mjs)
// Env:   CHROMIUM_PATH, REQUIRE_BROWSER=1, BACKND_API_BIN, BROWSER_TIMEOUT_MS, as docs.test.mjs
// Output ends with `browser: N passed, M failed` (one per case above); exit code 0 on pass or
// skip, 1 on failure.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from './chromium.mjs';
import { buildServer, startServer, stopServer } from './server.mjs';

const REQUIRE = process.env.REQUIRE_BROWSER === '1';
const BUDGET_MS = Number(process.env.BROWSER_TIMEOUT_MS || 60_000);
const CASES = 2;

const started = Date.now();
const log = (msg) => console.log(`[browser cors ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

function skipOrFail(reason) {
  if (REQUIRE) {
    console.error(`browser CORS test FAILED: ${reason} (REQUIRE_BROWSER=1)`);
    console.log(`browser: 0 passed, ${CASES} failed`);
    process.exit(1);
  }
  console.log(`browser CORS tests SKIPPED: ${reason}`);
  process.exit(0);
}

const chromium = loadChromium(skipOrFail);

// ---------------------------------------------------------------------------------------------
// The pages and the server

let server = null; // from startServer (server.mjs): { port, child, stderr: string[], workdir, ready }
const pages = [];

/// A page server on 127.0.0.1 with a port of its own: its own origin.
async function servePage(title) {
  const page = createServer((request, response) => {
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    response.end(`<!doctype html><meta charset="utf-8"><title>${title}</title><p>${title}</p>`);
  });
  await new Promise((done, fail) => page.once('error', fail).listen(0, '127.0.0.1', done));
  pages.push(page);
  return `http://127.0.0.1:${page.address().port}`;
}

/// The server's access-log lines so far, as `METHOD /path STATUS`.
function accessLog() {
  return (server ? server.stderr : [])
    .map((line) => /\baccess\] (\S+) (\S+) (\d{3}) /.exec(line))
    .filter(Boolean)
    .map((m) => `${m[1]} ${m[2]} ${m[3]}`);
}

/// Waits (briefly: a line is written just after its answer) until the access log has `line`.
async function logged(line) {
  return until(() => accessLog().includes(line));
}

/// How many times the access log shows `POST path`, once it has stopped growing: each line is
/// written just after its answer, so the last one may still be on its way.
async function posts(path) {
  const count = () => accessLog().filter((line) => line.startsWith(`POST ${path} `)).length;
  let last = -1;
  while (count() !== last) {
    last = count();
    await new Promise((done) => setTimeout(done, 300));
  }
  return last;
}

async function until(condition) {
  const deadline = Date.now() + 3_000;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((done) => setTimeout(done, 20));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// What the browser saw

/// Records, through the DevTools protocol, each preflight the page's browser sent and what
/// came back, and each request the browser failed for a CORS reason.
async function watchNetwork(context, page) {
  const cdp = await context.newCDPSession(page);
  const seen = { preflights: new Map(), corsErrors: [] };
  cdp.on('Network.requestWillBeSent', (event) => {
    if (event.initiator?.type === 'preflight') {
      seen.preflights.set(event.requestId, {
        url: new URL(event.request.url).pathname,
        origin: event.request.headers.Origin ?? event.request.headers.origin,
        status: null,
        headers: {},
      });
    }
  });
  cdp.on('Network.responseReceived', (event) => {
    const preflight = seen.preflights.get(event.requestId);
    if (!preflight) return;
    preflight.status = event.response.status;
    for (const [name, value] of Object.entries(event.response.headers)) {
      preflight.headers[name.toLowerCase()] = value;
    }
  });
  cdp.on('Network.loadingFailed', (event) => {
    if (event.corsErrorStatus) seen.corsErrors.push(event.corsErrorStatus.corsError);
  });
  await cdp.send('Network.enable');
  return seen;
}

function corsHeaders(headers) {
  return Object.keys(headers).filter((name) => name.startsWith('access-control-'));
}

/// Runs in the page: every call the test makes, each as { status, body, wwwAuthenticate } or
/// { error: 'TypeError: …' } when fetch rejects.
async function callsFromThePage({ api, user, token }) {
  async function call(path, init) {
    try {
      const response = await fetch(api + path, init);
      let body = null;
      try {
        body = await response.json();
      } catch {
        // not JSON
      }
      return { status: response.status, body, wwwAuthenticate: response.headers.get('WWW-Authenticate') };
    } catch (err) {
      return { error: `${err.name}: ${err.message}` };
    }
  }
  const json = (body) => ({
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const results = {};
  results.register = await call('/auth/register', json(user));
  results.login = await call('/auth/login', json({ email: user.email, password: user.password }));
  const bearer = token ?? results.login.body?.access_token;
  results.me = await call('/auth/me', { headers: { Authorization: `Bearer ${bearer}` } });
  results.badToken = await call('/auth/me', { headers: { Authorization: 'Bearer not-a-token' } });
  // A form login is a "simple" request: the browser sends it without asking first.
  results.formLogin = await call('/auth/login', {
    method: 'POST',
    body: new URLSearchParams({ username: user.email, password: user.password }),
  });
  return results;
}

// ---------------------------------------------------------------------------------------------
// The cases

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function newUser() {
  return {
    name: 'Ada Lovelace',
    phone: '+44 20 7946 0958',
    email: `ada.${randomBytes(4).toString('hex')}@example.com`,
    password: 'analytical-engine',
  };
}

async function fromPage(browser, origin, args) {
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  try {
    const page = await context.newPage();
    const seen = await watchNetwork(context, page);
    const response = await page.goto(`${origin}/`, { waitUntil: 'domcontentloaded' });
    check(response && response.ok(), `the page at ${origin} did not load`);
    const results = await page.evaluate(callsFromThePage, args);
    return { results, preflights: [...seen.preflights.values()], corsErrors: seen.corsErrors };
  } finally {
    await context.close();
  }
}

async function allowedOriginSucceeds(browser, api, origin, user) {
  const { results, preflights, corsErrors } = await fromPage(browser, origin, { api, user, token: null });
  const { register, login, me, badToken, formLogin } = results;
  check(register.status === 201, `register from ${origin}: ${JSON.stringify(register)}`);
  check(login.status === 200 && login.body?.access_token, `login from ${origin}: ${JSON.stringify(login)}`);
  check(me.status === 200 && me.body?.email === user.email, `GET /auth/me from ${origin}: ${JSON.stringify(me)}`);
  check(
    badToken.status === 401 && badToken.wwwAuthenticate === 'Bearer',
    `a 401 from ${origin} should be readable with its WWW-Authenticate: ${JSON.stringify(badToken)}`,
  );
  check(formLogin.status === 200, `form login from ${origin}: ${JSON.stringify(formLogin)}`);
  check(corsErrors.length === 0, `CORS errors: ${corsErrors.join(', ')}`);

  for (const path of ['/auth/register', '/auth/login', '/auth/me']) {
    const preflight = preflights.find((p) => p.url === path);
    check(preflight, `no preflight was seen for ${path}`);
    check(preflight.status === 204, `the preflight for ${path} got ${preflight.status}`);
    check(
      preflight.headers['access-control-allow-origin'] === origin,
      `the preflight for ${path} allowed ${preflight.headers['access-control-allow-origin']}, not ${origin}`,
    );
    check(!('access-control-allow-credentials' in preflight.headers), `the preflight for ${path} allows credentials`);
  }
  check(await logged('OPTIONS /auth/me 204'), 'the server did not log the preflight of GET /auth/me');
  log(`from ${origin}: register 201, login 200, me 200, 401 readable, ${preflights.length} preflights answered 204`);
  return user.email;
}

async function otherOriginIsBlocked(browser, api, origin, user, token) {
  const registersBefore = await posts('/auth/register');
  const loginsBefore = await posts('/auth/login');
  const { results, preflights, corsErrors } = await fromPage(browser, origin, { api, user, token });
  for (const [name, result] of Object.entries(results)) {
    check(
      result.error?.startsWith('TypeError'),
      `${name} from ${origin} should have been blocked, got ${JSON.stringify(result)}`,
    );
  }
  const paths = new Set(preflights.map((p) => p.url));
  for (const path of ['/auth/register', '/auth/login', '/auth/me']) {
    check(paths.has(path), `no preflight was seen for ${path}`);
  }
  for (const preflight of preflights) {
    check(preflight.origin === origin, `a preflight was sent with Origin ${preflight.origin}`);
    check(preflight.status === 405, `the preflight for ${preflight.url} got ${preflight.status}, not 405`);
    check(
      corsHeaders(preflight.headers).length === 0,
      `the preflight for ${preflight.url} got ${corsHeaders(preflight.headers).join(', ')}`,
    );
    check(await logged(`OPTIONS ${preflight.url} 405`), `the server did not log the preflight of ${preflight.url}`);
  }
  check(
    corsErrors.includes('PreflightMissingAllowOriginHeader') && corsErrors.includes('MissingAllowOriginHeader'),
    `the browser's CORS errors were ${corsErrors.join(', ')}`,
  );
  // Refused at their preflights, the registration and the JSON login were never sent. The form
  // login needs none: it was sent and ran, with the right password, but the page could not
  // read the token it returned.
  check((await posts('/auth/register')) === registersBefore, 'a registration from the blocked page reached the server');
  const logins = (await posts('/auth/login')) - loginsBefore;
  check(logins === 1, `the blocked page's logins reached the server ${logins} times, not once (the form)`);
  log(`from ${origin}: every call rejected with TypeError; ${preflights.length} preflights answered 405 with no CORS header`);
}

async function run() {
  const allowed = await servePage('allowed');
  const other = await servePage('not allowed');
  const bin = buildServer({ log });
  server = startServer(bin, { prefix: 'backnd-browser-cors-', env: { CORS_ORIGINS: allowed } });
  const port = await server.ready;
  const api = `http://127.0.0.1:${port}`;
  log(`server on ${api}, CORS_ORIGINS=${allowed}; the other page is ${other}`);

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const outcomes = [];
  try {
    log(`chromium ${browser.version()} launched`);
    const user = newUser();
    let token = null;
    try {
      await allowedOriginSucceeds(browser, api, allowed, user);
      outcomes.push(null);
      // A real token for the blocked page to try: even with it, /auth/me must stay unreadable.
      const login = await fetch(`${api}/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: user.email, password: user.password }),
      });
      token = (await login.json()).access_token;
    } catch (err) {
      outcomes.push(err);
    }
    try {
      await otherOriginIsBlocked(browser, api, other, user, token);
      outcomes.push(null);
    } catch (err) {
      outcomes.push(err);
    }
  } finally {
    await browser.close();
  }
  return outcomes;
}

// ---------------------------------------------------------------------------------------------

async function cleanup() {
  await stopServer(server);
  server = null;
  for (const page of pages.splice(0)) page.close();
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    console.error(`browser CORS test interrupted (${signal})`);
    await cleanup();
    console.log(`browser: 0 passed, ${CASES} failed`);
    process.exit(1);
  });
}

const budget = setTimeout(() => {
  cleanup().finally(() => {
    console.error(`browser CORS test FAILED: took longer than ${BUDGET_MS / 1000} s`);
    console.log(`browser: 0 passed, ${CASES} failed`);
    process.exit(1);
  });
}, BUDGET_MS);

let outcomes;
try {
  outcomes = await run();
} catch (err) {
  outcomes = Array(CASES).fill(err);
}
clearTimeout(budget);
const serverLog = server ? server.stderr.slice(-20) : [];
await cleanup();
const failures = outcomes.filter(Boolean);
for (const failure of failures) console.error(`browser CORS test FAILED: ${failure.message}`);
if (failures.length && serverLog.length) console.error(`last server log lines:\n  ${serverLog.join('\n  ')}`);
if (!failures.length) log('passed');
console.log(`browser: ${CASES - failures.length} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
