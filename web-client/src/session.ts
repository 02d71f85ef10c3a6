// One consultation session: the signaling connection, the login, the room
// membership and the call. The room page renders it.

import { Call, getLocalMedia } from './call';
import {
  SignalingClient,
  SignalingError,
  type MediaStateValue,
  type Participant,
  type ServerMessage,
  type User,
} from './signaling';

export interface JoinRequest {
  username: string;
  password: string;
  room: string;
}

/** What the room page shows as the connection state (`data-state`). */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

export const ROOM_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Connects, logs in, opens the camera and microphone, joins the room and starts publishing. */
export async function startSession(req: JoinRequest): Promise<Session> {
  const sig = await SignalingClient.connect();
  let call: Call | undefined;
  try {
    const { user } = await sig.request(
      { type: 'login', username: req.username, password: req.password },
      'login_ok',
    );
    const localStream = await getLocalMedia();
    // The session listens before `join` is sent, so nothing after `joined` is missed.
    const session = new Session(sig, user, localStream);
    call = session.call;
    const joined = await sig.request({ type: 'join', room: req.room }, 'joined');
    session.onJoined(joined.room, joined.participant_id, joined.participants);
    session.call.start();
    return session;
  } catch (e) {
    call?.close();
    sig.close();
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
  pcState: RTCPeerConnectionState = 'new';
  /** The WebSocket closed without us asking. */
  connectionLost = false;
  /** The relay removed us (media path lost); we are still logged in. */
  removedFromRoom = false;
  lastError: SignalingError | null = null;
  microphoneOn = true;
  cameraOn = true;
  private listener: (() => void) | null = null;

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
    sig.onMessage((msg) => this.onMessage(msg));
    sig.onClose(() => {
      if (sig.wasClosedByUs) return;
      this.connectionLost = true;
      this.call.close();
      this.changed();
    });
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

  /** Leaves the room (waiting briefly for `left`) and closes everything. */
  async leave(): Promise<void> {
    this.listener = null;
    if (this.sig.isOpen && !this.removedFromRoom) {
      try {
        await this.sig.request({ type: 'leave' }, 'left', 2000);
      } catch (e) {
        console.warn('telemed: leave', e);
      }
    }
    this.close();
  }

  close(): void {
    this.listener = null;
    this.call.close();
    this.sig.close();
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
