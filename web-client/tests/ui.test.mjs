// The login page: Chinese by default, English on request (remembered), client
// validation, a translated server error; routing by role and logout; the IT
// admin's quality page and the operator's users and audit pages.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loginViaUi, openBrowser, poll, tail } from './browser.mjs';
import { startServer } from './server.mjs';

const label = (page, forId) => page.locator(`label[for="${forId}"]`).textContent();

test('login page: languages, validation and a translated server error', { timeout: 120_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await openBrowser('ui');
  t.after(() => browser.close());
  const { page } = browser;
  const explain = (what) => `${what}\n--- page log:\n${tail(browser.logs)}\n--- server log (tail):\n${server.output().slice(-4000)}`;

  await page.goto(server.url);

  // Simplified Chinese by default, on #/login.
  await page.getByTestId('login').waitFor();
  assert.match(page.url(), /#\/login$/);
  assert.equal(await page.locator('html').getAttribute('lang'), 'zh-CN');
  assert.equal(await page.getByTestId('lang').inputValue(), 'zh-CN');
  assert.equal(await label(page, 'login-username'), '用户名');
  assert.equal(await label(page, 'login-password'), '密码');
  assert.equal(await page.getByTestId('login').textContent(), '登录');
  assert.equal(await page.getByTestId('error').isVisible(), false, 'no error shown at first');
  assert.equal(await page.getByTestId('logout').isVisible(), false, 'no logout button before login');

  // Switch to English.
  await page.getByTestId('lang').selectOption('en');
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  assert.equal(await label(page, 'login-username'), 'User name');
  assert.equal(await label(page, 'login-password'), 'Password');
  assert.equal(await page.getByTestId('login').textContent(), 'Log in');

  // The choice is remembered.
  await page.reload();
  await page.getByTestId('login').waitFor();
  assert.equal(await page.getByTestId('lang').inputValue(), 'en');
  assert.equal(await page.getByTestId('login').textContent(), 'Log in');

  // Client-side validation, before anything is sent.
  await page.getByTestId('login').click();
  assert.equal(await page.getByTestId('error').textContent(), 'Enter a user name (1–64 characters).');
  await page.getByTestId('username').fill('doctor');
  await page.getByTestId('login').click();
  assert.equal(await page.getByTestId('error').textContent(), 'Enter a password (1–256 characters).');

  // A wrong password: the server's bad_credentials, translated.
  await page.getByTestId('password').fill('wrong-password');
  await page.getByTestId('login').click();
  const code = await poll(async () => {
    const el = page.getByTestId('error');
    return (await el.isVisible()) && (await el.getAttribute('data-code')) === 'bad_credentials';
  }, { timeout: 10_000 });
  assert.ok(code, explain(`no bad_credentials error shown; error text: "${await page.getByTestId('error').textContent()}"`));
  assert.equal(await page.getByTestId('error').textContent(), 'Wrong user name or password.');
  assert.equal(await page.getByTestId('page-doctor').count(), 0, 'still on the login page');

  // Switching language re-translates the error on screen.
  await page.getByTestId('lang').selectOption('zh-CN');
  assert.equal(await page.getByTestId('error').textContent(), '用户名或密码错误。');
  assert.equal(await page.getByTestId('login').textContent(), '登录');

  // The right password: the doctor's dashboard, the user in the header, the live connection.
  await page.getByTestId('password').fill('demo-doctor');
  await page.getByTestId('login').click();
  await page.getByTestId('page-doctor').waitFor({ timeout: 10_000 });
  assert.match(page.url(), /#\/doctor$/);
  assert.equal(await page.getByTestId('current-user').getAttribute('data-username'), 'doctor');
  assert.equal(await page.getByTestId('current-user').getAttribute('data-role'), 'referring_doctor');
  const online = await poll(async () => (await page.getByTestId('live-status').getAttribute('data-state')) === 'online', {
    timeout: 10_000,
  });
  assert.ok(online, explain('the WebSocket did not authenticate (live-status is not "online")'));

  // A doctor cannot open another role's page: back to their own.
  await page.evaluate(() => (location.hash = '#/operator'));
  await page.getByTestId('page-doctor').waitFor({ timeout: 5000 });

  // The login survives a reload (sessionStorage), and logout ends it.
  await page.reload();
  await page.getByTestId('page-doctor').waitFor({ timeout: 10_000 });
  await page.getByTestId('logout').click();
  await page.getByTestId('login').waitFor({ timeout: 5000 });
  assert.match(page.url(), /#\/login$/);
  await page.evaluate(() => (location.hash = '#/doctor'));
  await page.getByTestId('login').waitFor({ timeout: 5000 });
  assert.equal(await page.getByTestId('page-doctor').count(), 0, 'logged out: no dashboard');
});

test('IT admin sees line quality; operator manages users and reads the audit log', { timeout: 120_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await openBrowser('admin');
  t.after(() => browser.close());
  const { page } = browser;
  const explain = (what) => `${what}\n--- page log:\n${tail(browser.logs)}\n--- server log (tail):\n${server.output().slice(-4000)}`;

  // IT admin: the quality table, one row per site, refreshed.
  await loginViaUi(page, server.url, { username: 'itadmin', password: 'demo-itadmin' }, { expect: 'page-it' });
  const rows = await poll(async () => (await page.getByTestId('quality-row').count()) > 0, { timeout: 10_000 });
  assert.ok(rows, explain('no quality rows'));
  assert.ok(
    (await page.locator('[data-testid="quality-row"][data-site-id="county-renhe"]').count()) === 1,
    'the county hospital has a quality row',
  );
  const first = Number(await page.getByTestId('quality-updated').getAttribute('data-at'));
  const refreshed = await poll(
    async () => Number(await page.getByTestId('quality-updated').getAttribute('data-at')) > first,
    { timeout: 12_000 },
  );
  assert.ok(refreshed, 'the quality page refreshes by itself');
  await page.getByTestId('logout').click();

  // Operator: users, a new user (after a rejected form), the audit log.
  await loginViaUi(page, server.url, { username: 'operator', password: 'demo-operator' }, { expect: 'page-operator' });
  const users = await poll(
    async () => (await page.locator('[data-testid="user-row"][data-username="doctor"]').count()) === 1,
    { timeout: 10_000 },
  );
  assert.ok(users, explain('the users table does not list "doctor"'));

  await page.getByTestId('new-user-username').fill('Bad Name');
  await page.getByTestId('new-user-password').fill('short');
  await page.getByTestId('new-user-role').selectOption('specialist');
  await page.getByTestId('new-user-submit').click();
  const fieldError = (field) => page.locator(`[data-testid="field-error"][data-field="${field}"]`);
  for (const field of ['username', 'display_name', 'password', 'site_id', 'specialties']) {
    assert.equal(await fieldError(field).isVisible(), true, `a field error is shown for ${field}`);
  }

  await page.getByTestId('new-user-username').fill('cardio3');
  await page.getByTestId('new-user-display-name').fill('赵医生 (测试)');
  await page.getByTestId('new-user-password').fill('a-long-password');
  await page.getByTestId('new-user-site').selectOption('centre-west-china');
  await page.locator('[data-testid="new-user-specialty"][value="cardiology"]').check();
  await page.getByTestId('new-user-submit').click();
  const created = await poll(
    async () => (await page.locator('[data-testid="user-row"][data-username="cardio3"]').count()) === 1,
    { timeout: 10_000 },
  );
  assert.ok(created, explain(`the new user is not listed; form error: "${await page.getByTestId('user-form-error').textContent()}"`));
  assert.equal(await page.getByTestId('user-form-success').isVisible(), true);

  const audit = await poll(
    async () => (await page.locator('[data-testid="audit-row"][data-action="user.created"]').count()) >= 1,
    { timeout: 10_000 },
  );
  assert.ok(audit, explain('the audit log does not show user.created'));

  // The new account works.
  await page.getByTestId('logout').click();
  await loginViaUi(page, server.url, { username: 'cardio3', password: 'a-long-password' }, { expect: 'page-specialist' });
});
