// Benchmark (not a test): the browser line test through `loadtest link` against known capacities.
//
// For each capacity: the link emulator listens on 127.0.0.2:<media port> and forwards to the relay on
// 127.0.0.1:<media port>; the relay advertises 127.0.0.2 (`--public-ip`, `--no-tcp`), so the browser's
// media crosses the emulated line both ways (docs/loadtest.md, "In front of the relay"). The county
// doctor runs the dashboard's line test; we print what it measured beside what the line carries.
//
//   node bench/line-test.mjs [--down 2000k,1000k] [--up 1000k] [--delay 25ms]
//
// Needs the release build (TELEMED_BIN, LOADTEST_BIN default to ../target/release/*) and the web build.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOADTEST, TELEMED, arg, freeUdpPort, start } from './harness.mjs';
import { openBrowser, poll } from '../tests/browser.mjs';
import { webRoot } from '../tests/server.mjs';
import { DOCTOR, login } from '../tests/workflow-steps.mjs';

const downs = arg('down', '1000k,2000k,4000k').split(',');
const up = arg('up', '1000k');
const delay = arg('delay', '25ms');

const kbps = (rate) => {
  const m = /^(\d+(?:\.\d+)?)([kM]?)$/.exec(rate);
  if (!m) throw new Error(`bad rate ${rate}`);
  return Number(m[1]) * (m[2] === 'M' ? 1000 : m[2] === 'k' ? 1 : 0.001);
};

async function once(down) {
  const port = await freeUdpPort();
  const link = start(LOADTEST, [
    'link', '--listen', `127.0.0.2:${port}`, '--forward', `127.0.0.1:${port}`,
    '--down-rate', down, '--up-rate', up, '--delay', delay, '--queue', '300ms', '--json',
  ]);
  const dataDir = await mkdtemp(join(tmpdir(), 'telemed-bench-'));
  const server = start(TELEMED, [
    '--listen', '127.0.0.1:0', '--probe-listen', '127.0.0.1:0', '--media-udp', `127.0.0.1:${port}`, '--no-tcp', '--public-ip', '127.0.0.2',
    '--web-root', webRoot, '--data-dir', dataDir, '--json',
  ]);
  const browser = await openBrowser('bench-line-test');
  try {
    if (!(await poll(async () => server.out().includes('\n'), { timeout: 20_000 }))) throw new Error('telemed did not start');
    const url = `http://${JSON.parse(server.out().split('\n')[0]).http}`;
    await login(browser.page, url, DOCTOR);
    const panel = browser.page.getByTestId('line-test');
    await panel.getByTestId('line-test-start').click();
    const status = panel.getByTestId('line-test-status');
    await poll(async () => ['done', 'failed'].includes(await status.getAttribute('data-state')), { timeout: 60_000, interval: 500 });
    if ((await status.getAttribute('data-state')) !== 'done') throw new Error(await status.textContent());
    const r = panel.getByTestId('line-test-result');
    const n = async (k) => Number(await r.getAttribute(`data-${k}`));
    return {
      down_capacity_kbps: kbps(down),
      up_capacity_kbps: kbps(up),
      one_way_delay: delay,
      verdict: await r.getAttribute('data-verdict'),
      down_kbps: await n('down-kbps'),
      up_kbps: await n('up-kbps'),
      rtt_ms: await n('rtt-ms'),
      loss_pct: await n('loss-pct'),
    };
  } finally {
    await browser.close();
    server.child.kill('SIGTERM');
    link.child.kill('SIGTERM');
    await rm(dataDir, { recursive: true, force: true });
  }
}

const rows = [];
for (const down of downs) {
  const r = await once(down);
  rows.push(r);
  console.log(JSON.stringify(r));
}
console.log('\n| down capacity | up capacity | one way | verdict | down measured | error | up measured | error | RTT ms | loss % |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const err = (m, c) => `${(((m - c) / c) * 100).toFixed(1)} %`;
  console.log(
    `| ${r.down_capacity_kbps} | ${r.up_capacity_kbps} | ${r.one_way_delay} | ${r.verdict} | ${r.down_kbps} | ${err(r.down_kbps, r.down_capacity_kbps)} | ${r.up_kbps} | ${err(r.up_kbps, r.up_capacity_kbps)} | ${r.rtt_ms} | ${r.loss_pct} |`,
  );
}
process.exit(0);
