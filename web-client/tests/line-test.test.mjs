// The browser line test in real Chromium: the county doctor tests the line from the dashboard
// (camera and microphone to the relay and back, the relay padding the downlink), sees capacity
// down and up, RTT, loss and a verdict, and the result is stored for the county site, where the IT
// page shows it and the relay takes it as the site's line budget.
//
// On loopback the figures depend on the estimators and the machine's load, not on a line, so this
// checks the wiring and the stored values, not a capacity (docs/benchmarks.md has measured lines).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loginViaUi, openBrowser, poll, tail } from './browser.mjs';
import { startServer } from './server.mjs';
import { DOCTOR, login } from './workflow-steps.mjs';

test('a doctor tests the line before a consultation; IT sees it and the relay budgets by it', { timeout: 180_000 }, async (t) => {
  const server = await startServer([]);
  t.after(() => server.stop());
  const doc = await openBrowser('line-test');
  t.after(() => doc.close());

  await login(doc.page, server.url, DOCTOR);
  const panel = doc.page.getByTestId('line-test');
  await panel.getByTestId('line-test-start').click();
  const status = panel.getByTestId('line-test-status');
  const finished = await poll(async () => ['done', 'failed'].includes(await status.getAttribute('data-state')), {
    timeout: 60_000,
    interval: 500,
  });
  const explain = async () =>
    [
      `status ${await status.getAttribute('data-state')}: ${await status.textContent()}`,
      `--- page log:\n${tail(doc.logs)}`,
      `--- server log (tail):\n${server.output().slice(-4000)}`,
    ].join('\n');
  assert.ok(finished, `the line test did not finish within 60 s\n${await explain()}`);
  assert.equal(await status.getAttribute('data-state'), 'done', await explain());

  const result = panel.getByTestId('line-test-result');
  const num = async (name) => Number(await result.getAttribute(`data-${name}`));
  const verdict = await result.getAttribute('data-verdict');
  assert.ok(['video', 'audio_only', 'not_enough'].includes(verdict), `verdict ${verdict}`);
  const down = await num('down-kbps');
  const up = await num('up-kbps');
  t.diagnostic(`line test on loopback: ${verdict}, down ${down} kbit/s, up ${up} kbit/s, rtt ${await num('rtt-ms')} ms, loss ${await num('loss-pct')} %`);
  assert.ok(down > 0, `the relay's downlink estimate is shown: ${down} kbit/s`);
  assert.ok(up > 0, `the browser's uplink estimate is shown: ${up} kbit/s`);
  for (const name of ['rtt-ms', 'loss-pct']) {
    const raw = await result.getAttribute(`data-${name}`);
    assert.ok(raw !== null && raw !== '' && Number.isFinite(Number(raw)) && Number(raw) >= 0, `${name} is shown: ${raw}`);
  }
  assert.ok(
    await poll(async () => (await panel.getByTestId('line-test-saved').getAttribute('data-saved')) === 'true', { timeout: 10_000 }),
    `the result was not saved: ${await panel.getByTestId('line-test-saved').textContent()}`,
  );

  // The IT page shows it for the county site, and the relay's budget for the site follows it.
  const it = await openBrowser('line-test-it');
  t.after(() => it.close());
  await loginViaUi(it.page, server.url, { username: 'itadmin', password: 'demo-itadmin' }, { expect: 'page-it' });
  const row = it.page.locator('[data-testid="line-row"][data-site-id="county-renhe"]');
  assert.ok(
    await poll(async () => Number(await row.getAttribute('data-down-kbps').catch(() => null)) === down, { timeout: 15_000 }),
    `the IT page shows the county's measured downlink ${down} kbit/s`,
  );
  assert.equal(await row.getAttribute('data-budget-source'), 'measured');
  assert.equal(Number(await row.getAttribute('data-budget-kbps')), down);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const budget = Number(/^telemed_site_line_budget_bps\{site="county-renhe"\} (\d+)/m.exec(metrics)?.[1]);
  assert.equal(budget, down * 1000, "the relay's line budget for the county is the measured downlink");
});
