// Two browsers in one room, media through the relay's UDP port.

import { test } from 'node:test';
import { callScenario } from './call-scenario.mjs';

test('two browsers call through the relay over UDP', {
  timeout: 180_000,
  // Open defect: the relay loses part of the forwarded media (getStats shows packetsLost and too few
  // frames decoded), so this test fails today. It runs and reports in every `make test`; remove this
  // `todo` when the relay loss is fixed.
  todo: 'relay drops part of the forwarded packets (open defect)',
}, async (t) => {
  await callScenario(t, { room: 'e2e-udp', protocol: 'udp' });
});
