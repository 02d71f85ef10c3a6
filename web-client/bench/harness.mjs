// What the benchmark scripts share: the binaries, `--name value` arguments, a free UDP port for the
// relay's media, and child processes (telemed, loadtest link) whose stdout is collected.

import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const release = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target', 'release');
/** The release binaries (TELEMED_BIN, LOADTEST_BIN override them). */
export const TELEMED = process.env.TELEMED_BIN || join(release, 'telemed');
export const LOADTEST = process.env.LOADTEST_BIN || join(release, 'loadtest');

/** The value of `--name` on the command line, or `dflt`. */
export const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};

/** A UDP port on 127.0.0.1 that is free now. */
export async function freeUdpPort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Starts `bin` with `args`: { child, out() (stdout so far), err() (the stderr lines kept), exited (a promise
 * of the exit code) }. `env` is added to the environment; stderr lines matching `keep` (a RegExp; colour codes
 * removed) are kept, at most 100 000; stderr is shown with BENCH_VERBOSE=1.
 */
export function start(bin, args, { env = {}, keep = null } = {}) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { RUST_LOG: process.env.RUST_LOG || 'warn', ...process.env, ...env } });
  let text = '';
  const kept = [];
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => (text += d));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    if (process.env.BENCH_VERBOSE) process.stderr.write(d);
    if (!keep) return;
    const lines = (partial + d).split('\n');
    partial = lines.pop();
    for (const raw of lines) {
      // Without the colours tracing puts between a log line's parts.
      const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
      if (keep.test(line) && kept.length < 100_000) kept.push(line);
    }
  });
  const exited = new Promise((r) => child.on('exit', r));
  return { child, out: () => text, err: () => kept, exited };
}
