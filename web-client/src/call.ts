// The RTCPeerConnection to the relay: publishes the local camera and
// microphone, answers the server's offers and maps received tracks to the
// participants that publish them.

import { SignalingError, type LayerPlan, type ServerMessage, type SignalingClient, type TrackInfo } from './signaling';

declare global {
  interface Window {
    /**
     * Test hooks: `pc` is the current peer connection, so tests can call getStats;
     * `clientValidation: false` skips client-side form checks (to see the server's).
     */
    __telemed?: { pc: RTCPeerConnection | null; clientValidation?: boolean };
  }
}

export interface CallHandlers {
  /** The set of remote participants with media, or their tracks, changed. */
  onRemoteStreams(streams: Map<string, MediaStream>): void;
  /** RTCPeerConnection.connectionState changed. */
  onConnectionState(state: RTCPeerConnectionState): void;
  /** Negotiation failed (an `error` about our offer/answer, or a WebRTC exception). */
  onError(err: SignalingError): void;
}

/**
 * Camera video goes out as VP8 simulcast in three layers (quarter, half and full
 * resolution), each with three temporal layers, so that the relay can give every
 * subscriber what its line carries (docs/architecture.md, bandwidth adaptation).
 */
const SIMULCAST: RTCRtpEncodingParameters[] = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
].map((e) => ({ ...e, scalabilityMode: 'L1T3' }) as RTCRtpEncodingParameters);

export async function getLocalMedia(): Promise<MediaStream> {
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    });
  } catch (e) {
    throw new SignalingError('media_unavailable', String(e));
  }
}

export class Call {
  readonly pc: RTCPeerConnection;
  /** Serialises all work on the peer connection (offers, answers). */
  private queue: Promise<void> = Promise.resolve();
  private offerSent = false;
  private pendingCandidates: RTCIceCandidate[] = [];
  private endOfCandidatesSent = false;
  /** mid → participant_id from the latest server offer (undefined until one carries `tracks`). */
  private trackOwners: Map<string, string> | undefined;
  /** mid → msid stream id seen in `ontrack`: the fallback owner when `tracks` is absent. */
  private readonly streamIds = new Map<string, string>();
  private readonly remoteStreams = new Map<string, MediaStream>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(
    private readonly sig: SignalingClient,
    readonly localStream: MediaStream,
    private readonly handlers: CallHandlers,
  ) {
    // The relay is ICE-lite and lists its candidates in its SDP.
    this.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    window.__telemed = { ...window.__telemed, pc: this.pc };

    this.pc.addEventListener('icecandidate', (e) => this.onLocalCandidate(e.candidate));
    this.pc.addEventListener('connectionstatechange', () =>
      this.handlers.onConnectionState(this.pc.connectionState),
    );
    this.pc.addEventListener('track', (e) => {
      const mid = e.transceiver.mid;
      const streamId = e.streams[0]?.id;
      if (mid !== null && streamId) this.streamIds.set(mid, streamId);
      this.reconcileRemoteStreams();
    });

    this.unsubscribe = sig.onMessage((msg) => this.onMessage(msg));
  }

  /** Publishes the local tracks: our one offer, right after `joined`. */
  start(): void {
    this.enqueue(async () => {
      for (const track of this.localStream.getTracks()) {
        this.pc.addTransceiver(track, {
          direction: 'sendonly',
          streams: [this.localStream],
          sendEncodings: track.kind === 'video' ? SIMULCAST : undefined,
        });
      }
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.sig.send({ type: 'offer', sdp: this.pc.localDescription?.sdp ?? offer.sdp ?? '' });
      this.offerSent = true;
      for (const c of this.pendingCandidates.splice(0)) this.sendCandidate(c);
    });
  }

  setMicrophoneEnabled(enabled: boolean): void {
    for (const track of this.localStream.getAudioTracks()) track.enabled = enabled;
  }

  setCameraEnabled(enabled: boolean): void {
    for (const track of this.localStream.getVideoTracks()) track.enabled = enabled;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.pc.close();
    for (const track of this.localStream.getTracks()) track.stop();
    this.remoteStreams.clear();
    if (window.__telemed?.pc === this.pc) window.__telemed.pc = null;
  }

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'answer':
        this.enqueue(() => this.applyAnswer(msg.sdp));
        break;
      case 'offer':
        this.enqueue(() => this.answerServerOffer(msg.sdp, msg.tracks));
        break;
      case 'publisher_layers':
        // In the queue: two plans in a row must not race each other's getParameters/setParameters.
        this.enqueue(() =>
          this.setLayers(msg.mid, msg.layers).catch((e: unknown) =>
            console.warn('telemed: could not apply the relay\'s layer plan', e),
          ),
        );
        break;
      case 'error':
        if (msg.request_type === 'offer' || msg.request_type === 'answer') {
          this.handlers.onError(new SignalingError(msg.code, msg.message));
        } else if (msg.request_type === 'candidate') {
          console.warn('telemed: candidate refused', msg.code, msg.message);
        }
        break;
      default:
        break;
    }
  }

  /**
   * The relay steers what we encode: it pauses the simulcast layers nobody receives and resumes them
   * (dynacast), and sets each layer's bitrate and resolution for the lines of those who receive it
   * (end-to-end rate control; with one bottleneck, the top layer becomes one adaptive layer).
   */
  private async setLayers(mid: string, layers: LayerPlan[]): Promise<void> {
    const sender = this.pc.getTransceivers().find((tr) => tr.mid === mid)?.sender;
    if (!sender) return;
    const params = sender.getParameters();
    let changed = false;
    for (const enc of params.encodings) {
      const wanted = layers.find((l) => l.rid === enc.rid);
      if (!wanted) continue;
      const maxBitrate = Math.round(wanted.max_bitrate_bps);
      const scale = wanted.scale_resolution_down_by;
      if (enc.active !== wanted.active || enc.maxBitrate !== maxBitrate || enc.scaleResolutionDownBy !== scale) {
        enc.active = wanted.active;
        enc.maxBitrate = maxBitrate;
        enc.scaleResolutionDownBy = scale;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(params);
  }

  private async applyAnswer(sdp: string): Promise<void> {
    if (this.pc.signalingState !== 'have-local-offer') {
      console.warn('telemed: answer without an outstanding offer; ignored');
      return;
    }
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
  }

  private async answerServerOffer(sdp: string, tracks: TrackInfo[] | undefined): Promise<void> {
    if (this.pc.signalingState === 'have-local-offer') {
      // Offer collision: the server is the polite side. It drops its offer,
      // answers ours and sends its offer again afterwards.
      console.info('telemed: server offer collided with ours; waiting for it to be re-sent');
      return;
    }
    if (tracks) this.trackOwners = new Map(tracks.map((tr) => [tr.mid, tr.participant_id]));
    await this.pc.setRemoteDescription({ type: 'offer', sdp });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    this.sig.send({ type: 'answer', sdp: this.pc.localDescription?.sdp ?? answer.sdp ?? '' });
    this.reconcileRemoteStreams();
  }

  /**
   * Rebuilds participant → stream from the transceivers that currently receive,
   * owned by the `tracks` list of the last server offer (or, without it, by the
   * msid stream id, which is the publisher's participant_id).
   */
  private reconcileRemoteStreams(): void {
    if (this.closed) return;
    const wanted = new Map<string, MediaStreamTrack[]>();
    for (const tr of this.pc.getTransceivers()) {
      const mid = tr.mid;
      if (mid === null) continue;
      if (tr.direction === 'sendonly' || tr.direction === 'inactive') continue;
      const dir = tr.currentDirection;
      if (dir !== 'recvonly' && dir !== 'sendrecv') continue;
      const owner = this.trackOwners ? this.trackOwners.get(mid) : this.streamIds.get(mid);
      if (!owner) continue;
      const list = wanted.get(owner) ?? [];
      list.push(tr.receiver.track);
      wanted.set(owner, list);
    }

    let changed = false;
    for (const pid of [...this.remoteStreams.keys()]) {
      if (!wanted.has(pid)) {
        this.remoteStreams.delete(pid);
        changed = true;
      }
    }
    for (const [pid, tracks] of wanted) {
      const existing = this.remoteStreams.get(pid);
      const same =
        existing !== undefined &&
        existing.getTracks().length === tracks.length &&
        tracks.every((track) => existing.getTrackById(track.id) !== null);
      if (!same) {
        // A new stream object, so that a <video> showing it picks up the change.
        this.remoteStreams.set(pid, new MediaStream(tracks));
        changed = true;
      }
    }
    if (changed) this.handlers.onRemoteStreams(new Map(this.remoteStreams));
  }

  private onLocalCandidate(candidate: RTCIceCandidate | null): void {
    if (candidate && candidate.candidate === '') return; // end of a generation; `null` follows
    if (!candidate) {
      if (this.endOfCandidatesSent) return;
      this.endOfCandidatesSent = true;
    }
    if (!this.offerSent) {
      if (candidate) this.pendingCandidates.push(candidate);
      else this.enqueue(async () => this.sendCandidate(null));
      return;
    }
    this.sendCandidate(candidate);
  }

  private sendCandidate(candidate: RTCIceCandidate | null): void {
    if (candidate) {
      this.sig.send({
        type: 'candidate',
        candidate: candidate.candidate,
        sdp_mid: candidate.sdpMid,
        sdp_m_line_index: candidate.sdpMLineIndex,
      });
    } else {
      this.sig.send({ type: 'candidate', candidate: null });
    }
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue
      .then(async () => {
        if (!this.closed) await task();
      })
      .catch((e: unknown) => {
        if (this.closed) return;
        console.error('telemed: negotiation failed', e);
        this.handlers.onError(
          e instanceof SignalingError ? e : new SignalingError('webrtc_failed', String(e)),
        );
      });
  }
}
