// Two browsers in one consultation room (reached through the workflow), media
// through the relay's UDP port.

import { test } from 'node:test';
import { callScenario } from './call-scenario.mjs';

test('two browsers call through the relay over UDP', { timeout: 180_000 }, async (t) => {
  await callScenario(t, { pseudonym: 'E2E-UDP-1', protocol: 'udp' });
});
