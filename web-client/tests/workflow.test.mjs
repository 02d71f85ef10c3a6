// The consultation workflow end to end in two browsers: a referring doctor
// requests (after an invalid form shows its field errors, from the client and
// from the server), sees the queue position and estimated wait live, a
// specialist becomes available, gets the offer and accepts; both land in the
// same room with video flowing; the specialist writes and signs the opinion
// during the call; the doctor sees it live and acknowledges; both see the
// request closed in their history.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mediaFlows, mediaStats, openBrowser, poll, tail } from './browser.mjs';
import { startServer } from './server.mjs';
import {
  DOCTOR,
  SPECIALIST,
  acceptOffer,
  card,
  joinRoom,
  login,
  setAvailable,
  submitRequest,
  waitForState,
} from './workflow-steps.mjs';

test('request → offer → accept → call → signed opinion → acknowledged', { timeout: 240_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const doc = await openBrowser('doctor');
  t.after(() => doc.close());
  const spec = await openBrowser('specialist');
  t.after(() => spec.close());
  const d = doc.page;
  const s = spec.page;

  const explain = (what) =>
    [
      what,
      `--- doctor page log:\n${tail(doc.logs)}`,
      `--- specialist page log:\n${tail(spec.logs)}`,
      `--- server log (tail):\n${server.output().slice(-6000)}`,
    ].join('\n');
  const step = async (what, fn) => {
    try {
      return await fn();
    } catch (e) {
      assert.fail(explain(`${what}: ${e.stack ?? e}`));
    }
  };
  const until = async (what, cond, timeout = 15_000) => {
    if (!(await poll(cond, { timeout }))) assert.fail(explain(what));
  };
  const fieldError = (page, field) => page.locator(`[data-testid="field-error"][data-field="${field}"]`);
  const text = (locator) => locator.textContent().then((x) => (x ?? '').trim());

  await step('the doctor logs in', () => login(d, server.url, DOCTOR));
  await d.getByTestId('lang').selectOption('en');

  // 1. An empty form: the client marks every required field and sends nothing.
  await d.getByTestId('req-submit').click();
  for (const field of ['patient_pseudonym', 'specialty', 'question', 'consent', 'consent_method']) {
    assert.equal(await fieldError(d, field).isVisible(), true, `client field error for ${field}`);
    assert.equal(await fieldError(d, field).getAttribute('data-source'), 'client');
  }
  assert.equal(await text(fieldError(d, 'consent')), "The patient's consent is needed before submitting.");
  assert.equal(await d.getByTestId('req-pseudonym').getAttribute('aria-invalid'), 'true');
  // A name instead of a pseudonym is caught too.
  await d.getByTestId('req-pseudonym').fill('张三');
  await d.getByTestId('req-submit').click();
  assert.equal(await fieldError(d, 'patient_pseudonym').getAttribute('data-code'), 'invalid_format');
  assert.equal(await d.getByTestId('request-card').count(), 0, 'nothing was submitted');

  // 2. The server's own field errors (client checks switched off): shown next to their fields.
  await d.evaluate(() => {
    window.__telemed.clientValidation = false;
  });
  await d.getByTestId('req-pseudonym').fill('11010519491231002X'); // a resident ID number
  await d.getByTestId('req-specialty').selectOption('cardiology');
  await d.getByTestId('req-question').fill('   ');
  await d.getByTestId('req-consent-method').selectOption('written');
  await d.getByTestId('req-submit').click();
  await until('the server field errors were not shown', async () =>
    (await fieldError(d, 'patient_pseudonym').getAttribute('data-source')) === 'server' &&
    (await fieldError(d, 'question').getAttribute('data-source')) === 'server',
  );
  assert.equal(await fieldError(d, 'patient_pseudonym').getAttribute('data-code'), 'invalid_value');
  assert.equal(await fieldError(d, 'question').getAttribute('data-code'), 'required');
  assert.ok((await text(fieldError(d, 'patient_pseudonym'))).length > 0, 'the server message is shown');
  assert.equal(await d.getByTestId('form-error').getAttribute('data-code'), 'validation_failed');
  assert.equal(await d.getByTestId('request-card').count(), 0, 'the server stored nothing');
  await d.evaluate(() => {
    window.__telemed.clientValidation = true;
  });

  // 3. Two valid requests while no specialist is available: queued, with position and wait.
  const first = await step('the doctor submits the first request', () => submitRequest(d, { pseudonym: 'P-2026-0042', urgency: 'urgent' }));
  assert.equal(await fieldError(d, 'patient_pseudonym').isVisible(), false, 'the errors are gone after a good submit');
  const second = await step('the doctor submits the second request', () => submitRequest(d, { pseudonym: 'P-2026-0043' }));
  await step('both are queued', async () => {
    await waitForState(d, first, 'queued', { within: 'my-requests' });
    await waitForState(d, second, 'queued', { within: 'my-requests' });
  });
  const position = (id) => card(d, id).getByTestId('queue-position').getAttribute('data-position');
  await until('queue positions 0 and 1 are not shown', async () => (await position(first)) === '0' && (await position(second)) === '1');
  assert.equal(await text(card(d, first).getByTestId('queue-position')), 'Queue position: 1');
  assert.equal(await text(card(d, second).getByTestId('queue-position')), 'Queue position: 2');
  assert.equal(await card(d, first).getByTestId('estimated-wait').isVisible(), true, 'the estimated wait is shown');
  assert.match(await text(card(d, first).getByTestId('estimated-wait')), /^Estimated wait: /);
  assert.equal(await text(card(d, first).getByTestId('request-state')), 'Queued');

  // 4. The specialist becomes available and is offered the head of the queue.
  await step('the specialist logs in', () => login(s, server.url, SPECIALIST));
  await step('the specialist sees the queue', () =>
    until('the queue does not list both requests', async () => (await s.getByTestId('queue').locator('[data-testid="request-card"]').count()) === 2),
  );
  await step('the specialist becomes available', () => setAvailable(s, true));
  await until('no offer reached the specialist', () => card(s, first, 'offers').isVisible(), 20_000);
  assert.equal(await s.getByTestId('offer-banner').isVisible(), true, 'the offer is announced');
  const offer = card(s, first, 'offers');
  assert.equal(await text(offer.getByTestId('request-pseudonym')), 'P-2026-0042');
  for (const id of ['accept', 'decline-offer', 'decline-unsuitable']) {
    assert.equal(await offer.getByTestId(id).isVisible(), true, `the offer has ${id}`);
  }
  // The doctor sees it offered live, and the second request moves up to the head of the queue.
  await step('the doctor sees the offer', () => waitForState(d, first, 'offered'));
  await until('the second request did not move up to position 0 live', async () => (await position(second)) === '0');
  // Now a specialist of the specialty is on duty: the wait is estimated, live.
  const wait = card(d, second).getByTestId('estimated-wait');
  await until('no estimated wait for the second request', async () => (await wait.getAttribute('data-secs')) !== '');
  assert.match(await text(wait), /^Estimated wait: about /);

  // 5. The doctor withdraws the second request (a reason is required).
  await card(d, second).getByTestId('cancel-request').click();
  await card(d, second).getByTestId('cancel-confirm').click();
  assert.equal(await card(d, second).getByTestId('cancel-panel').isVisible(), true, 'no reason, no cancel');
  await card(d, second).getByTestId('cancel-reason').fill('Patient transferred by ambulance instead.');
  await card(d, second).getByTestId('cancel-confirm').click();
  await step('the second request is cancelled', () => waitForState(d, second, 'cancelled', { within: 'history' }));

  // 6. The specialist accepts; both sides are paired and join the room.
  await step('the specialist accepts', () => acceptOffer(s, first));
  await until('the doctor got no join banner', () => d.locator(`[data-testid="banner-join"][data-request-id="${first}"]`).isVisible());
  await step('the doctor sees the request accepted', () => waitForState(d, first, 'accepted'));
  await step('the doctor joins', () => joinRoom(d, first));
  await step('the specialist joins', () => joinRoom(s, first));
  assert.equal(await text(d.getByTestId('room-pseudonym')), 'Patient P-2026-0042');
  assert.match(await text(s.getByTestId('room-question')), /Chest pain/);

  const relay = server.mediaUdp;
  const last = {};
  await until(
    'media did not flow both ways through the relay',
    async () => {
      [last.d, last.s] = await Promise.all([mediaStats(d), mediaStats(s)]);
      return mediaFlows(last.d, relay, 'udp') && mediaFlows(last.s, relay, 'udp');
    },
    30_000,
  ).catch(async (e) => {
    e.message += `\n--- doctor stats ${JSON.stringify(last.d)}\n--- specialist stats ${JSON.stringify(last.s)}`;
    throw e;
  });
  await until('the request is not in consultation', async () =>
    (await s.getByTestId('room-state').getAttribute('data-state')) === 'in_consultation',
  );

  // 7. The specialist writes the opinion beside the video, saves a draft, then signs it.
  const editor = s.getByTestId('room-side').getByTestId('opinion-editor');
  await editor.waitFor({ timeout: 10_000 });
  await editor.getByTestId('opinion-input-findings').fill('Exertional chest pain; ST depression in V4–V6 on the ECG.');
  await editor.getByTestId('opinion-sign').click();
  assert.equal(await fieldError(s, 'diagnosis').isVisible(), true, 'signing needs a diagnosis');
  assert.equal(await s.getByTestId('opinion-sign-confirm').isVisible(), false, 'no confirm step yet');
  await editor.getByTestId('opinion-input-diagnosis').fill('Stable angina pectoris, likely.');
  await editor.getByTestId('opinion-input-recommendations').fill('Aspirin 100 mg daily; statin; exercise stress test.');
  await editor.getByTestId('opinion-input-follow-up').fill('Review in 4 weeks at the county hospital.');
  await editor.getByTestId('opinion-save').click();
  await until('the draft was not saved', async () => (await editor.getByTestId('opinion-status').getAttribute('data-state')) === 'saved');
  await editor.getByTestId('opinion-sign').click();
  await s.getByTestId('opinion-sign-confirm').waitFor();
  await s.getByTestId('opinion-sign-confirm-button').click();
  await until('the signed opinion did not replace the editor', async () =>
    (await s.getByTestId('room-side').getByTestId('opinion-view').getAttribute('data-signed').catch(() => null)) === 'true',
  );
  assert.equal(await s.getByTestId('room-state').getAttribute('data-state'), 'opinion_written');

  // 8. The doctor sees the signed opinion live, still in the room.
  const seen = d.getByTestId('room-side').getByTestId('opinion-view');
  await until('the doctor did not see the signed opinion live', () => seen.isVisible());
  assert.equal(await text(seen.getByTestId('opinion-diagnosis')), 'Stable angina pectoris, likely.');
  assert.equal(await text(seen.getByTestId('opinion-follow-up')), 'Review in 4 weeks at the county hospital.');
  assert.equal(await seen.getByTestId('opinion-signer').getAttribute('data-username'), 'specialist');
  assert.match(await text(seen.getByTestId('opinion-digest')), /^[0-9a-f]{64}$/);
  assert.ok(Number(await seen.getByTestId('opinion-signed-at').getAttribute('data-at')) > 0);

  // 9. Both leave; the doctor acknowledges on the dashboard; both see it closed in their history.
  await s.getByTestId('leave').click();
  await s.getByTestId('page-specialist').waitFor({ timeout: 10_000 });
  await d.getByTestId('leave').click();
  await d.getByTestId('page-doctor').waitFor({ timeout: 10_000 });
  await step('the doctor sees the opinion written', () => waitForState(d, first, 'opinion_written', { within: 'my-requests' }));
  const mine = card(d, first);
  assert.equal(await mine.getByTestId('opinion-view').getAttribute('data-signed'), 'true');
  assert.equal(await text(mine.getByTestId('opinion-recommendations')), 'Aspirin 100 mg daily; statin; exercise stress test.');
  await mine.getByTestId('acknowledge').click();
  await step('the doctor sees it closed in the history', () => waitForState(d, first, 'closed', { within: 'history' }));
  assert.equal(await card(d, first).getByTestId('acknowledged').isVisible(), true);
  await step('the specialist sees it closed in the history (live)', () => waitForState(s, first, 'closed', { within: 'history' }));

  // 10. A referral proposal on the closed request, from the doctor.
  const closed = card(d, first, 'history');
  await closed.getByTestId('propose-referral').click();
  await closed.getByTestId('referral-direction').selectOption('up');
  await closed.getByTestId('referral-site').selectOption('centre-west-china');
  await closed.getByTestId('referral-reason').fill('Coronary angiography needed.');
  await closed.getByTestId('referral-submit').click();
  await until('the referral was not added', async () => (await closed.getByTestId('referral-item').count()) === 1);
  assert.equal(await closed.getByTestId('referral-item').getAttribute('data-to-site'), 'centre-west-china');
});
