// Starts the `telemed` server for a test and stops it by PID. Each server gets
// a fresh data directory (`--data-dir`, its SQLite database) made with mkdtemp
// and removed after it stops, so every test starts from the demo seed.
//
// The binary comes from $TELEMED_BIN, else ../target/release/telemed, else
// ../target/debug/telemed (relative to web-client/). With --json the server
// prints one JSON line on stdout when it is ready:
//   {"http":"127.0.0.1:PORT","media_udp":"127.0.0.1:PORT"|null,"media_tcp":"127.0.0.1:PORT"|null,
//    "probe_udp":"127.0.0.1:PORT"|null}

import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const webClient = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const webRoot = join(webClient, 'dist');

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

/** Every server still running, killed if the test process exits early. */
const running = new Set();
/** Data directories not yet removed. */
const dataDirs = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of dataDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

export function serverBinary() {
  if (process.env.TELEMED_BIN) return resolve(process.env.TELEMED_BIN);
  const candidates = ['release', 'debug'].map((p) => resolve(webClient, '..', 'target', p, 'telemed'));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `telemed binary not found (looked at ${candidates.join(', ')}); build it with cargo or set TELEMED_BIN`,
    );
  }
  return found;
}

function parseAddr(addr) {
  if (addr === null || addr === undefined) return null;
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)), addr };
}

/**
 * Starts the server with a fresh data directory. `options` is either the extra
 * server flags (an array) or { extraArgs }. Returns { url, http, mediaUdp,
 * mediaTcp, ready, dataDir, stop(), output() } where mediaUdp / mediaTcp are
 * { host, port, addr } or null. stop() also removes the data directory.
 */
export async function startServer(options = []) {
  const extraArgs = Array.isArray(options) ? options : (options.extraArgs ?? []);
  if (!existsSync(join(webRoot, 'index.html'))) {
    throw new Error(`${webRoot}/index.html is missing: run "npm run build" in web-client first`);
  }
  const bin = serverBinary();
  const dataDir = await mkdtemp(join(tmpdir(), 'telemed-e2e-data-'));
  dataDirs.add(dataDir);
  const removeDataDir = async () => {
    dataDirs.delete(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  };
  const args = [
    '--listen', '127.0.0.1:0',
    '--media-udp', '127.0.0.1:0',
    '--media-tcp', '127.0.0.1:0',
    '--probe-listen', '127.0.0.1:0',
    '--web-root', webRoot,
    '--json',
    '--data-dir', dataDir,
    ...extraArgs,
  ];
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { RUST_LOG: 'info', ...process.env },
  });
  running.add(child);

  let stdout = '';
  let stderr = '';
  const MAX = 200_000; // keep the tail of long logs
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-MAX);
  });
  const exited = new Promise((res) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      res({ code, signal });
    });
  });

  const command = `${bin} ${args.join(' ')}`;
  const ready = await new Promise((res, rej) => {
    const rejectAndClean = (err) => {
      removeDataDir().finally(() => rej(err));
    };
    let settled = false;
    const timer = setTimeout(() => {
      fail(new Error(`server not ready within ${READY_TIMEOUT_MS} ms\ncommand: ${command}\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, READY_TIMEOUT_MS);
    const fail = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      rejectAndClean(err);
    };
    child.on('error', (e) => fail(new Error(`cannot start ${bin}: ${e.message}`)));
    exited.then(({ code, signal }) =>
      fail(new Error(`server exited before it was ready (code ${code}, signal ${signal})\ncommand: ${command}\nstdout:\n${stdout}\nstderr:\n${stderr}`)),
    );
    child.stdout.setEncoding('utf8');
    let buf = '';
    child.stdout.on('data', (d) => {
      stdout = (stdout + d).slice(-MAX);
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        try {
          const obj = JSON.parse(line);
          if (typeof obj.http === 'string' && !settled) {
            settled = true;
            clearTimeout(timer);
            res(obj);
            return;
          }
        } catch {
          // not the ready line
        }
      }
    });
  });

  const http = parseAddr(ready.http);
  let stopped = false;
  return {
    pid: child.pid,
    ready,
    http,
    url: `http://${ready.http}`,
    mediaUdp: parseAddr(ready.media_udp),
    mediaTcp: parseAddr(ready.media_tcp),
    probeUdp: parseAddr(ready.probe_udp),
    dataDir,
    /** The server's stderr so far (its log), for failure messages. */
    output: () => stderr,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        let signalled = true;
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          signalled = false;
        }
        const timeout = new Promise((res) => setTimeout(() => res('timeout'), STOP_TIMEOUT_MS));
        if (signalled && (await Promise.race([exited, timeout])) === 'timeout') {
          try {
            process.kill(child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
          await exited;
        }
      }
      await removeDataDir();
    },
  };
}
