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
 * Starts `bin` with `args`: { child, out() (stdout so far), exited (a promise of the exit code) }. Its
 * stderr is shown with BENCH_VERBOSE=1.
 */
export function start(bin, args) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { RUST_LOG: process.env.RUST_LOG || 'warn', ...process.env } });
  let text = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => (text += d));
  child.stderr.on('data', (d) => process.env.BENCH_VERBOSE && process.stderr.write(d));
  const exited = new Promise((r) => child.on('exit', r));
  return { child, out: () => text, exited };
}
