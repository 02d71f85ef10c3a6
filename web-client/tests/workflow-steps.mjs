// Steps of the consultation workflow done through the UI, shared by
// call-scenario.mjs and workflow.test.mjs. Each step waits for its visible
// result and throws with a clear message if it does not come.

import { HOME_OF_ROLE, loginViaUi, poll } from './browser.mjs';

export const DOCTOR = { username: 'doctor', password: 'demo-doctor', role: 'referring_doctor' };
export const SPECIALIST = { username: 'specialist', password: 'demo-specialist', role: 'specialist' };

/** Logs in and waits for the role's dashboard. */
export async function login(page, url, user) {
  await loginViaUi(page, url, user, { expect: HOME_OF_ROLE[user.role] });
}

/** The card of request `id` (anywhere on the page, or inside `within`, a test id). */
export function card(page, id, within) {
  const sel = `[data-testid="request-card"][data-request-id="${id}"]`;
  return within ? page.getByTestId(within).locator(sel) : page.locator(sel);
}

/** Waits until the card of `id` shows `state` (optionally inside section `within`). */
export async function waitForState(page, id, state, { within, timeout = 15_000 } = {}) {
  const ok = await poll(
    async () => (await card(page, id, within).getAttribute('data-state').catch(() => null)) === state,
    { timeout },
  );
  if (!ok) {
    const now = await card(page, id).getAttribute('data-state').catch(() => 'no card');
    throw new Error(`request ${id}: expected state "${state}"${within ? ` in ${within}` : ''}, got "${now}"`);
  }
}

/**
 * Fills in and submits the request form (a valid request unless the caller
 * overrides fields); returns the new request's id (from its card in "My
 * requests").
 */
export async function submitRequest(page, {
  pseudonym,
  specialty = 'cardiology',
  urgency = 'routine',
  question = 'Chest pain on exertion for two weeks; ECG attached. Stable angina or something else?',
  centre = '',
  consentMethod = 'verbal',
} = {}) {
  await page.getByTestId('req-pseudonym').fill(pseudonym);
  await page.getByTestId('req-specialty').selectOption(specialty);
  await page.getByTestId('req-urgency').selectOption(urgency);
  await page.getByTestId('req-question').fill(question);
  await page.getByTestId('req-centre').selectOption(centre);
  await page.getByTestId('req-consent').check();
  await page.getByTestId('req-consent-method').selectOption(consentMethod);
  await page.getByTestId('req-submit').click();
  const mine = page.getByTestId('my-requests').locator('[data-testid="request-card"]').filter({
    has: page.locator(`[data-testid="request-pseudonym"]:text-is("${pseudonym}")`),
  });
  const ok = await poll(async () => (await mine.count()) === 1, { timeout: 10_000 });
  if (!ok) {
    const err = await page.getByTestId('form-error').textContent().catch(() => '');
    throw new Error(`the request for ${pseudonym} did not appear in "My requests" (form error: "${err}")`);
  }
  return mine.getAttribute('data-request-id');
}

/** Sets the specialist's availability switch and waits until the server confirmed it. */
export async function setAvailable(page, available) {
  const toggle = page.getByTestId('availability-toggle');
  await poll(async () => (await toggle.getAttribute('data-available')) !== null && (await toggle.isEnabled()), {
    timeout: 10_000,
  });
  if ((await toggle.getAttribute('data-available')) !== String(available)) await toggle.click();
  const ok = await poll(async () => (await toggle.getAttribute('data-available')) === String(available), {
    timeout: 10_000,
  });
  if (!ok) throw new Error(`availability did not become ${available}`);
}

/** Waits for request `id` to be offered to the specialist, then accepts it. */
export async function acceptOffer(page, id) {
  const offer = card(page, id, 'offers');
  const ok = await poll(() => offer.isVisible(), { timeout: 20_000 });
  if (!ok) throw new Error(`request ${id} was not offered to the specialist (no card in "offers")`);
  await offer.getByTestId('accept').click();
  await waitForState(page, id, 'accepted', { within: 'my-consultations' });
}

/** Enters the room of request `id` (the banner's or the card's Join button) and waits for the call page. */
export async function joinRoom(page, id) {
  const banner = page.locator(`[data-testid="banner-join"][data-request-id="${id}"]`);
  const button = (await banner.count()) > 0 ? banner : card(page, id).getByTestId('join-room');
  await button.click();
  await page.locator(`[data-testid="page-room"][data-request-id="${id}"]`).waitFor({ timeout: 10_000 });
  const ok = await poll(() => page.getByTestId('local-video').isVisible(), { timeout: 15_000 });
  if (!ok) {
    const err = await page.getByTestId('room-error').textContent().catch(() => '');
    throw new Error(`did not enter the room of ${id} (room error: "${err}")`);
  }
}
