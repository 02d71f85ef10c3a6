// Two browsers in one room, media through the relay's UDP port.

import { test } from 'node:test';
import { callScenario } from './call-scenario.mjs';

test('two browsers call through the relay over UDP', { timeout: 180_000 }, async (t) => {
  await callScenario(t, { room: 'e2e-udp', protocol: 'udp' });
});
