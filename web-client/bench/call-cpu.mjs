// Relay CPU during a two-browser call: the first baseline in docs/benchmarks.md.
//
//   node bench/call-cpu.mjs [--seconds 60] [--protocol udp|tcp]
//
// Starts the release server (TELEMED_BIN or target/release/telemed), opens two
// Chromium instances with the fake camera and microphone, brings them into one
// consultation room through the UI workflow (the doctor requests, the
// specialist accepts the offer, both join), waits until media flows through
// the relay, and then
// samples the server process's CPU time (utime + stime from /proc/PID/stat)
// and both pages' getStats over the measurement window. Prints one JSON object.
// This is a benchmark, not a test: it asserts nothing about the numbers.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { mediaFlows, mediaStats, openBrowser, poll } from '../tests/browser.mjs';
import { startServer } from '../tests/server.mjs';
import { DOCTOR, SPECIALIST, acceptOffer, joinRoom, login, setAvailable, submitRequest } from '../tests/workflow-steps.mjs';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    protocol: { type: 'string', default: 'udp' },
  },
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5 || seconds > 3600) {
  console.error('--seconds must be a number from 5 to 3600');
  process.exit(2);
}
const protocol = values.protocol;
if (protocol !== 'udp' && protocol !== 'tcp') {
  console.error('--protocol must be udp or tcp');
  process.exit(2);
}

/** Clock ticks per second for /proc/PID/stat (USER_HZ; 100 on Linux). */
const CLK_TCK = 100;

/** CPU seconds (user, system) used so far by process `pid`. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at ") ".
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return { user: Number(rest[11]) / CLK_TCK, system: Number(rest[12]) / CLK_TCK };
}

/** Sum of a counter over a page's inbound or outbound stats. */
function total(stats, list, field) {
  return (stats[list] ?? []).reduce((sum, s) => sum + (s[field] ?? 0), 0);
}

const server = await startServer(protocol === 'tcp' ? ['--no-udp'] : []);
const browsers = [];
try {
  const relay = protocol === 'udp' ? server.mediaUdp : server.mediaTcp;
  const a = await openBrowser('bench-doctor');
  browsers.push(a);
  const b = await openBrowser('bench-specialist');
  browsers.push(b);
  await login(a.page, server.url, DOCTOR);
  const requestId = await submitRequest(a.page, { pseudonym: 'BENCH-1' });
  await login(b.page, server.url, SPECIALIST);
  await setAvailable(b.page, true);
  await acceptOffer(b.page, requestId);
  await joinRoom(a.page, requestId);
  await joinRoom(b.page, requestId);
  const flowing = await poll(
    async () => mediaFlows(await mediaStats(a.page), relay, protocol) && mediaFlows(await mediaStats(b.page), relay, protocol),
    { timeout: 30_000, interval: 500 },
  );
  if (!flowing) throw new Error('media did not flow through the relay within 30 s');
  // Let both encoders ramp up before measuring.
  await new Promise((r) => setTimeout(r, 5_000));

  const snapshot = async () => ({
    t: process.hrtime.bigint(),
    cpu: cpuSeconds(server.pid),
    a: await mediaStats(a.page),
    b: await mediaStats(b.page),
  });
  const start = await snapshot();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const end = await snapshot();

  const wall = Number(end.t - start.t) / 1e9;
  const user = end.cpu.user - start.cpu.user;
  const system = end.cpu.system - start.cpu.system;
  const delta = (list, field) =>
    total(end.a, list, field) + total(end.b, list, field) - total(start.a, list, field) - total(start.b, list, field);
  const packetsIn = delta('outbound', 'packetsSent');
  const packetsOut = delta('inboundVideo', 'packetsReceived') + delta('inboundAudio', 'packetsReceived');
  const bytesOut = delta('inboundVideo', 'bytesReceived') + delta('inboundAudio', 'bytesReceived');
  const cpuPct = ((user + system) / wall) * 100;
  const result = {
    protocol,
    wall_s: Number(wall.toFixed(2)),
    cpu_user_s: Number(user.toFixed(2)),
    cpu_system_s: Number(system.toFixed(2)),
    cpu_pct_of_one_core: Number(cpuPct.toFixed(2)),
    packets_in_per_s: Math.round(packetsIn / wall),
    packets_out_per_s: Math.round(packetsOut / wall),
    forwarded_kbps: Math.round((bytesOut * 8) / wall / 1000),
    cpu_us_per_forwarded_packet: packetsOut > 0 ? Number((((user + system) * 1e6) / packetsOut).toFixed(1)) : null,
    video: [...end.a.inboundVideo, ...end.b.inboundVideo].map((s) => `${s.frameWidth}x${s.frameHeight}`),
  };
  console.log(JSON.stringify(result));
} finally {
  for (const b of browsers) await b.close();
  await server.stop();
}
