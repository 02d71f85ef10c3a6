// The join page: Chinese by default, English on request (remembered), client
// validation, and a server error shown translated in both languages.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openBrowser, poll, tail } from './browser.mjs';
import { startServer } from './server.mjs';

const label = (page, forId) => page.locator(`label[for="${forId}"]`).textContent();

test('join page: languages, validation and a translated server error', { timeout: 120_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await openBrowser('ui');
  t.after(() => browser.close());
  const { page } = browser;
  const explain = (what) => `${what}\n--- page log:\n${tail(browser.logs)}\n--- server log (tail):\n${server.output().slice(-4000)}`;

  await page.goto(server.url);

  // Simplified Chinese by default.
  await page.getByTestId('join').waitFor();
  assert.equal(await page.locator('html').getAttribute('lang'), 'zh-CN');
  assert.equal(await page.getByTestId('lang').inputValue(), 'zh-CN');
  assert.equal(await label(page, 'join-username'), '用户名');
  assert.equal(await label(page, 'join-password'), '密码');
  assert.equal(await label(page, 'join-room'), '会诊室');
  assert.equal(await page.getByTestId('join').textContent(), '加入会诊');
  assert.equal(await page.getByTestId('room').inputValue(), 'demo', 'the room defaults to "demo"');
  assert.equal(await page.getByTestId('error').isVisible(), false, 'no error shown at first');

  // Switch to English.
  await page.getByTestId('lang').selectOption('en');
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  assert.equal(await label(page, 'join-username'), 'User name');
  assert.equal(await label(page, 'join-password'), 'Password');
  assert.equal(await label(page, 'join-room'), 'Consultation room');
  assert.equal(await page.getByTestId('join').textContent(), 'Join consultation');

  // The choice is remembered.
  await page.reload();
  await page.getByTestId('join').waitFor();
  assert.equal(await page.getByTestId('lang').inputValue(), 'en');
  assert.equal(await page.getByTestId('join').textContent(), 'Join consultation');

  // Client-side validation of the room name, before anything is sent.
  await page.getByTestId('username').fill('doctor');
  await page.getByTestId('password').fill('demo-doctor');
  await page.getByTestId('room').fill('no spaces!');
  await page.getByTestId('join').click();
  assert.equal(
    await page.getByTestId('error').textContent(),
    'The room name must be 1–64 characters: letters, digits, _ - .',
  );

  // A wrong password: the server's bad_credentials, translated.
  await page.getByTestId('room').fill('e2e-ui');
  await page.getByTestId('password').fill('wrong-password');
  await page.getByTestId('join').click();
  const code = await poll(async () => {
    const el = page.getByTestId('error');
    return (await el.isVisible()) && (await el.getAttribute('data-code')) === 'bad_credentials';
  }, { timeout: 10_000 });
  assert.ok(code, explain(`no bad_credentials error shown; error text: "${await page.getByTestId('error').textContent()}"`));
  assert.equal(await page.getByTestId('error').textContent(), 'Wrong user name or password.');
  assert.equal(await page.getByTestId('local-video').count(), 0, 'still on the join page');

  // Switching language re-translates the error on screen.
  await page.getByTestId('lang').selectOption('zh-CN');
  assert.equal(await page.getByTestId('error').textContent(), '用户名或密码错误。');
  assert.equal(await page.getByTestId('join').textContent(), '加入会诊');
});
