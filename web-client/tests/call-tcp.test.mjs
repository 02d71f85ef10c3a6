// Two browsers in one room with the relay's UDP media port off (--no-udp):
// media must go over passive ICE-TCP (RFC 4571) to the relay's TCP port.

import { test } from 'node:test';
import { callScenario } from './call-scenario.mjs';

test('two browsers call through the relay over ICE-TCP when UDP is off', { timeout: 180_000 }, async (t) => {
  await callScenario(t, { pseudonym: 'E2E-TCP-1', protocol: 'tcp', serverArgs: ['--no-udp'] });
});
