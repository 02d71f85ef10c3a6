// Bandwidth adaptation in real Chromium: a township hospital whose line budget is 512 kbit/s
// (demo configuration) consults a specialist. On loopback the relay's estimate of the township
// doctor's downlink grows well past that, so the site's budget is what limits the video it receives:
// the room says so (`site_budget`), the township receives a layer below 720p, and dynacast pauses the
// specialist's 720p layer that nobody receives. The specialist, on a fast centre line, gets the
// township's top layer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mediaStats, openBrowser, poll, tail } from './browser.mjs';
import { startServer } from './server.mjs';
import { SPECIALIST, acceptOffer, joinRoom, login, setAvailable, submitRequest } from './workflow-steps.mjs';

const TOWNSHIP = { username: 'township', password: 'demo-township', role: 'referring_doctor' };

test('a township line budget limits what the relay sends there, and dynacast pauses the unused layer', { timeout: 180_000 }, async (t) => {
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
  const outboundVideo = async (page) => ((await mediaStats(page)).outbound ?? []).filter((o) => o.kind === 'video');
  const state = {};
  const settled = async () => {
    state.town = await quality(town.page);
    state.spec = await quality(spec.page);
    state.specOut = await outboundVideo(spec.page);
    const f = state.specOut.find((o) => o.rid === 'f');
    return (
      state.town.reason === 'site_budget' &&
      /^[qh]\//.test(state.town.layer ?? '') &&
      state.spec.layer?.startsWith('f/') &&
      f?.active === false
    );
  };
  if (!(await poll(settled, { timeout: 60_000, interval: 1000 }))) {
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.fail(
      [
        'within 60 s: want the township room to show quality data-reason "site_budget" with a q or h layer, ' +
          "the specialist to receive f, and the specialist's f encoding paused (active: false)",
        `township: ${JSON.stringify(state.town)}; specialist: ${JSON.stringify(state.spec)}`,
        `specialist outbound video: ${JSON.stringify(state.specOut)}`,
        metrics.split('\n').filter((l) => /^telemed_(site|downlink|sent)/.test(l)).join('\n'),
        `--- township page log:\n${tail(town.logs)}`,
        `--- server log (tail):\n${server.output().slice(-4000)}`,
      ].join('\n'),
    );
  }

  // What the relay sends to the township stays within its budget.
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const allocated = Number(/^telemed_site_allocated_bps\{site="township-baima"\} (\d+)/m.exec(metrics)?.[1]);
  assert.ok(allocated > 0 && allocated <= 512_000, `township allocation ${allocated} bit/s within its 512 kbit/s budget`);
});
