// Benchmark (not a test): the Chromium variant of `loadtest bwe`. A consultation's video over a county line
// emulated by `loadtest link`, received by headless Chromium, in three modes:
//
// - `on`: through the relay with its end-to-end rate control (steering);
// - `remb`: as `on`, and the relay also caps the publisher with REMB carrying its total (`telemed --remb`);
// - `off`: through the relay with `--no-steering` (simulcast layers only);
// - `p2p`: the reference, Chromium to Chromium peer-to-peer over the same emulated line, no relay: one
//   camera stream that Chromium's own estimator and encoder adapt, as in a plain WebRTC call.
//
// The county doctor's Chromium reaches the specialist's side (the relay, advertised at 127.0.0.2, or in p2p
// the specialist's Chromium, whose only candidate we rewrite to the emulator) through the emulator. The
// specialists sit at east centres, not behind the county line: through the relay, their Chromium is given
// the relay's real address (127.0.0.1) instead of the advertised one, so their media does not cross the
// emulator (as `loadtest bwe`'s bots are rerouted). Scenarios (`--scenario`), those of `loadtest bwe`, with
// the county site's line budget set to the line's capacity as `loadtest bwe` does:
// - `rmcat-5.1`: downlink capacity on the RFC 8867 §5.1 schedule (1.0 → 2.5 at 40 s → 0.6 at 60 s → 1.0 Mbit/s
//   at 80 s, for 100 s), 50 ms one way, 300 ms drop-tail queue, uplink not limited;
// - `lossy-768k`: 768 kbit/s each way, 50 ms one way, 5 % random loss each way, 60 s;
// - `county-512k`: 512 kbit/s each way, 30 ms one way, 1 % loss in bursts of 3 packets on average, two of the
//   county doctor's Chromiums watching one consultation, 60 s;
// - `two-consults`: 2 Mbit/s down, 25 ms one way, two consultations from the county (the second an emergency,
//   with `specialist2`), one Chromium each, 60 s.
// The peer-to-peer reference exists for the one-viewer scenarios only (the emulator forwards to one address).
// The county doctor sends no video (so the line carries only what it receives). Every second we read each
// county viewer's getStats; per segment we print the issue's `loadtest bwe` fields (utilization = received
// audio + video payload of all county viewers, less retransmissions, over the capacity, from reconvergence to
// the segment's end; queue delays from the link emulator; a switch is a change of the decoded height or of the
// relay's layer between two samples; with several viewers, the worst viewer's fps and height, all viewers'
// freezes and the busiest viewer's switches, as `loadtest bwe` does) and Chromium's own (frames decoded,
// total freeze time, mean jitter-buffer delay), plus an HTML plot of capacity, received bitrate and queue
// delay. The specialist's camera is a noisy clip (see `--camera`).
//
// In the steering modes it also measures how fast the publisher follows a lowered cap: the relay logs every
// instruction (`steering`, with each layer's maxBitrate; with `--remb` the REMB carrying their total goes in the
// same instant), the specialist's getStats is read every 50 ms, and for each instruction that lowers the total
// of the active layers by more than 20 % the reaction is the time until the sum of its encoders'
// `targetBitrate` is within 5 % of the new total (not counted when a newer instruction comes first; `null` when
// it does not happen within 5 s).
//
//   node bench/steering.mjs [--scenario rmcat-5.1|lossy-768k|county-512k|two-consults] [--modes on,remb,off,p2p]
//       [--camera texture720|texture360|fake] [--warmup 30] [--out FILE.html]
//
// Needs the release build (TELEMED_BIN, LOADTEST_BIN default to ../target/release/*) and the web build.

import { existsSync } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOADTEST, TELEMED, arg, freeUdpPort, start } from './harness.mjs';
import { openBrowser, poll, senderEncodings } from '../tests/browser.mjs';
import { webRoot } from '../tests/server.mjs';
import { DOCTOR, SPECIALIST, acceptOffer, joinRoom, login, setAvailable, submitRequest } from '../tests/workflow-steps.mjs';

/** The demo's specialists: the first consultation's (cardiology) and the second's (neurology). */
const SPECIALISTS = [
  { user: SPECIALIST, specialty: 'cardiology' },
  { user: { username: 'specialist2', password: 'demo-specialist2', role: 'specialist' }, specialty: 'neurology' },
];
/** The county doctor's site, whose line budget a scenario sets. */
const COUNTY_SITE = 'county-renhe';

const modes = arg('modes', 'on,off,p2p').split(',');
const warmup = Number(arg('warmup', '30'));
const out = arg('out', join(tmpdir(), 'telemed-steering.html'));
// `texture720` (default): a 1280x720 clip of panning fine detail (see `noiseClip`), which can use every
// bit a county line has; `texture360`: the same at 640x360 (cheaper to encode, but the relay's resolution
// steps assume a 720p camera, so its layers come out at a quarter of the pixels); `fake`: Chromium's own
// fake camera (cheap, but its simple picture needs only about 400 kbit/s at 360p and 1.1 Mbit/s at 720p,
// so it cannot fill a line).
const camera = arg('camera', 'texture720');
const CLIPS = { texture360: [640, 360], texture720: [1280, 720] };

// Capacity steps (start s, kbit/s), length (s), the emulator's settings besides the downlink schedule, the
// county site's line budget (kbit/s) and the consultations (county viewers each; the emergency one).
const ONE = [{ viewers: 1, emergency: false }];
const SCENARIOS = {
  // RFC 8867 §5.1.
  'rmcat-5.1': {
    steps: [
      [0, 1000],
      [40, 2500],
      [60, 600],
      [80, 1000],
    ],
    duration: 100,
    link: ['--delay', '50ms', '--queue', '300ms'],
    budget: 2500,
    consultations: ONE,
  },
  'lossy-768k': {
    steps: [[0, 768]],
    duration: 60,
    link: ['--up-rate', '768k', '--delay', '50ms', '--queue', '300ms', '--loss', '5%'],
    budget: 768,
    consultations: ONE,
  },
  'county-512k': {
    steps: [[0, 512]],
    duration: 60,
    link: ['--up-rate', '512k', '--delay', '30ms', '--queue', '300ms', '--burst-loss', '1%:3'],
    budget: 512,
    consultations: [{ viewers: 2, emergency: false }],
  },
  'two-consults': {
    steps: [[0, 2000]],
    duration: 60,
    link: ['--delay', '25ms', '--queue', '300ms'],
    budget: 2000,
    consultations: [
      { viewers: 1, emergency: false },
      { viewers: 1, emergency: true },
    ],
  },
};
const scenario = arg('scenario', 'rmcat-5.1');
if (!SCENARIOS[scenario]) throw new Error(`--scenario ${scenario}: ${Object.keys(SCENARIOS).join(' or ')}`);
const { steps: STEPS, duration: DURATION, consultations: CONSULTATIONS } = SCENARIOS[scenario];
const oneViewer = CONSULTATIONS.length === 1 && CONSULTATIONS[0].viewers === 1;
/** Each mode's arguments to telemed (`null`: peer to peer, no relay). */
const MODE_ARGS = { on: [], remb: ['--remb'], off: ['--no-steering'], p2p: null };
for (const mode of modes) if (!(mode in MODE_ARGS)) throw new Error(`--modes: ${Object.keys(MODE_ARGS).join(', ')}, not ${mode}`);
if (modes.includes('p2p') && !oneViewer) {
  throw new Error(`--modes p2p: the peer-to-peer reference needs one consultation with one viewer, not ${scenario}`);
}
const steered = (mode) => mode === 'on' || mode === 'remb';

/**
 * A 4 s clip made once: a texture of fine random detail that pans (3 px a frame) under a moving bar.
 * Every pixel moves, and the detail takes as many bits as a line offers, yet motion compensation can
 * follow it, so the encoder can also meet a low target, as with a camera. (Fresh noise in every frame
 * cannot be predicted: below a few Mbit/s the encoder overshoots whatever it is asked for.)
 */
async function noiseClip(w, h) {
  const path = join(tmpdir(), `telemed-bench-texture-${w}x${h}.y4m`);
  if (existsSync(path)) return path;
  // Written aside and renamed when complete, so an interrupted run leaves no truncated clip.
  const partial = `${path}.${process.pid}.part`;
  const f = await open(partial, 'w');
  await f.write(`YUV4MPEG2 W${w} H${h} F30:1 Ip A1:1 C420jpeg\n`);
  const frames = 120;
  const tw = w + frames * 3;
  const texture = randomBytes(tw * h);
  for (let i = 0; i < frames; i++) {
    const y = Buffer.alloc(w * h);
    for (let row = 0; row < h; row++) texture.copy(y, row * w, row * tw + i * 3, row * tw + i * 3 + w);
    for (let row = 0; row < h; row++) {
      const x0 = (i * Math.round(w / 64) + row) % w;
      y.fill(235, row * w + x0, row * w + Math.min(w, x0 + Math.round(w / 16)));
    }
    const c = Buffer.alloc((w / 2) * (h / 2), 128);
    await f.write('FRAME\n');
    await f.write(y);
    await f.write(c);
    await f.write(c);
  }
  await f.close();
  await rename(partial, path);
  return path;
}

/** What the county receives, cumulative, read from its getStats. */
async function countyStats(page) {
  return page.evaluate(async () => {
    const pc = window.__telemed?.pc;
    if (!pc) return null;
    const all = [...(await pc.getStats()).values()];
    const sum = (kind, key) => all.filter((s) => s.type === 'inbound-rtp' && s.kind === kind).reduce((a, s) => a + (s[key] ?? 0), 0);
    const video = all.filter((s) => s.type === 'inbound-rtp' && s.kind === 'video').sort((a, b) => (b.bytesReceived ?? 0) - (a.bytesReceived ?? 0))[0];
    return {
      media_bytes: sum('video', 'bytesReceived') - sum('video', 'retransmittedBytesReceived') + sum('audio', 'bytesReceived'),
      frames: video?.framesDecoded ?? 0,
      height: video?.frameHeight ?? 0,
      freezes: video?.freezeCount ?? 0,
      freeze_s: video?.totalFreezesDuration ?? 0,
      jitter_buffer_s: video?.jitterBufferDelay ?? 0,
      jitter_emitted: video?.jitterBufferEmittedCount ?? 0,
      nacks: video?.nackCount ?? 0,
      plis: video?.pliCount ?? 0,
      packets: video?.packetsReceived ?? 0,
      lost: video?.packetsLost ?? 0,
      // What a listener hears: samples the audio jitter buffer had to conceal (lost or late), all streams.
      audio_samples: sum('audio', 'totalSamplesReceived'),
      audio_concealed: sum('audio', 'concealedSamples'),
      audio_concealments: sum('audio', 'concealmentEvents'),
      layer: document.querySelector('[data-testid="tile-quality"]')?.getAttribute('data-layer') ?? null,
    };
  });
}

/** The sum of the specialist's video encoders' targets (bit/s), from its getStats. */
async function encoderTarget(page) {
  return page.evaluate(async () => {
    const pc = window.__telemed?.pc;
    if (!pc) return null;
    let sum = 0;
    for (const s of (await pc.getStats()).values()) if (s.type === 'outbound-rtp' && s.kind === 'video') sum += s.targetBitrate ?? 0;
    return sum;
  });
}

/** The relay's instructions to the publisher from its debug log: [wall ms, total of the active layers, bit/s]. */
function instructions(lines) {
  const out = [];
  for (const line of lines) {
    const t = Date.parse(line.slice(0, line.indexOf(' ')));
    if (!Number.isFinite(t)) continue;
    out.push([t, [...line.matchAll(/active: true, max_bitrate_bps: (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0)]);
  }
  return out;
}

/** Reaction times (ms) of the encoders' target to each instruction lowering the total by over 20 %. */
function reactions(instr, targets) {
  const out = [];
  for (let i = 1; i < instr.length; i++) {
    const [t, total] = instr[i];
    if (total >= 0.8 * instr[i - 1][1]) continue;
    const hit = targets.find(([ts, bps]) => ts >= t && bps <= 1.05 * total);
    const next = i + 1 < instr.length ? instr[i + 1][0] : Infinity;
    if (hit && hit[0] > next) continue;
    if (!hit && next < t + 5000) continue;
    out.push(hit && hit[0] - t <= 5000 ? hit[0] - t : null);
  }
  return out;
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};
const mean = (v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);

/** Received media rate (kbit/s), frame rate and height between one viewer's one-second samples. */
function rates(samples) {
  const rate = [];
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    const dt = b.t - a.t;
    if (dt <= 0) continue;
    rate.push({ t: b.t, kbps: ((b.media_bytes - a.media_bytes) * 8) / dt / 1000, fps: (b.frames - a.frames) / dt, height: b.height });
  }
  return rate;
}

/** One viewer's video figures in the segment [s, e] (t relative to the schedule's start). */
function viewerSegment(samples, rate, s, e) {
  const inSeg = rate.filter((r) => r.t > s && r.t <= e);
  const first = samples.find((x) => x.t >= s);
  const last = [...samples].reverse().find((x) => x.t <= e);
  const seen = samples.filter((x) => x.t > s && x.t <= e && x.height > 0);
  const switches = seen.filter((x, j) => j > 0 && (x.height !== seen[j - 1].height || x.layer !== seen[j - 1].layer)).length;
  const delta = (key) => (first && last ? last[key] - first[key] : null);
  return {
    received_kbps: Number((mean(inSeg.map((r) => r.kbps)) ?? 0).toFixed(1)),
    fps: Number((mean(inSeg.map((r) => r.fps)) ?? 0).toFixed(1)),
    height: median(inSeg.map((r) => r.height)),
    freezes: delta('freezes'),
    switches_per_min: Number(((switches / (e - s)) * 60).toFixed(1)),
    frames_decoded: delta('frames'),
    freeze_duration_s: first && last ? Number(delta('freeze_s').toFixed(2)) : null,
    nacks: delta('nacks'),
    plis: delta('plis'),
    jitter_buffer_ms: delta('jitter_emitted') > 0 ? Number(((1000 * delta('jitter_buffer_s')) / delta('jitter_emitted')).toFixed(0)) : null,
    audio_concealed_pct: delta('audio_samples') > 0 ? Number(((100 * delta('audio_concealed')) / delta('audio_samples')).toFixed(2)) : null,
    audio_concealments: delta('audio_concealments'),
  };
}

/**
 * The issue's per-segment figures from each county viewer's one-second samples (`viewers`: [{ consultation,
 * emergency, samples }], t relative to the schedule's start): the line's utilization and reconvergence from
 * what all viewers received together; the worst viewer's fps and height, every viewer's freezes, frames,
 * NACKs and PLIs, and the busiest viewer's switches, as `loadtest bwe` reports them.
 */
function analyse(viewers, link) {
  const perViewer = viewers.map((v) => rates(v.samples));
  const n = Math.min(...perViewer.map((r) => r.length));
  const rate = Array.from({ length: n }, (_, k) => ({ t: perViewer[0][k].t, kbps: perViewer.reduce((a, r) => a + r[k].kbps, 0) }));
  const segments = [];
  const reconvergence = [];
  const byViewer = viewers.map(() => []);
  const sum = (v) => (v.some((x) => x == null) ? null : v.reduce((a, b) => a + b, 0));
  STEPS.forEach(([s, cap], i) => {
    const e = i + 1 < STEPS.length ? STEPS[i + 1][0] : DURATION;
    const inSeg = rate.filter((r) => r.t > s && r.t <= e);
    const steady = mean(inSeg.filter((r) => r.t > (s + e) / 2).map((r) => r.kbps)) ?? 0;
    // Reconvergence: from the step until the rate stays within 10 % of the segment's steady level.
    let conv = s;
    for (const r of inSeg) if (Math.abs(r.kbps - steady) > 0.1 * steady) conv = r.t;
    if (i > 0) reconvergence.push(Number((conv - s).toFixed(1)));
    const settled = inSeg.filter((r) => r.t > conv);
    const each = viewers.map((v, j) => viewerSegment(v.samples, perViewer[j], s, e));
    each.forEach((x, j) => byViewer[j].push(x));
    const w = link.down.windows[i];
    // What the line delivered over the same seconds (everything: headers, RTCP, padding, retransmissions).
    const delivered = link.down.windows
      .slice(STEPS.length)
      .filter((_, k) => k + 1 > conv && k + 1 <= e)
      .map((x) => x.delivered_kbps);
    const jitter = each.map((x) => x.jitter_buffer_ms).filter((x) => x != null);
    segments.push({
      start_s: s,
      end_s: e,
      capacity_kbps: cap,
      utilization: settled.length ? Number((mean(settled.map((r) => r.kbps)) / cap).toFixed(3)) : null,
      line_utilization: settled.length && delivered.length ? Number((mean(delivered) / cap).toFixed(3)) : null,
      queue_delay_p50_ms: w?.queue_delay_p50_ms ?? null,
      queue_delay_p95_ms: w?.queue_delay_p95_ms ?? null,
      queue_delay_p99_ms: w?.queue_delay_p99_ms ?? null,
      line_lost_packets: w?.lost_packets ?? null,
      line_overflow_packets: w?.overflow_packets ?? null,
      fps: Math.min(...each.map((x) => x.fps)),
      height: Math.min(...each.map((x) => x.height ?? 0)),
      freezes: sum(each.map((x) => x.freezes)),
      switches_per_min: Math.max(...each.map((x) => x.switches_per_min)),
      frames_decoded: sum(each.map((x) => x.frames_decoded)),
      freeze_duration_s: each.some((x) => x.freeze_duration_s == null) ? null : Number(sum(each.map((x) => x.freeze_duration_s)).toFixed(2)),
      nacks: sum(each.map((x) => x.nacks)),
      plis: sum(each.map((x) => x.plis)),
      jitter_buffer_ms: jitter.length ? Math.max(...jitter) : null,
      audio_concealed_pct: each.some((x) => x.audio_concealed_pct == null) ? null : Math.max(...each.map((x) => x.audio_concealed_pct)),
      audio_concealments: sum(each.map((x) => x.audio_concealments)),
    });
  });
  const loss = viewers.map(({ samples }) => {
    const [begin, end] = [samples[0], samples[samples.length - 1]];
    return [end.lost - begin.lost, end.packets - begin.packets];
  });
  return {
    scenario,
    duration_s: DURATION,
    segments,
    reconvergence_s: reconvergence,
    // Chromium does not count these the way the Rust subscriber bot does. Loss is getStats' packetsLost over
    // packets expected, which Chromium counts before repair (a packet recovered by retransmission stays lost).
    undecodable_frames: null,
    audio_gaps_over_60ms: null,
    video_loss_after_repair_pct: Number(((100 * sum(loss.map((l) => l[0]))) / Math.max(1, sum(loss.map((l) => l[1])))).toFixed(2)),
    viewers: viewers.map((v, j) => ({ consultation: v.consultation, emergency: v.emergency, segments: byViewer[j] })),
    rate,
  };
}

/** `sdp` without its candidates, with `candidate` (a whole `a=candidate:` line) in each media section instead. */
function withCandidate(sdp, candidate) {
  const out = [];
  for (const line of sdp.split('\r\n')) {
    if (line.startsWith('a=candidate') || line === 'a=end-of-candidates') continue;
    out.push(line);
    if (candidate && line.startsWith('c=')) out.push(candidate, 'a=end-of-candidates');
  }
  return out.join('\r\n');
}

/**
 * The peer-to-peer reference: the specialist's Chromium offers its camera and microphone; the county's only
 * candidate for it is the emulator, which forwards to the specialist's own UDP port, and the specialist is
 * given no candidate of the county's, so it answers the county where the emulator's packets come from. Starts
 * the emulator (`startLink(forward, port)`) once the specialist's port is known and returns it.
 */
async function connectP2p(county, spec, url, startLink) {
  await county.page.goto(url);
  await spec.page.goto(url);
  const offer = await spec.page.evaluate(async () => {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720, frameRate: 30 } });
    const pc = new RTCPeerConnection();
    for (const t of stream.getTracks()) pc.addTrack(t, stream);
    window.__p2p = pc;
    const gathered = new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
    await pc.setLocalDescription(await pc.createOffer());
    // Loopback candidates gather at once; the offer is sent with what there is after 10 s at most.
    if (pc.iceGatheringState !== 'complete') await Promise.race([gathered, new Promise((r) => setTimeout(r, 10_000))]);
    return pc.localDescription.sdp;
  });
  const host = offer.match(/^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/m);
  if (!host) throw new Error('the specialist\'s Chromium offered no UDP host candidate on 127.0.0.1');
  const port = await freeUdpPort();
  const link = startLink(`127.0.0.1:${host[1]}`, port);
  const answer = await county.page.evaluate(async (sdp) => {
    const pc = new RTCPeerConnection();
    window.__telemed = { pc };
    // Played, as in the room, so that Chromium decodes and counts freezes as it would on screen.
    pc.addEventListener('track', (e) => {
      const v = document.createElement('video');
      v.autoplay = true;
      v.muted = true;
      v.srcObject = e.streams[0];
      document.body.append(v);
    });
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    return pc.localDescription.sdp;
  }, withCandidate(offer, `a=candidate:1 1 udp 2122260223 127.0.0.2 ${port} typ host`));
  await spec.page.evaluate((sdp) => window.__p2p.setRemoteDescription({ type: 'answer', sdp }), withCandidate(answer, null));
  if (!(await poll(() => county.page.evaluate(() => window.__telemed.pc.connectionState === 'connected'), { timeout: 20_000 }))) {
    throw new Error('the peer-to-peer call did not connect through the emulator');
  }
  return link;
}

/** `method path` on telemed's API with a bearer `token`; the JSON answer, or an error naming the call. */
async function api(url, token, method, path, body) {
  const response = await fetch(`${url}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** Sets the county site's line budget (its configured capacity) as the demo operator. */
async function setCountyBudget(url, kbps) {
  const { token } = await api(url, null, 'POST', '/login', { username: 'operator', password: 'demo-operator' });
  const sites = await api(url, token, 'GET', '/sites');
  const site = (sites.sites ?? sites).find((x) => x.id === COUNTY_SITE);
  if (!site) throw new Error(`no site ${COUNTY_SITE}`);
  await api(url, token, 'PUT', `/sites/${COUNTY_SITE}`, { ...site, line_capacity_kbps: kbps });
}

/**
 * Gives a specialist's page the relay's real address (127.0.0.1) wherever the relay advertises the
 * emulator's (127.0.0.2), so that its media reaches the relay directly: the centres are not behind the
 * county line. The relay matches datagrams to its advertised candidate, not to the address they reach.
 */
async function bypassEmulator(page) {
  await page.addInitScript(() => {
    const direct = (text) => text.replace(/ 127\.0\.0\.2 (\d+) typ /g, ' 127.0.0.1 $1 typ ');
    const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
    RTCPeerConnection.prototype.setRemoteDescription = function (d, ...rest) {
      return setRemote.call(this, d?.sdp ? { type: d.type, sdp: direct(d.sdp) } : d, ...rest);
    };
    const addCandidate = RTCPeerConnection.prototype.addIceCandidate;
    RTCPeerConnection.prototype.addIceCandidate = function (c, ...rest) {
      const init = c && typeof c.toJSON === 'function' ? c.toJSON() : c;
      return addCandidate.call(this, init?.candidate ? { ...init, candidate: direct(init.candidate) } : c, ...rest);
    };
  });
}

async function once(mode, clip) {
  const schedule = STEPS.map(([s, c]) => `${s === 0 ? 0 : s + warmup}:${c}k`).join(',');
  // Windows: the segments, then every second (for the plot).
  const windows = [
    ...STEPS.map(([s], i) => `${s + warmup}:${(i + 1 < STEPS.length ? STEPS[i + 1][0] : DURATION) + warmup}`),
    ...Array.from({ length: DURATION }, (_, i) => `${warmup + i}:${warmup + i + 1}`),
  ].join(',');
  let linkStart = 0;
  const startLink = (forward, port) => {
    linkStart = Date.now();
    return start(LOADTEST, [
      'link', '--listen', `127.0.0.2:${port}`, '--forward', forward, '--down-schedule', schedule, ...SCENARIOS[scenario].link,
      '--windows', windows, '--duration', String(warmup + DURATION + 2), '--json',
    ]);
  };
  const port = await freeUdpPort();
  let link = mode === 'p2p' ? null : startLink(`127.0.0.1:${port}`, port);
  const dataDir = await mkdtemp(join(tmpdir(), 'telemed-bench-'));
  const server = start(
    TELEMED,
    [
      '--listen', '127.0.0.1:0', '--probe-listen', '127.0.0.1:0', '--media-udp', `127.0.0.1:${port}`, '--no-tcp', '--public-ip', '127.0.0.2',
      '--web-root', webRoot, '--data-dir', dataDir, '--json', ...(MODE_ARGS[mode] ?? []),
    ],
    steered(mode) ? { env: { RUST_LOG: 'warn,media_relay::worker=debug' }, keep: /media_relay::worker: steering / } : {},
  );
  // Peer to peer, Chromium must offer its real loopback address, not an mDNS name.
  const p2pArgs = mode === 'p2p' ? ['--disable-features=WebRtcHideLocalIpsWithMdns'] : [];
  const browsers = [];
  const launch = async (name, args) => {
    const b = await openBrowser(name, { args });
    browsers.push(b);
    return b;
  };
  try {
    // Per consultation: its specialist's browser and its county viewers' browsers.
    const consultations = [];
    for (const [i, plan] of CONSULTATIONS.entries()) {
      const spec = await launch(`bench-specialist-${i}`, [...p2pArgs, ...(clip ? [`--use-file-for-fake-video-capture=${clip}`] : [])]);
      if (mode !== 'p2p') await bypassEmulator(spec.page);
      const viewers = [];
      for (let v = 0; v < plan.viewers; v++) viewers.push(await launch(`bench-county-${i}-${v}`, p2pArgs));
      consultations.push({ ...plan, spec, viewers });
    }
    if (!(await poll(async () => server.out().includes('\n'), { timeout: 20_000 }))) throw new Error('telemed did not start');
    const url = `http://${JSON.parse(server.out().split('\n')[0]).http}`;
    if (mode === 'p2p') {
      link = await connectP2p(consultations[0].viewers[0], consultations[0].spec, url, startLink);
    } else {
      await setCountyBudget(url, SCENARIOS[scenario].budget);
      for (const [i, c] of consultations.entries()) {
        const { user, specialty } = SPECIALISTS[i];
        const [first, ...others] = c.viewers;
        await login(first.page, url, DOCTOR);
        const id = await submitRequest(first.page, {
          pseudonym: `BENCH-STEER-${mode}-${i}`,
          specialty,
          urgency: c.emergency ? 'emergency' : 'urgent',
        });
        await login(c.spec.page, url, user);
        await setAvailable(c.spec.page, true);
        await acceptOffer(c.spec.page, id);
        for (const v of others) await login(v.page, url, DOCTOR);
        for (const v of c.viewers) await joinRoom(v.page, id);
        await joinRoom(c.spec.page, id);
        // The county sends no video: its line carries only what it receives.
        for (const v of c.viewers) {
          await v.page.evaluate(async () => {
            const sender = window.__telemed?.pc?.getSenders().find((s) => s.track?.kind === 'video');
            await sender?.replaceTrack(null);
          });
        }
      }
    }
    const t0 = linkStart + warmup * 1000;
    if (Date.now() > t0) throw new Error(`setup took longer than the ${warmup} s warm-up`);
    await new Promise((r) => setTimeout(r, t0 - Date.now()));
    const viewers = consultations.flatMap((c, i) => c.viewers.map((v) => ({ consultation: i, emergency: c.emergency, page: v.page, samples: [] })));
    const spec = consultations[0].spec;
    const encoder = [];
    const targets = [];
    // The publisher's reaction is measured for one consultation only: the relay's log does not say which
    // publisher an instruction is for in a form this script reads.
    const reacting = steered(mode) && consultations.length === 1;
    let sampling = reacting;
    const sampler = (async () => {
      while (sampling) {
        const v = await encoderTarget(spec.page);
        if (v != null) targets.push([Date.now(), v]);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    while (Date.now() < t0 + DURATION * 1000 + 500) {
      for (const v of viewers) {
        const s = await countyStats(v.page);
        if (s) v.samples.push({ t: (Date.now() - t0) / 1000, ...s });
      }
      if (mode !== 'p2p') {
        const f = (await senderEncodings(spec.page)).find((e) => e.rid === 'f');
        encoder.push({ t: (Date.now() - t0) / 1000, ...f });
      }
      await new Promise((r) => setTimeout(r, 1000 - ((Date.now() - t0) % 1000)));
    }
    sampling = false;
    await sampler;
    await link.exited;
    const report = JSON.parse(link.out());
    const result = analyse(viewers, report);
    result.mode = mode;
    if (reacting) result.publisher_reaction_ms = reactions(instructions(server.err()), targets);
    result.queue_p95_per_s = report.down.windows.slice(STEPS.length).map((w) => w.queue_delay_p95_ms);
    result.encoder = encoder;
    return result;
  } finally {
    for (const b of browsers) await b.close();
    server.child.kill('SIGTERM');
    link?.child.kill('SIGTERM');
    await rm(dataDir, { recursive: true, force: true });
  }
}

const MODE_NAMES = {
  on: 'relay, steering on',
  remb: 'relay, steering on, with REMB',
  off: 'relay, steering off',
  p2p: 'Chromium peer to peer (reference)',
};

function plot(results) {
  const W = 900;
  const H = 260;
  const x = (t) => 40 + (t / DURATION) * (W - 60);
  const y = (kbps) => H - 30 - (kbps / 3000) * (H - 50);
  const yq = (ms) => H - 30 - (ms / 300) * (H - 50);
  const line = (pts, color) => `<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.map(([a, b]) => `${x(a).toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`;
  const capacity = [];
  STEPS.forEach(([s, c], i) => {
    const e = i + 1 < STEPS.length ? STEPS[i + 1][0] : DURATION;
    capacity.push([s, y(c)], [e, y(c)]);
  });
  const charts = results.map((r) => `
<h2>${MODE_NAMES[r.mode]}</h2>
<svg width="${W}" height="${H}" style="border:1px solid #ccc">
  ${line(capacity, '#999')}
  ${line(r.rate.map((p) => [p.t, y(p.kbps)]), '#1565c0')}
  ${line(r.queue_p95_per_s.map((q, i) => [i + 1, yq(q ?? 0)]), '#c62828')}
  <text x="45" y="15" font-size="12">grey: capacity; blue: received media kbit/s (0–3000); red: queue delay p95 per second, ms (0–300)</text>
</svg>`);
  return `<!doctype html><meta charset="utf-8"><title>Telemed, ${scenario} with Chromium</title><body style="font-family:sans-serif">
<h1>${scenario}, Chromium subscriber</h1>${charts.join('\n')}</body>`;
}

if (camera !== 'fake' && !CLIPS[camera]) throw new Error(`--camera ${camera}: texture720, texture360 or fake`);
const clip = CLIPS[camera] ? await noiseClip(...CLIPS[camera]) : null;
const results = [];
for (const mode of modes) {
  const r = await once(mode, clip);
  results.push(r);
  const { rate, encoder, queue_p95_per_s, ...summary } = r;
  console.log(JSON.stringify(summary));
}
await writeFile(out, plot(results));
console.log(`\nplot: ${out}\n`);
console.log(
  '| mode | segment | capacity kbit/s | utilization | line utilization | queue p50 / p95 / p99 ms | fps | height | freezes (total s) | switches/min | reconvergence s | jitter buffer ms |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  r.segments.forEach((s, i) => {
    const q = [s.queue_delay_p50_ms, s.queue_delay_p95_ms, s.queue_delay_p99_ms].map((v) => (v == null ? '–' : v.toFixed(0))).join(' / ');
    console.log(
      `| ${MODE_NAMES[r.mode]} | ${s.start_s}–${s.end_s} s | ${s.capacity_kbps} | ${s.utilization ?? '–'} | ${s.line_utilization ?? '–'} | ${q} | ${s.fps} | ${s.height} | ${s.freezes} (${s.freeze_duration_s}) | ${s.switches_per_min} | ${i === 0 ? '–' : r.reconvergence_s[i - 1]} | ${s.jitter_buffer_ms ?? '–'} |`,
    );
  });
}
for (const r of results.filter((x) => x.viewers.length > 1)) {
  r.viewers.forEach((v, j) => {
    const segs = v.segments.map((s) => `${s.received_kbps} kbit/s, ${s.height}p at ${s.fps} fps, ${s.freezes} freezes, ${s.switches_per_min} switches/min`);
    console.log(`${MODE_NAMES[r.mode]}, viewer ${j + 1} (consultation ${v.consultation + 1}${v.emergency ? ', emergency' : ''}): ${segs.join('; ')}`);
  });
}
for (const r of results.filter((x) => x.publisher_reaction_ms)) {
  const got = r.publisher_reaction_ms.filter((v) => v != null);
  console.log(
    `${MODE_NAMES[r.mode]}: the encoders followed ${got.length} of ${r.publisher_reaction_ms.length} lowered caps; ` +
      `median ${median(got) ?? '–'} ms, max ${got.length ? Math.max(...got) : '–'} ms`,
  );
}
process.exit(0);
