// The backnd-api server for the browser tests (docs.test.mjs, cors.test.mjs): built once with
// `cargo build` (or BACKND_API_BIN), started on a free port of 127.0.0.1 with a throwaway
// SQLite database in a folder of its own, and stopped with SIGTERM (SIGKILL after 5 s).
//
//   const bin = buildServer({ log });
//   const server = startServer(bin, { prefix: 'backnd-browser-', env: { CORS_ORIGINS: origin } });
//   const port = await server.ready;   // rejects if the server exits or says nothing for 15 s
//   ...
//   await stopServer(server);          // also removes its folder; safe to call more than once
//
// startServer returns the server at once, before it listens, so that a test can stop it (and
// show `server.stderr`, the lines it has logged) however the start ends.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/// The server binary: BACKND_API_BIN if set, else target/debug/backnd-api, built now.
export function buildServer({ log = () => {} } = {}) {
  if (process.env.BACKND_API_BIN) return resolve(process.env.BACKND_API_BIN);
  log('cargo build');
  const build = spawnSync('cargo', ['build', '--quiet', '--bin', 'backnd-api'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (build.error) throw new Error(`cannot run cargo: ${build.error.message}`);
  if (build.status !== 0) throw new Error(`cargo build failed (exit ${build.status})`);
  return join(ROOT, 'target', 'debug', 'backnd-api');
}

/// Starts `bin` in a new folder under the system's temporary one (named `prefix…`), with `env`
/// added to the environment. Returns { port: null, child, stderr: string[], workdir, ready }:
/// `ready` resolves to the port (also set as `port`) once the server logs
/// `listening on http://127.0.0.1:PORT`.
export function startServer(bin, { prefix = 'backnd-browser-', env = {} } = {}) {
  const workdir = mkdtempSync(join(tmpdir(), prefix));
  const child = spawn(bin, [], {
    // The binary reads a .env from its working directory: run it where there is none.
    cwd: workdir,
    env: {
      ...process.env,
      DATABASE_URL: `sqlite:///${join(workdir, 'db.sqlite3')}`,
      HOST: '127.0.0.1',
      PORT: '0',
      BCRYPT_COST: '4',
      JWT_SECRET: randomBytes(32).toString('hex'),
      RUST_LOG: 'info',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const server = { port: null, child, stderr: [], workdir, ready: null };
  server.ready = new Promise((resolvePort, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('the server did not report its port within 15 s')), 15_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the server exited early (${signal || `exit ${code}`})`));
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        server.stderr.push(line);
        const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          server.port = Number(match[1]);
          resolvePort(server.port);
        }
      }
    });
  });
  return server;
}

/// Stops the server (SIGTERM, then SIGKILL if it has not exited 5 s later) and removes its folder.
export async function stopServer(server) {
  if (!server) return;
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
  }
  rmSync(server.workdir, { recursive: true, force: true });
}
