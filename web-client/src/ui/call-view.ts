// The call in the room: local and remote video tiles, the connection state
// and the call controls.
//
// Test ids: `local-video`, `remote-tile` and `remote-video` (one each per
// remote participant, with `data-participant-id`), `connection-state`
// (`data-state` `connecting`|`connected`|`disconnected`|`failed`|`closed`,
// `data-pc-state`, `data-media-state`), `self-name` (`data-display-name`),
// `mute` and `camera` (`data-state` `on`|`off`), `leave`, `back` (after the
// connection is lost), `room-notice` (`data-code`), `quality` (what the relay
// sends us: `data-reason`, `data-estimate-kbps`), and on each remote tile
// `tile-quality` (`data-layer`, `data-target`).

import { errorText, onLangChange, t } from '../i18n';
import type { Session } from '../session';
import { h, type Page } from './dom';

export interface CallViewOptions {
  /** The user left (or gave up after the connection was lost): back to the dashboard. */
  onExit(): void;
}

interface RemoteTile {
  el: HTMLElement;
  video: HTMLVideoElement;
  label: HTMLElement;
  quality: HTMLElement;
  placeholder: HTMLElement;
  stream: MediaStream | null;
}

function attach(video: HTMLVideoElement, stream: MediaStream | null): void {
  if (video.srcObject === stream) return;
  video.srcObject = stream;
  if (stream) video.play().catch(() => undefined); // autoplay may wait for a gesture
}

/**
 * A layer name from the relay (`h/t2`) as a doctor reads it: resolution and frame rate. The height is
 * the one being decoded when known (`decodedHeight`): the relay steers a layer's resolution, so `f` is
 * not always 720p.
 */
function layerText(layer: string, decodedHeight: number): string {
  const [spatial, temporal] = layer.split('/');
  const height = decodedHeight || ({ q: 180, h: 360, f: 720 }[spatial ?? ''] ?? 0);
  const fps = { t0: 7.5, t1: 15, t2: 30 }[temporal ?? ''] ?? 0;
  return t('quality.layer', { height: String(height), fps: String(fps) });
}

export function callView(session: Session, opts: CallViewOptions): Page {
  const you = h('span', { class: 'self-name', 'data-testid': 'self-name' });
  const stateLabel = h('span', { class: 'state-label' });
  const state = h('span', { class: 'state', 'data-testid': 'connection-state', role: 'status' });
  const quality = h('span', { class: 'quality', 'data-testid': 'quality', hidden: true });
  const topbar = h(
    'div',
    { class: 'room-bar' },
    h('div', { class: 'room-title' }, you),
    h('div', { class: 'room-state' }, stateLabel, state, quality),
  );

  const localVideo = h('video', {
    class: 'mirror',
    'data-testid': 'local-video',
    autoplay: true,
    playsinline: true,
    muted: true,
  });
  localVideo.muted = true;
  attach(localVideo, session.call.localStream);
  const localLabel = h('div', { class: 'tile-label' });
  const localOff = h('div', { class: 'tile-placeholder', hidden: true });
  const localTile = h('div', { class: 'tile tile-local' }, localVideo, localOff, localLabel);

  const waiting = h('div', { class: 'tile tile-waiting' });
  const grid = h('div', { class: 'tiles' }, localTile, waiting);
  const notice = h('div', { class: 'notice', role: 'alert', 'data-testid': 'room-notice', hidden: true });
  const banner = h('div', { class: 'banner', role: 'alert', hidden: true });
  const bannerText = h('p');
  const back = h('button', { type: 'button', class: 'btn btn-primary btn-large', 'data-testid': 'back' });
  banner.append(bannerText, back);

  const mute = h('button', { type: 'button', class: 'btn btn-large', 'data-testid': 'mute' });
  const camera = h('button', { type: 'button', class: 'btn btn-large', 'data-testid': 'camera' });
  const leave = h('button', { type: 'button', class: 'btn btn-danger btn-large', 'data-testid': 'leave' });
  const controls = h('div', { class: 'controls' }, mute, camera, leave);

  const tiles = new Map<string, RemoteTile>();

  const makeTile = (pid: string): RemoteTile => {
    const video = h('video', {
      'data-testid': 'remote-video',
      'data-participant-id': pid,
      autoplay: true,
      playsinline: true,
    });
    const label = h('div', { class: 'tile-label' });
    const quality = h('div', { class: 'tile-quality', 'data-testid': 'tile-quality', hidden: true });
    const placeholder = h('div', { class: 'tile-placeholder' });
    const el = h(
      'div',
      { class: 'tile', 'data-testid': 'remote-tile', 'data-participant-id': pid },
      video,
      placeholder,
      label,
      quality,
    );
    return { el, video, label, quality, placeholder, stream: null };
  };

  const updateTiles = () => {
    const visible = session.visibleParticipants();
    const keep = new Set(visible.map((p) => p.participant_id));
    for (const [pid, tile] of tiles) {
      if (!keep.has(pid)) {
        attach(tile.video, null);
        tile.el.remove();
        tiles.delete(pid);
      }
    }
    for (const p of visible) {
      let tile = tiles.get(p.participant_id);
      if (!tile) {
        tile = makeTile(p.participant_id);
        tiles.set(p.participant_id, tile);
        grid.append(tile.el);
      }
      tile.label.textContent = p.display_name;
      tile.video.setAttribute('aria-label', p.display_name);
      const stream = session.remoteStreams.get(p.participant_id) ?? null;
      tile.stream = stream;
      attach(tile.video, stream);
      const hasVideo = stream !== null && stream.getVideoTracks().length > 0;
      tile.placeholder.hidden = hasVideo;
      tile.placeholder.textContent = stream ? t('room.no_video') : t('state.connecting');
      const q = session.quality?.video.find((v) => v.participant_id === p.participant_id);
      tile.quality.hidden = !q;
      if (q) {
        tile.quality.dataset.layer = q.layer ?? '';
        tile.quality.dataset.target = q.target ?? '';
        tile.quality.textContent = q.target === null ? t('quality.paused') : layerText(q.layer ?? q.target, tile.video.videoHeight);
      }
    }
    waiting.hidden = tiles.size > 0;
  };

  const update = () => {
    you.textContent = t('room.you', { name: session.user.display_name });
    you.dataset.displayName = session.user.display_name;
    localLabel.textContent = t('room.local_label', { name: session.user.display_name });
    localOff.textContent = t('room.no_video');
    localOff.hidden = session.cameraOn;
    waiting.textContent = t('room.waiting');

    const s = session.connectionState();
    stateLabel.textContent = t('room.state_label');
    state.textContent = t(`state.${s}`);
    state.dataset.state = s;
    state.dataset.pcState = session.pcState;
    state.dataset.mediaState = session.mediaState ?? '';
    state.className = `state state-${s}`;

    mute.textContent = session.microphoneOn ? t('room.mute') : t('room.unmute');
    mute.setAttribute('aria-pressed', String(!session.microphoneOn));
    mute.dataset.state = session.microphoneOn ? 'on' : 'off';
    camera.textContent = session.cameraOn ? t('room.camera_off') : t('room.camera_on');
    camera.setAttribute('aria-pressed', String(!session.cameraOn));
    camera.dataset.state = session.cameraOn ? 'on' : 'off';
    leave.textContent = t('room.leave');
    back.textContent = t('room.back');

    const ended = session.connectionLost || session.removedFromRoom;
    banner.hidden = !ended;
    bannerText.textContent = session.connectionLost ? t('room.closed') : t('room.media_failed');
    mute.disabled = ended;
    camera.disabled = ended;

    const report = session.quality;
    quality.hidden = report === null;
    if (report) {
      quality.dataset.reason = report.reason;
      quality.dataset.estimateKbps = String(report.estimate_kbps);
      quality.className = `quality quality-${report.reason}`;
      quality.textContent = t('quality.summary', {
        reason: t(`quality.${report.reason}`),
        kbps: String(report.available_kbps),
      });
    }

    const err = session.lastError;
    notice.hidden = err === null;
    notice.textContent = err ? errorText(err.code, err.message) : '';
    if (err) notice.dataset.code = err.code;

    updateTiles();
  };

  let exited = false;
  const exit = () => {
    if (exited) return;
    exited = true;
    opts.onExit();
  };

  mute.addEventListener('click', () => session.setMicrophone(!session.microphoneOn));
  camera.addEventListener('click', () => session.setCamera(!session.cameraOn));
  leave.addEventListener('click', async () => {
    leave.disabled = true;
    await session.leave();
    exit();
  });
  back.addEventListener('click', async () => {
    await session.leave();
    exit();
  });

  session.subscribe(update);
  const off = onLangChange(update);
  update();

  const el = h('div', { class: 'call-view' }, topbar, notice, banner, grid, controls);
  return {
    el,
    dispose: () => {
      off();
      session.subscribe(() => undefined);
      for (const tile of tiles.values()) attach(tile.video, null);
      attach(localVideo, null);
    },
  };
}
