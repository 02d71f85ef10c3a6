// The browser line test (docs/architecture.md, line test): before a consultation, the browser
// publishes its camera and microphone to the relay exactly as in a call, in a room of its own
// (`line_test`), and the relay sends the media back while it pads the downlink up to what the line
// carries. After a few seconds:
//   - down: the relay's own estimate of what it can send us (the `quality` messages' estimate),
//   - up: the browser's estimate of what it can send (getStats `availableOutgoingBitrate`),
//   - RTT from the selected candidate pair, jitter and loss from what came back.
// The uplink figure is bounded by what a call sends (its simulcast layers), so it answers "enough
// for a consultation?", not "what does the line carry?": `bandwidth-probe` measures that.

import type { LineMeasurementInput } from './api';
import { startLineTestSession, type Session } from './session';
import type { SignalingClient, User } from './signaling';

/** How long the test publishes and probes. */
export const LINE_TEST_SECONDS = 10;
/** The figures are the best of the last few seconds, once the estimators have climbed. */
const SETTLED_SAMPLES = 3;

/** Each way, a consultation's video needs this (360p at 15 fps or better). */
export const VIDEO_KBPS = 500;
/** Each way, audio alone needs this (Opus with FEC and overhead). */
export const AUDIO_KBPS = 64;
/** Above this loss (after the relay's repair), video is not usable. */
const VIDEO_MAX_LOSS_PCT = 10;

export type Verdict = 'video' | 'audio_only' | 'not_enough';

export interface LineTestResult extends LineMeasurementInput {
  verdict: Verdict;
}

/** Progress: seconds done of LINE_TEST_SECONDS, and the latest figures. */
export type Progress = (done: number, latest: Sample) => void;

interface Sample {
  downKbps: number | null;
  upKbps: number | null;
  rttMs: number | null;
}

/** The plain verdict for a measured line. */
export function verdict(downKbps: number, upKbps: number, lossPct: number): Verdict {
  const slowest = Math.min(downKbps, upKbps);
  if (slowest >= VIDEO_KBPS && lossPct <= VIDEO_MAX_LOSS_PCT) return 'video';
  if (slowest >= AUDIO_KBPS) return 'audio_only';
  return 'not_enough';
}

/** Runs the test on the authenticated WebSocket `sig`, leaves the test room, and returns the figures. */
export async function runLineTest(sig: SignalingClient, user: User, progress: Progress): Promise<LineTestResult> {
  const started = performance.now();
  const session = await startLineTestSession(sig, user);
  const samples: Sample[] = [];
  try {
    for (let s = 1; s <= LINE_TEST_SECONDS; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      if (session.lastError) throw session.lastError;
      if (session.connectionState() === 'failed' || session.connectionState() === 'closed') {
        throw new Error(`the test connection ${session.connectionState()}`);
      }
      const sample = await takeSample(session);
      samples.push(sample);
      progress(s, sample);
    }
    if (session.connectionState() !== 'connected') {
      throw new Error(`the test connection to the relay did not come up (${session.connectionState()})`);
    }
    const settled = samples.slice(-SETTLED_SAMPLES);
    // The result is read from the last samples, so they must have both estimates.
    if (!settled.some((x) => x.downKbps !== null)) throw new Error('the relay sent no estimate of the downlink');
    if (!settled.some((x) => x.upKbps !== null)) throw new Error('the browser gave no estimate of the uplink');
    const end = await pathStats(session.call.pc);
    const best = (f: (x: Sample) => number | null) => Math.max(0, ...settled.map(f).filter((v): v is number => v !== null));
    const rtts = samples.map((x) => x.rttMs).filter((v): v is number => v !== null);
    const down = Math.round(best((x) => x.downKbps));
    const up = Math.round(best((x) => x.upKbps));
    const lossPct = end.expected > 0 ? (100 * end.lost) / end.expected : 0;
    return {
      source: 'browser',
      down_kbps: down,
      up_kbps: up,
      rtt_ms: rtts.length ? Math.min(...rtts) : 0,
      jitter_ms: end.jitterMs,
      loss_pct: Math.round(lossPct * 100) / 100,
      elapsed_ms: Math.round(performance.now() - started),
      bytes_sent: end.bytesSent,
      bytes_received: end.bytesReceived,
      verdict: verdict(down, up, lossPct),
    };
  } finally {
    await session.leave();
  }
}

async function takeSample(session: Session): Promise<Sample> {
  const path = await pathStats(session.call.pc);
  return {
    downKbps: session.quality ? session.quality.estimate_kbps : null,
    upKbps: path.availableOutgoingKbps,
    rttMs: path.rttMs,
  };
}

interface PathStats {
  availableOutgoingKbps: number | null;
  rttMs: number | null;
  bytesSent: number;
  bytesReceived: number;
  jitterMs: number;
  lost: number;
  expected: number;
}

async function pathStats(pc: RTCPeerConnection): Promise<PathStats> {
  const all = [...(await pc.getStats()).values()] as Record<string, unknown>[];
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const transport = all.find((s) => s.type === 'transport');
  const pair =
    all.find((s) => s.type === 'candidate-pair' && s.id === transport?.selectedCandidatePairId) ??
    all.find((s) => s.type === 'candidate-pair' && s.nominated === true && s.state === 'succeeded');
  const inbound = all.filter((s) => s.type === 'inbound-rtp');
  let lost = 0;
  let received = 0;
  let jitter = 0;
  for (const s of inbound) {
    lost += Math.max(0, num(s.packetsLost) ?? 0);
    received += num(s.packetsReceived) ?? 0;
    if (s.kind === 'video') jitter = Math.max(jitter, num(s.jitter) ?? 0);
  }
  const outgoing = num(pair?.availableOutgoingBitrate);
  const rtt = num(pair?.currentRoundTripTime);
  return {
    availableOutgoingKbps: outgoing === null ? null : outgoing / 1000,
    rttMs: rtt === null ? null : Math.round(rtt * 10000) / 10,
    bytesSent: num(pair?.bytesSent) ?? 0,
    bytesReceived: num(pair?.bytesReceived) ?? 0,
    jitterMs: Math.round(jitter * 10000) / 10,
    lost,
    expected: lost + received,
  };
}
