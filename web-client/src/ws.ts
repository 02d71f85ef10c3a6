// The tab's one WebSocket to the server while logged in: opened after login,
// authenticated with the token (`auth` → `auth_ok`), kept open on the
// dashboard and in the room, and reopened with backoff when it drops.
// Listeners registered here survive reconnects.

import { SignalingClient, SignalingError, type ServerMessage } from './signaling';
import { SESSION_ENDED_CODES } from './api';

export type LiveState = 'connecting' | 'online' | 'offline';

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

export class LiveConnection {
  private client: SignalingClient | null = null;
  private state: LiveState = 'connecting';
  private attempt = 0;
  private retryTimer: number | undefined;
  private closed = false;
  private readonly messageListeners = new Set<(msg: ServerMessage) => void>();
  private readonly stateListeners = new Set<(state: LiveState) => void>();
  private readyWaiters: { resolve: (c: SignalingClient) => void; reject: (e: SignalingError) => void }[] =
    [];

  /** `onAuthFailed` is called when the server refuses the token (the user must log in again). */
  constructor(
    private readonly token: string,
    private readonly onAuthFailed: (err: SignalingError) => void,
    private readonly url?: string,
  ) {
    void this.open();
  }

  get liveState(): LiveState {
    return this.state;
  }

  /** The authenticated client, or null while (re)connecting. */
  get current(): SignalingClient | null {
    return this.state === 'online' ? this.client : null;
  }

  /** Resolves with the authenticated client (now, or once connected). */
  ready(): Promise<SignalingClient> {
    const c = this.current;
    if (c) return Promise.resolve(c);
    if (this.closed) return Promise.reject(new SignalingError('connection_closed', 'logged out'));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Every server message on whichever WebSocket is current; returns an unsubscribe function. */
  onMessage(listener: (msg: ServerMessage) => void): () => void {
    this.messageListeners.add(listener);
    return () => this.messageListeners.delete(listener);
  }

  /** Connection state changes (`online` again after a reconnect: reload what may have been missed). */
  onState(listener: (state: LiveState) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** Closes for good (logout). */
  close(): void {
    this.closed = true;
    window.clearTimeout(this.retryTimer);
    this.client?.close();
    this.client = null;
    for (const w of this.readyWaiters.splice(0)) {
      w.reject(new SignalingError('connection_closed', 'logged out'));
    }
    this.setState('offline');
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    this.setState('connecting');
    let client: SignalingClient;
    try {
      client = await SignalingClient.connect(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    if (this.closed) {
      client.close();
      return;
    }
    this.client = client;
    client.onMessage((msg) => {
      if (this.client !== client) return;
      for (const listener of this.messageListeners) listener(msg);
    });
    client.onClose(() => {
      if (this.client !== client) return;
      this.client = null;
      if (!this.closed) this.scheduleRetry();
    });
    try {
      await client.request({ type: 'auth', token: this.token }, 'auth_ok');
    } catch (e) {
      const err = e instanceof SignalingError ? e : new SignalingError('unknown', String(e));
      if (SESSION_ENDED_CODES.includes(err.code) || err.code === 'bad_credentials') {
        this.close();
        this.onAuthFailed(err);
        return;
      }
      // Anything else (timeout, closed): try again later.
      if (this.client === client) {
        this.client = null;
        client.close();
        this.scheduleRetry();
      }
      return;
    }
    if (this.client !== client) return;
    this.attempt = 0;
    this.setState('online');
    for (const w of this.readyWaiters.splice(0)) w.resolve(client);
  }

  private scheduleRetry(): void {
    if (this.closed) return;
    this.setState('offline');
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt++;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => void this.open(), delay);
  }

  private setState(state: LiveState): void {
    if (state === this.state) return;
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }
}
