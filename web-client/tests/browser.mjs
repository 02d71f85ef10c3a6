// Chromium for the end-to-end tests (design §7): Debian's /usr/bin/chromium
// driven by playwright-core, one fresh persistent profile (one browser
// process) per simulated user, so two users are independent WebRTC peers.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

/** Opens a browser with a fresh profile. Returns { name, context, page, logs, close() }. */
export async function openBrowser(name = 'browser', { args = [] } = {}) {
  const profile = await mkdtemp(join(tmpdir(), `telemed-e2e-${name}-`));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...args],
      viewport: { width: 1280, height: 800 },
    });
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  const log = (line) => {
    logs.push(`${new Date().toISOString().slice(11, 23)} ${line}`);
    if (logs.length > 200) logs.shift();
  };
  page.on('console', (m) => log(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log(`[pageerror] ${e.message}`));
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) =>
      log(
        `ws> ${String(f.payload)
          .replace(/"password":"[^"]*"/, '"password":"***"')
          .replace(/"token":"[^"]*"/, '"token":"***"')
          .slice(0, 300)}`,
      ),
    );
    ws.on('framereceived', (f) => log(`ws< ${String(f.payload).slice(0, 300)}`));
    ws.on('close', () => log('ws closed'));
  });
  let closed = false;
  return {
    name,
    context,
    page,
    logs,
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The dashboard test id of each role. */
export const HOME_OF_ROLE = {
  referring_doctor: 'page-doctor',
  specialist: 'page-specialist',
  it_admin: 'page-it',
  operator: 'page-operator',
};

/**
 * Opens the app at `url`, fills in the login page and logs in. With `expect`
 * (a page test id such as 'page-doctor'), waits until that page is shown.
 */
export async function loginViaUi(page, url, { username, password }, { expect } = {}) {
  await page.goto(url);
  await page.getByTestId('login').waitFor({ timeout: 15_000 });
  await page.getByTestId('username').fill(username);
  await page.getByTestId('password').fill(password);
  await page.getByTestId('login').click();
  if (expect) await page.getByTestId(expect).waitFor({ timeout: 15_000 });
}

/** How the page's video sender is set to send each simulcast layer (`RTCRtpSender.getParameters`). */
export async function senderEncodings(page) {
  return page.evaluate(() => {
    const pc = window.__telemed?.pc;
    const sender = pc?.getSenders().find((s) => s.track?.kind === 'video');
    return (sender?.getParameters().encodings ?? []).map((e) => ({
      rid: e.rid,
      active: e.active,
      maxBitrate: e.maxBitrate,
      scaleResolutionDownBy: e.scaleResolutionDownBy,
    }));
  });
}

/** A summary of the current peer connection's getStats(), or { pc: null }. */
export async function mediaStats(page) {
  return page.evaluate(async () => {
    const pc = window.__telemed?.pc;
    if (!pc) return { pc: null };
    const all = [...(await pc.getStats()).values()];
    const byId = new Map(all.map((s) => [s.id, s]));
    const cand = (id) => {
      const c = byId.get(id);
      return c
        ? { address: c.address, port: c.port, protocol: c.protocol, type: c.candidateType, tcpType: c.tcpType }
        : null;
    };
    const inbound = (kind) =>
      all
        .filter((s) => s.type === 'inbound-rtp' && s.kind === kind)
        .map((s) => ({
          mid: s.mid,
          ssrc: s.ssrc,
          codec: byId.get(s.codecId)?.mimeType,
          packetsReceived: s.packetsReceived,
          packetsLost: s.packetsLost,
          nackCount: s.nackCount,
          retransmittedPacketsReceived: s.retransmittedPacketsReceived,
          framesDropped: s.framesDropped,
          bytesReceived: s.bytesReceived,
          framesDecoded: s.framesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
        }));
    const outbound = all
      .filter((s) => s.type === 'outbound-rtp')
      .map((s) => ({
        kind: s.kind,
        mid: s.mid,
        codec: byId.get(s.codecId)?.mimeType,
        packetsSent: s.packetsSent,
        bytesSent: s.bytesSent,
        framesEncoded: s.framesEncoded,
        rid: s.rid,
        frameHeight: s.frameHeight,
        scalabilityMode: s.scalabilityMode,
        active: s.active,
        qualityLimitationReason: s.qualityLimitationReason,
      }));
    let pair;
    const transport = all.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    if (transport) pair = byId.get(transport.selectedCandidatePairId);
    pair ??= all.find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    return {
      pc: true,
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      signalingState: pc.signalingState,
      inboundVideo: inbound('video'),
      inboundAudio: inbound('audio'),
      outbound,
      selectedPair: pair
        ? {
            state: pair.state,
            nominated: pair.nominated,
            bytesSent: pair.bytesSent,
            bytesReceived: pair.bytesReceived,
            local: cand(pair.localCandidateId),
            remote: cand(pair.remoteCandidateId),
          }
        : null,
      remoteCandidates: all.filter((s) => s.type === 'remote-candidate').map((s) => cand(s.id)),
      candidatePairs: all
        .filter((s) => s.type === 'candidate-pair')
        .map((s) => ({
          state: s.state,
          nominated: s.nominated,
          local: cand(s.localCandidateId),
          remote: cand(s.remoteCandidateId),
        })),
    };
  });
}

/** Whether the stats show media flowing through the relay at `relay` {port} over `protocol`. */
export function mediaFlows(stats, relay, protocol) {
  if (!stats?.pc) return false;
  const frames = Math.max(0, ...stats.inboundVideo.map((s) => s.framesDecoded ?? 0));
  const audio = Math.max(0, ...stats.inboundAudio.map((s) => s.packetsReceived ?? 0));
  const remote = stats.selectedPair?.remote;
  return (
    frames > 10 &&
    audio > 10 &&
    remote != null &&
    remote.port === relay.port &&
    remote.protocol === protocol
  );
}

/** Polls `check` (async, returns truthy when done) every `interval` ms until `timeout`. */
export async function poll(check, { timeout = 30_000, interval = 250 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() >= deadline) return null;
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The last `n` log lines of a browser, for failure messages. */
export function tail(lines, n = 40) {
  return lines.slice(-n).join('\n');
}
