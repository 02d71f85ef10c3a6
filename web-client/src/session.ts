// One consultation in the room: the room membership on the tab's shared
// WebSocket, the camera and microphone, and the call. The room page renders it.

import { Call, getLocalMedia } from './call';
import {
  SignalingError,
  type ClientMessage,
  type MediaStateValue,
  type Participant,
  type QualityReport,
  type ServerMessage,
  type SignalingClient,
  type User,
} from './signaling';

/** What the room page shows as the connection state (`data-state`). */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

/**
 * Opens the camera and microphone, enters the room of request `requestId`
 * (`join {request_id}`) on the already authenticated WebSocket `sig`, and starts
 * publishing. The WebSocket stays open after the session ends.
 */
export function startSession(sig: SignalingClient, user: User, requestId: string): Promise<Session> {
  return enter(sig, user, { type: 'join', request_id: requestId });
}

/**
 * Starts a line test (`line_test`): like a consultation, but the room is our own and the relay
 * sends our media back while it probes the downlink (see linetest.ts).
 */
export function startLineTestSession(sig: SignalingClient, user: User): Promise<Session> {
  return enter(sig, user, { type: 'line_test' });
}

async function enter(sig: SignalingClient, user: User, msg: ClientMessage): Promise<Session> {
  let session: Session | undefined;
  try {
    const localStream = await getLocalMedia();
    // The session listens before `join` is sent, so nothing after `joined` is missed.
    session = new Session(sig, user, localStream);
    const joined = await sig.request(msg, 'joined');
    session.onJoined(joined.room, joined.participant_id, joined.participants);
    session.call.start();
    return session;
  } catch (e) {
    session?.close();
    throw e instanceof SignalingError ? e : new SignalingError('unknown', String(e));
  }
}

export class Session {
  readonly call: Call;
  room = '';
  selfId = '';
  readonly participants = new Map<string, Participant>();
  remoteStreams = new Map<string, MediaStream>();
  /** Participants whose tracks were removed by a server offer while they stayed in the room. */
  private readonly lostMedia = new Set<string>();
  mediaState: MediaStateValue | null = null;
  /** What the relay sends us and why (the latest `quality` message). */
  quality: QualityReport | null = null;
  pcState: RTCPeerConnectionState = 'new';
  /** The WebSocket closed without us asking. */
  connectionLost = false;
  /** The relay removed us (media path lost); we are still logged in. */
  removedFromRoom = false;
  lastError: SignalingError | null = null;
  microphoneOn = true;
  cameraOn = true;
  private listener: (() => void) | null = null;
  private readonly unsubscribe: (() => void)[] = [];
  private left = false;

  constructor(
    private readonly sig: SignalingClient,
    readonly user: User,
    localStream: MediaStream,
  ) {
    this.call = new Call(sig, localStream, {
      onRemoteStreams: (streams) => {
        for (const pid of this.remoteStreams.keys()) {
          if (!streams.has(pid)) this.lostMedia.add(pid);
        }
        for (const pid of streams.keys()) this.lostMedia.delete(pid);
        this.remoteStreams = streams;
        this.changed();
      },
      onConnectionState: (state) => {
        this.pcState = state;
        this.changed();
      },
      onError: (err) => {
        this.lastError = err;
        this.changed();
      },
    });
    this.unsubscribe.push(
      sig.onMessage((msg) => this.onMessage(msg)),
      sig.onClose(() => {
        this.connectionLost = true;
        this.call.close();
        this.changed();
      }),
    );
  }

  /** Sets the one listener called after every change. */
  subscribe(listener: () => void): void {
    this.listener = listener;
  }

  onJoined(room: string, selfId: string, others: Participant[]): void {
    this.room = room;
    this.selfId = selfId;
    for (const p of others) this.participants.set(p.participant_id, p);
    this.changed();
  }

  /** Remote participants that get a tile: in the room (unless their tracks went away) or sending media. */
  visibleParticipants(): Participant[] {
    if (this.connectionLost) return [];
    const ids = new Set<string>();
    for (const pid of this.participants.keys()) if (!this.lostMedia.has(pid)) ids.add(pid);
    for (const pid of this.remoteStreams.keys()) ids.add(pid);
    ids.delete(this.selfId);
    return [...ids].map(
      (pid) => this.participants.get(pid) ?? { participant_id: pid, display_name: pid },
    );
  }

  connectionState(): ConnectionState {
    if (this.connectionLost || this.pcState === 'closed') return 'closed';
    if (this.removedFromRoom || this.mediaState === 'failed' || this.pcState === 'failed') {
      return 'failed';
    }
    if (this.pcState === 'connected') {
      return this.mediaState === 'disconnected' ? 'disconnected' : 'connected';
    }
    if (this.pcState === 'disconnected') return 'disconnected';
    return 'connecting';
  }

  setMicrophone(on: boolean): void {
    this.microphoneOn = on;
    this.call.setMicrophoneEnabled(on);
    this.changed();
  }

  setCamera(on: boolean): void {
    this.cameraOn = on;
    this.call.setCameraEnabled(on);
    this.changed();
  }

  /** Leaves the room (waiting briefly for `left`) and stops the call; the WebSocket stays open. */
  async leave(): Promise<void> {
    if (this.left) return;
    this.left = true;
    this.listener = null;
    if (this.sig.isOpen && !this.removedFromRoom && !this.connectionLost) {
      try {
        await this.sig.request({ type: 'leave' }, 'left', 2000);
      } catch (e) {
        console.warn('telemed: leave', e);
      }
    }
    this.close();
  }

  /** Whether leave() was called. */
  get hasLeft(): boolean {
    return this.left;
  }

  /** Stops the call and stops listening; does not send `leave` (see leave()). */
  close(): void {
    this.listener = null;
    this.call.close();
    for (const off of this.unsubscribe.splice(0)) off();
  }

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'participant_joined':
        this.participants.set(msg.participant.participant_id, msg.participant);
        this.lostMedia.delete(msg.participant.participant_id);
        break;
      case 'participant_left':
        this.participants.delete(msg.participant_id);
        this.lostMedia.delete(msg.participant_id);
        // Its tracks go with the next server offer; hide them now.
        this.remoteStreams.delete(msg.participant_id);
        break;
      case 'quality': {
        const { type: _type, ...report } = msg;
        this.quality = report;
        break;
      }
      case 'media_state':
        this.mediaState = msg.state;
        if (msg.state === 'failed') this.removedFromRoom = true;
        break;
      case 'error':
        if (msg.request_type !== 'ping' && msg.request_type !== 'candidate') {
          this.lastError = new SignalingError(msg.code, msg.message);
        }
        break;
      default:
        return;
    }
    this.changed();
  }

  private changed(): void {
    this.listener?.();
  }
}
