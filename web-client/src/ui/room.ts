// The consultation room of one request: the patient pseudonym and question
// above the call (call-view.ts), and beside it, for the specialist, the
// opinion editor (so they can write during the call), for the referring
// doctor the signed opinion once there is one. Entered with
// `join {request_id}` on the tab's WebSocket; leaving returns to the dashboard.
//
// Test ids: `page-room` (`data-request-id`), `room-pseudonym`,
// `room-specialty`, `room-question`, `room-state` (request state badge,
// `data-state`), `room-joining`, `room-error` (`data-code`) with
// `room-error-back`, `room-side`; the call's ids (call-view.ts) and the
// opinion's (opinion.ts).

import { api, ApiError, type RequestView } from '../api';
import { specialtyName } from '../catalog';
import type { AppContext } from '../context';
import { errorText, onLangChange, t } from '../i18n';
import { startSession, type Session } from '../session';
import { SignalingError } from '../signaling';
import { callView } from './call-view';
import { h, showError, type Page } from './dom';
import { opinionEditor, opinionView, type OpinionEditor, type OpinionViewPart } from './opinion';

export function roomPage(ctx: AppContext, requestId: string, onExit: () => void): Page {
  const me = ctx.auth.user;
  const pseudonym = h('h2', { class: 'room-name', 'data-testid': 'room-pseudonym' });
  const specialty = h('span', { class: 'badge', 'data-testid': 'room-specialty' });
  const state = h('span', { class: 'badge', 'data-testid': 'room-state' });
  const question = h('p', { class: 'room-question prewrap', 'data-testid': 'room-question' });
  const header = h(
    'div',
    { class: 'room-request' },
    h('div', { class: 'room-request-title' }, pseudonym, specialty, state),
    question,
  );
  const joining = h('div', { class: 'room-joining', 'data-testid': 'room-joining', role: 'status' });
  const errorText_ = h('p', { 'data-testid': 'room-error-text' });
  const errorBack = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'room-error-back' });
  const error = h('div', { class: 'banner', role: 'alert', 'data-testid': 'room-error', hidden: true }, errorText_, errorBack);
  const callSlot = h('div', { class: 'room-call' }, joining);
  const side = h('aside', { class: 'room-side', 'data-testid': 'room-side', hidden: true });
  const main = h('div', { class: 'room-main' }, callSlot, side);

  let view: RequestView | null = null;
  let session: Session | null = null;
  let call: Page | null = null;
  let editor: OpinionEditor | null = null;
  let signed: OpinionViewPart | null = null;
  let problem: { code: string; message: string } | null = null;
  let disposed = false;
  let left = false;

  const isSpecialist = () => view !== null && me.role === 'specialist' && view.specialist === me.username;

  const renderSide = () => {
    if (!view) return;
    const wantEditor = isSpecialist() && (view.state === 'accepted' || view.state === 'in_consultation');
    const o = view.opinion;
    const wantSigned = !wantEditor && o !== null && o.signature !== null;
    if (wantEditor) {
      if (editor) editor.update(view);
      else {
        editor = opinionEditor(view, take);
        side.replaceChildren(editor.el);
      }
    } else if (editor) {
      editor.dispose();
      editor = null;
      side.replaceChildren();
    }
    if (wantSigned && o) {
      if (signed) signed.update(o);
      else {
        signed = opinionView(o);
        side.replaceChildren(signed.el);
      }
    } else if (signed) {
      signed.dispose();
      signed = null;
      if (!wantEditor) side.replaceChildren();
    }
    side.hidden = !wantEditor && !wantSigned;
  };

  const render = () => {
    if (view) {
      pseudonym.textContent = t('room.patient', { pseudonym: view.patient_pseudonym });
      specialty.textContent = specialtyName(view.specialty);
      state.textContent = t(`status.${view.state}`);
      state.dataset.state = view.state;
      state.className = `badge status status-${view.state}`;
      question.textContent = view.question;
    }
    header.hidden = view === null;
    joining.textContent = t('room.joining');
    joining.hidden = session !== null || problem !== null;
    errorBack.textContent = t('room.back');
    showError(errorText_, problem ? t('room.join_failed', { error: errorText(problem.code, problem.message) }) : null, problem?.code);
    error.hidden = problem === null;
    if (problem) error.dataset.code = problem.code;
    renderSide();
  };

  function take(v: RequestView): void {
    if (v.id !== requestId) return;
    if (view && v.version < view.version) return;
    view = v;
    render();
  }

  const leaveRoom = () => {
    if (left) return;
    left = true;
    onExit();
  };
  errorBack.addEventListener('click', leaveRoom);

  const offLive = ctx.live.onMessage((msg) => {
    if (msg.type === 'request_updated' || msg.type === 'paired' || msg.type === 'offer_made') take(msg.request);
  });
  const offLang = onLangChange(render);

  const enter = async () => {
    try {
      take(await api.getRequest(requestId));
      const sig = await ctx.live.ready();
      if (disposed) return;
      const s = await startSession(sig, me, requestId);
      if (disposed) {
        void s.leave();
        return;
      }
      session = s;
      call = callView(s, { onExit: leaveRoom });
      callSlot.replaceChildren(call.el);
      render();
      // The state moved on (accepted → in_consultation) when we joined.
      void api.getRequest(requestId).then(take, () => undefined);
    } catch (e) {
      if (disposed) return;
      problem =
        e instanceof ApiError || e instanceof SignalingError
          ? { code: e.code, message: e.message }
          : { code: 'unknown', message: String(e) };
      render();
    }
  };

  render();
  void enter();

  const el = h('main', { class: 'page room-page', 'data-testid': 'page-room', 'data-request-id': requestId }, header, error, main);
  return {
    el,
    dispose() {
      disposed = true;
      offLive();
      offLang();
      call?.dispose();
      editor?.dispose();
      signed?.dispose();
      // Navigated away without Leave (e.g. the browser's back button): leave the room.
      if (session && !session.hasLeft) void session.leave();
    },
  };
}
