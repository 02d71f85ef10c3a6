// Bandwidth adaptation in real Chromium: a township hospital whose line budget is 512 kbit/s
// (demo configuration) consults a specialist. Whatever the relay's estimate of the township doctor's
// downlink (on a loaded 2-core machine it moves with CPU load, so the test does not depend on it), the
// site's budget caps what the township receives: a reason that says the line or the site's budget
// limits it, and a site allocation within 512 kbit/s. The township is the specialist's only
// subscriber, so the relay steers the specialist's top layer into one adaptive layer for the
// township's line (end-to-end rate control): sent, at most 512 kbit/s, at 360p or less.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openBrowser, poll, senderEncodings, tail } from './browser.mjs';
import { startServer } from './server.mjs';
import { SPECIALIST, acceptOffer, joinRoom, login, setAvailable, submitRequest } from './workflow-steps.mjs';

const TOWNSHIP = { username: 'township', password: 'demo-township', role: 'referring_doctor' };

test("a township line budget limits what the relay sends there and steers the specialist's encoder", { timeout: 180_000 }, async (t) => {
  const server = await startServer([]);
  t.after(() => server.stop());
  const town = await openBrowser('township');
  t.after(() => town.close());
  const spec = await openBrowser('specialist');
  t.after(() => spec.close());

  await login(town.page, server.url, TOWNSHIP);
  const id = await submitRequest(town.page, { pseudonym: 'E2E-BUDGET-1' });
  await login(spec.page, server.url, SPECIALIST);
  await setAvailable(spec.page, true);
  await acceptOffer(spec.page, id);
  await joinRoom(town.page, id);
  await joinRoom(spec.page, id);

  const quality = async (page) => ({
    reason: await page.getByTestId('quality').getAttribute('data-reason').catch(() => null),
    layer: await page.getByTestId('tile-quality').getAttribute('data-layer').catch(() => null),
  });
  const state = {};
  const settled = async () => {
    state.town = await quality(town.page);
    state.spec = await quality(spec.page);
    state.specOut = await senderEncodings(spec.page);
    const f = state.specOut.find((o) => o.rid === 'f');
    return (
      ['site_budget', 'line_limited'].includes(state.town.reason) &&
      /^[qhf]\//.test(state.town.layer ?? '') &&
      /^[qhf]\//.test(state.spec.layer ?? '') &&
      f?.active === true &&
      f.maxBitrate <= 512_000 &&
      f.scaleResolutionDownBy >= 2
    );
  };
  if (!(await poll(settled, { timeout: 60_000, interval: 1000 }))) {
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.fail(
      [
        'within 60 s: want the township room to show quality data-reason "site_budget" or "line_limited" with ' +
          "video, the specialist to receive video, and the specialist's f encoding steered into the adaptive " +
          'layer for the township (active, maxBitrate <= 512000, scaleResolutionDownBy >= 2)',
        `township: ${JSON.stringify(state.town)}; specialist: ${JSON.stringify(state.spec)}`,
        `specialist encodings: ${JSON.stringify(state.specOut)}`,
        metrics.split('\n').filter((l) => /^telemed_(site|downlink|sent)/.test(l)).join('\n'),
        `--- township page log:\n${tail(town.logs)}`,
        `--- server log (tail):\n${server.output().slice(-4000)}`,
      ].join('\n'),
    );
  }

  // What the relay sends to the township stays within its budget. The relay refreshes /metrics once a
  // second and lists a layer once str0m has reported its first receive statistics, so wait for the
  // specialist's f layer to appear before reading the figures.
  const steeredLine = /^telemed_publisher_steered_bps\{[^}]*site="centre-west-china"[^}]*rid="f"\} (\d+)/m;
  let metrics = '';
  const listed = async () => {
    metrics = await (await fetch(`${server.url}/metrics`)).text();
    return steeredLine.test(metrics);
  };
  assert.ok(
    await poll(listed, { timeout: 15_000, interval: 500 }),
    `/metrics lists the specialist's steered f layer within 15 s:\n${metrics.split('\n').filter((l) => /^telemed_(site|publisher)/.test(l)).join('\n')}`,
  );
  const budget = Number(/^telemed_site_line_budget_bps\{site="township-baima"\} (\d+)/m.exec(metrics)?.[1]);
  assert.equal(budget, 512_000, 'the township budget comes from its configured line capacity');
  const allocated = Number(/^telemed_site_allocated_bps\{site="township-baima"\} (\d+)/m.exec(metrics)?.[1]);
  assert.ok(allocated > 0 && allocated <= 512_000, `township allocation ${allocated} bit/s within its 512 kbit/s budget`);
  // /metrics shows what the relay asked the specialist's adaptive layer for (the specialist's site is
  // centre-west-china; the township's own camera is steered for the specialist's line).
  const steered = Number(steeredLine.exec(metrics)?.[1]);
  assert.ok(steered > 0 && steered <= 512_000, `the specialist's f layer steered to ${steered} bit/s`);
});
