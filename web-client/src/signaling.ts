// Typed client for the signaling protocol, version 1 (docs/signaling.md and
// the live updates of docs/http-api.md).

import type { RequestView, UserView } from './api';

export type User = UserView;

export interface Participant {
  participant_id: string;
  display_name: string;
}

export interface TrackInfo {
  mid: string;
  participant_id: string;
  kind: 'audio' | 'video';
}

export type MediaStateValue = 'connecting' | 'connected' | 'disconnected' | 'failed';

/** Why the relay sends a subscriber what it sends. */
export type QualityReason = 'best' | 'line_limited' | 'site_budget' | 'audio_only' | 'no_video';

/** What this participant receives of one publisher's video: layers as `q|h|f/t0..2`, null when paused. */
export interface VideoQuality {
  participant_id: string;
  layer: string | null;
  target: string | null;
}

export interface QualityReport {
  estimate_kbps: number;
  available_kbps: number;
  allocated_kbps: number;
  reason: QualityReason;
  video: VideoQuality[];
}

export type ClientMessage =
  | { type: 'auth'; token: string }
  | { type: 'join'; request_id: string }
  | { type: 'offer'; sdp: string }
  | { type: 'answer'; sdp: string }
  | {
      type: 'candidate';
      candidate: string | null;
      sdp_mid?: string | null;
      sdp_m_line_index?: number | null;
    }
  | { type: 'line_test' }
  | { type: 'leave' }
  | { type: 'ping' };

/** How the relay wants one simulcast layer of our video sent (dynacast and end-to-end rate control). */
export interface LayerPlan {
  rid: string;
  active: boolean;
  max_bitrate_bps: number;
  scale_resolution_down_by: number;
}

export type ServerMessage =
  | { type: 'auth_ok'; user: User }
  | { type: 'request_updated'; request: RequestView }
  | { type: 'offer_made'; request: RequestView }
  | { type: 'paired'; request: RequestView }
  | { type: 'queue_changed'; specialty: string }
  | { type: 'joined'; request_id?: string; room: string; participant_id: string; participants: Participant[] }
  | { type: 'answer'; sdp: string }
  | { type: 'offer'; sdp: string; tracks?: TrackInfo[] }
  | { type: 'participant_joined'; participant: Participant }
  | { type: 'participant_left'; participant_id: string; reason: string }
  | { type: 'media_state'; state: MediaStateValue }
  | ({ type: 'quality' } & QualityReport)
  | { type: 'publisher_layers'; mid: string; layers: LayerPlan[] }
  | { type: 'left' }
  | { type: 'pong' }
  | { type: 'error'; code: string; message: string; request_type?: string };

export type ServerMessageType = ServerMessage['type'];
export type ServerMessageOf<T extends ServerMessageType> = Extract<ServerMessage, { type: T }>;

/** An `error` from the server, or a client-side failure with a code of the same kind. */
export class SignalingError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SignalingError';
  }
}

const PING_INTERVAL_MS = 20_000;
const REQUEST_TIMEOUT_MS = 10_000;

interface Waiter {
  requestType: string;
  expect: ServerMessageType;
  resolve: (msg: ServerMessage) => void;
  reject: (err: SignalingError) => void;
  timer: number;
}

export function defaultSignalingUrl(): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

export class SignalingClient {
  private readonly messageListeners = new Set<(msg: ServerMessage) => void>();
  private readonly closeListeners = new Set<(ev: CloseEvent) => void>();
  private readonly waiters: Waiter[] = [];
  private pingTimer: number | undefined;
  private closedByUs = false;

  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener('message', (ev) => this.onFrame(ev));
    ws.addEventListener('close', (ev) => this.onClosed(ev));
    this.pingTimer = window.setInterval(() => this.send({ type: 'ping' }), PING_INTERVAL_MS);
  }

  /** Opens the WebSocket; rejects with `connect_failed` if it cannot be opened. */
  static connect(url: string = defaultSignalingUrl()): Promise<SignalingClient> {
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        reject(new SignalingError('connect_failed', String(e)));
        return;
      }
      const onOpen = () => {
        ws.removeEventListener('close', onFail);
        resolve(new SignalingClient(ws));
      };
      const onFail = () => {
        ws.removeEventListener('open', onOpen);
        reject(new SignalingError('connect_failed', `cannot open ${url}`));
      };
      ws.addEventListener('open', onOpen, { once: true });
      ws.addEventListener('close', onFail, { once: true });
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** True once `close()` was called (so a close is not an unexpected loss). */
  get wasClosedByUs(): boolean {
    return this.closedByUs;
  }

  send(msg: ClientMessage): void {
    if (!this.isOpen) return;
    this.ws.send(JSON.stringify({ v: 1, ...msg }));
  }

  /**
   * Sends `msg` and resolves with the next message of type `expect`; rejects
   * with a SignalingError on an `error` for this request, on timeout, or when
   * the connection closes.
   */
  request<T extends ServerMessageType>(
    msg: ClientMessage,
    expect: T,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<ServerMessageOf<T>> {
    return new Promise<ServerMessageOf<T>>((resolve, reject) => {
      if (!this.isOpen) {
        reject(new SignalingError('connection_closed', 'the WebSocket is closed'));
        return;
      }
      const waiter: Waiter = {
        requestType: msg.type,
        expect,
        resolve: resolve as (m: ServerMessage) => void,
        reject,
        timer: window.setTimeout(() => {
          this.removeWaiter(waiter);
          reject(new SignalingError('timeout', `no ${expect} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
      this.send(msg);
    });
  }

  /** Subscribes to every server message; returns an unsubscribe function. */
  onMessage(listener: (msg: ServerMessage) => void): () => void {
    this.messageListeners.add(listener);
    return () => this.messageListeners.delete(listener);
  }

  onClose(listener: (ev: CloseEvent) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  close(): void {
    this.closedByUs = true;
    this.stopPing();
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000, 'bye');
    }
  }

  private onFrame(ev: MessageEvent): void {
    if (typeof ev.data !== 'string') return;
    let msg: ServerMessage;
    try {
      msg = JSON.parse(ev.data) as ServerMessage;
    } catch {
      console.warn('telemed: unparsable server frame', ev.data);
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;

    if (msg.type === 'error') {
      // An error names the request that failed when it can; otherwise it
      // belongs to the oldest outstanding request, if any.
      const waiter =
        this.waiters.find((w) => w.requestType === msg.request_type) ??
        (msg.request_type === undefined ? this.waiters[0] : undefined);
      if (waiter) {
        this.removeWaiter(waiter);
        waiter.reject(new SignalingError(msg.code, msg.message));
      }
    } else {
      const waiter = this.waiters.find((w) => w.expect === msg.type);
      if (waiter) {
        this.removeWaiter(waiter);
        waiter.resolve(msg);
      }
    }
    for (const listener of this.messageListeners) listener(msg);
  }

  private onClosed(ev: CloseEvent): void {
    this.stopPing();
    for (const waiter of this.waiters.splice(0)) {
      window.clearTimeout(waiter.timer);
      waiter.reject(new SignalingError('connection_closed', `WebSocket closed (${ev.code})`));
    }
    for (const listener of this.closeListeners) listener(ev);
  }

  private removeWaiter(waiter: Waiter): void {
    window.clearTimeout(waiter.timer);
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  private stopPing(): void {
    if (this.pingTimer !== undefined) window.clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }
}
