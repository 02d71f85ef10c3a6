// The two-browser call used by call.test.mjs (UDP) and call-tcp.test.mjs (TCP):
// both users reach the room through the workflow (the doctor requests a
// consultation, the specialist becomes available and accepts the offer, both
// join), media must flow through the relay on the expected transport, tiles
// and connection state must show it, and a leave must remove the tile on the
// other side.

import assert from 'node:assert/strict';
import { mediaFlows, mediaStats, openBrowser, poll, tail } from './browser.mjs';
import { startServer } from './server.mjs';
import { DOCTOR, SPECIALIST, acceptOffer, joinRoom, login, setAvailable, submitRequest } from './workflow-steps.mjs';

export { DOCTOR, SPECIALIST };

const MEDIA_TIMEOUT_MS = 30_000;
/** Largest share of packets a receiver may miss on loopback (inbound-rtp packetsLost). */
const MAX_LOSS = 0.05;
/** The reasons the relay gives for what a subscriber receives while video flows. */
const REASONS = ['best', 'line_limited', 'site_budget'];

/**
 * Runs the scenario. `protocol` is 'udp' or 'tcp'; `serverArgs` are extra
 * server flags; `pseudonym` names the patient of the request. Cleanup
 * (browsers, then the server) is registered on `t`.
 */
export async function callScenario(t, { pseudonym, protocol, serverArgs = [] }) {
  const server = await startServer(serverArgs);
  t.after(() => server.stop());
  const a = await openBrowser('doctor');
  t.after(() => a.close());
  const b = await openBrowser('specialist');
  t.after(() => b.close());

  const relay = protocol === 'udp' ? server.mediaUdp : server.mediaTcp;
  assert.ok(relay, `the ready line has no media_${protocol} address: ${JSON.stringify(server.ready)}`);
  if (protocol === 'tcp') {
    assert.equal(server.mediaUdp, null, `with ${serverArgs.join(' ')} the ready line must have media_udp: null`);
  }

  const last = { a: null, b: null };
  const explain = async (what) => {
    for (const [key, peer] of [['a', a], ['b', b]]) {
      last[key] = await mediaStats(peer.page).catch((e) => ({ error: String(e) }));
    }
    return [
      what,
      `relay ${protocol}: ${relay.addr}; ready line ${JSON.stringify(server.ready)}`,
      `--- doctor getStats:\n${JSON.stringify(last.a, null, 1)}`,
      `--- specialist getStats:\n${JSON.stringify(last.b, null, 1)}`,
      `--- doctor page log:\n${tail(a.logs)}`,
      `--- specialist page log:\n${tail(b.logs)}`,
      `--- server log (tail):\n${server.output().slice(-6000)}`,
      `--- relay metrics:\n${await fetch(`${server.url}/metrics`)
        .then((r) => r.text())
        .then((t) => t.split('\n').filter((l) => /^telemed_(sent|subscriber|publisher|published|downlink|egress|ingress|layer|dropped|rtp)/.test(l)).join('\n'))
        .catch((e) => String(e))}`,
    ].join('\n');
  };
  const check = async (cond, what) => {
    if (!(await cond())) assert.fail(await explain(what));
  };

  const step = async (what, fn) => {
    try {
      return await fn();
    } catch (e) {
      assert.fail(await explain(`${what}: ${e.message}`));
    }
  };
  await step('the doctor logs in', () => login(a.page, server.url, DOCTOR));
  const requestId = await step('the doctor submits a request', () => submitRequest(a.page, { pseudonym }));
  await step('the specialist logs in', () => login(b.page, server.url, SPECIALIST));
  await step('the specialist becomes available', () => setAvailable(b.page, true));
  await step('the specialist accepts the offer', () => acceptOffer(b.page, requestId));
  await step('the doctor joins the room', () => joinRoom(a.page, requestId));
  await step('the specialist joins the room', () => joinRoom(b.page, requestId));

  const selfName = async (page) => page.getByTestId('self-name').getAttribute('data-display-name');
  const nameA = await selfName(a.page);
  const nameB = await selfName(b.page);
  assert.ok(nameA && nameB, 'display names are shown on the room page');

  // Media flows both ways through the relay on the expected transport.
  await check(
    () =>
      poll(
        async () => {
          const [sa, sb] = await Promise.all([mediaStats(a.page), mediaStats(b.page)]);
          last.a = sa;
          last.b = sb;
          return mediaFlows(sa, relay, protocol) && mediaFlows(sb, relay, protocol);
        },
        { timeout: MEDIA_TIMEOUT_MS, interval: 500 },
      ),
    `media did not flow through the relay over ${protocol} within ${MEDIA_TIMEOUT_MS} ms ` +
      '(want on both pages: inbound video framesDecoded > 10, inbound audio packetsReceived > 10, ' +
      `selected pair remote candidate ${protocol} port ${relay.port})`,
  );

  // On loopback a working relay loses (almost) nothing: a few frames can decode even when the relay
  // drops a large share of the packets, so check the receivers' loss as well.
  for (const [who, stats] of [['doctor', last.a], ['specialist', last.b]]) {
    for (const s of [...stats.inboundVideo, ...stats.inboundAudio]) {
      const expected = (s.packetsReceived ?? 0) + (s.packetsLost ?? 0);
      const lost = expected > 0 ? (s.packetsLost ?? 0) / expected : 0;
      if (lost > MAX_LOSS) {
        assert.fail(
          await explain(
            `the ${who} lost ${(lost * 100).toFixed(1)} % of the ${s.codec} packets forwarded by the relay ` +
              `(${s.packetsLost} of ${expected}; at most ${MAX_LOSS * 100} % allowed on loopback)`,
          ),
        );
      }
    }
  }

  // Each sees the other's tile, labelled with the other's display name, and the state is connected.
  const tileOf = (page, name) => page.locator('[data-testid="remote-tile"]').filter({ hasText: name });
  const state = (page) => page.getByTestId('connection-state').getAttribute('data-state');
  await check(
    () =>
      poll(async () => (await tileOf(a.page, nameB).count()) === 1 && (await tileOf(b.page, nameA).count()) === 1, {
        timeout: 10_000,
      }),
    `remote tiles with the other's display name did not appear (doctor should see "${nameB}", specialist "${nameA}")`,
  );
  for (const page of [a.page, b.page]) {
    assert.equal(await page.locator('[data-testid="remote-video"]').count(), 1, 'one remote video per remote participant');
    const pid = await page.locator('[data-testid="remote-video"]').getAttribute('data-participant-id');
    assert.ok(pid, 'the remote video carries data-participant-id');
  }
  await check(
    () => poll(async () => (await state(a.page)) === 'connected' && (await state(b.page)) === 'connected', { timeout: 10_000 }),
    'connection-state did not reach "connected" on both pages',
  );

  // Bandwidth adaptation: each browser publishes three simulcast layers, and each room shows which
  // layer the relay forwards and why. Which layer that is depends on the estimate, and on a loaded
  // 2-core machine two Chromiums encoding 720p inflate loopback delay enough to hold it anywhere from
  // 300 kbit/s up, so this checks the wiring, not the outcome: the allocation itself is tested
  // deterministically in media-relay's core, and its outcome on real lines is measured by the benchmarks (docs/benchmarks.md).
  const stats = await mediaStats(a.page);
  const rids = stats.outbound.filter((o) => o.kind === 'video' && o.bytesSent > 0).map((o) => o.rid);
  assert.deepEqual(rids.sort(), ['f', 'h', 'q'], `the doctor publishes simulcast q/h/f: ${JSON.stringify(stats.outbound)}`);
  const adapted = async (page) => {
    const tile = await page.getByTestId('tile-quality').getAttribute('data-layer').catch(() => null);
    const reason = await page.getByTestId('quality').getAttribute('data-reason').catch(() => null);
    const inbound = (await mediaStats(page)).inboundVideo ?? [];
    return /^[qhf]\/t[0-2]$/.test(tile ?? '') && REASONS.includes(reason) && inbound.some((v) => v.frameHeight >= 180);
  };
  await check(
    () => poll(async () => (await adapted(a.page)) && (await adapted(b.page)), { timeout: 40_000, interval: 1000 }),
    'the rooms did not show the forwarded layer and its reason (tile-quality data-layer q|h|f/tN, quality ' +
      `data-reason one of ${REASONS.join(', ')}, inbound video decoding) within 40 s`,
  );
  // The relay refreshes its per-participant statistics every second, so /metrics may lag the rooms.
  let estimates = [];
  let layers = [];
  await poll(
    async () => {
      const lines = (await (await fetch(`${server.url}/metrics`)).text()).split('\n');
      estimates = lines.filter((l) => l.startsWith('telemed_downlink_estimate_bps{'));
      layers = lines.filter((l) => /^telemed_sent_spatial_layer\{.*kind="video"\} [0-2]$/.test(l));
      return estimates.length === 2 && layers.length === 2;
    },
    { timeout: 10_000, interval: 500 },
  );
  assert.equal(estimates.length, 2, `/metrics has a downlink estimate per participant:\n${estimates.join('\n')}`);
  assert.equal(layers.length, 2, `/metrics shows the spatial layer each subscriber receives:\n${layers.join('\n')}`);

  // The specialist leaves: back on the dashboard; the doctor's remote tile goes away.
  await b.page.getByTestId('leave').click();
  await check(
    () => poll(() => b.page.getByTestId('page-specialist').isVisible(), { timeout: 10_000 }),
    'after leave the specialist is not back on the dashboard',
  );
  await check(
    () => poll(async () => (await a.page.locator('[data-testid="remote-tile"]').count()) === 0, { timeout: 10_000 }),
    "after the specialist left, the doctor's remote tile did not disappear",
  );
  assert.equal(await state(a.page), 'connected', 'the doctor stays connected after the other side leaves');
}
