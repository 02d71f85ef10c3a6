// One consultation request as a card: its details, a state badge, the
// queue position and estimated wait while it waits, and the actions the
// logged-in user may take in its current state. A card is updated in place
// (update(view)), so text being typed in its forms survives live updates.
//
// Test ids: `request-card` (`data-request-id`, `data-state`, `data-version`),
// `request-pseudonym`, `request-state` (badge, `data-state`),
// `request-urgency` (`data-urgency`), `request-specialty`,
// `request-question`, `request-requester`, `request-specialist`,
// `request-consent` (`data-method`), `request-reason`,
// `queue-info`, `queue-position` (`data-position`, 0-based as sent),
// `estimated-wait` (`data-secs`, empty when unknown),
// `request-note`, buttons `join-room`, `accept`, `decline-offer`,
// `decline-unsuitable`, `cancel-request`, `acknowledge`,
// `propose-referral`; the cancel panel `cancel-panel` with `cancel-reason`,
// `cancel-confirm`, `cancel-back`; the decline panel `decline-panel` with
// `decline-reason`, `decline-confirm`, `decline-back`; `acknowledged`;
// `referral-list` with `referral-item` (`data-direction`, `data-to-site`);
// `card-error` (`data-code`); plus opinion.ts and referral.ts inside.

import {
  api,
  ApiError,
  FINAL_STATES,
  JOINABLE_STATES,
  MAX_REASON,
  REFERABLE_STATES,
  type RequestView,
  type UserView,
} from '../api';
import { siteName, specialtyName } from '../catalog';
import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { isRequestView } from '../requests';
import { h, showError } from './dom';
import { formatDuration, formatTime } from './format';
import { opinionEditor, opinionView, type OpinionEditor, type OpinionViewPart } from './opinion';
import { referralForm, type ReferralForm } from './referral';

export interface CardOptions {
  me: UserView;
  /** A newer RequestView from an action's answer. */
  onChanged(view: RequestView): void;
  /** Enter the room of this request. */
  onJoin(id: string): void;
  /** Something is out of date (e.g. 409 conflict): reload the lists. */
  onStale?(): void;
}

export interface RequestCard {
  el: HTMLElement;
  readonly view: RequestView;
  update(view: RequestView): void;
  dispose(): void;
}

interface ReasonPanel {
  el: HTMLElement;
  input: HTMLTextAreaElement;
  label: HTMLLabelElement;
  confirm: HTMLButtonElement;
  back: HTMLButtonElement;
  error: HTMLElement;
}

let counter = 0;

function reasonPanel(prefix: 'cancel' | 'decline'): ReasonPanel {
  const id = `${prefix}-reason-${++counter}`;
  const input = h('textarea', { id, rows: 2, maxlength: MAX_REASON, 'data-testid': `${prefix}-reason` });
  const label = h('label', { for: id });
  const error = h('div', { class: 'field-error', role: 'alert', hidden: true });
  const confirm = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': `${prefix}-confirm` });
  const back = h('button', { type: 'button', class: 'btn', 'data-testid': `${prefix}-back` });
  const el = h(
    'div',
    { class: 'reason-panel', 'data-testid': `${prefix}-panel`, hidden: true },
    h('div', { class: 'field' }, label, input, error),
    h('div', { class: 'actions' }, confirm, back),
  );
  return { el, input, label, confirm, back, error };
}

export function requestCard(initial: RequestView, opts: CardOptions): RequestCard {
  let view = initial;
  const me = opts.me;

  const pseudonym = h('span', { class: 'pseudonym', 'data-testid': 'request-pseudonym' });
  const urgency = h('span', { class: 'badge', 'data-testid': 'request-urgency' });
  const state = h('span', { class: 'badge', 'data-testid': 'request-state' });
  const details = h('dl', { class: 'request-details' });
  const queuePosition = h('span', { 'data-testid': 'queue-position' });
  const estimatedWait = h('span', { 'data-testid': 'estimated-wait' });
  const queueInfo = h('div', { class: 'queue-info', 'data-testid': 'queue-info' }, queuePosition, estimatedWait);
  const note = h('div', { class: 'request-note', 'data-testid': 'request-note', role: 'status' });

  const join = h('button', { type: 'button', class: 'btn btn-primary btn-large', 'data-testid': 'join-room' });
  const accept = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'accept' });
  const declineOffer = h('button', { type: 'button', class: 'btn', 'data-testid': 'decline-offer' });
  const declineUnsuitable = h('button', { type: 'button', class: 'btn', 'data-testid': 'decline-unsuitable' });
  const cancel = h('button', { type: 'button', class: 'btn', 'data-testid': 'cancel-request' });
  const acknowledge = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'acknowledge' });
  const actions = h(
    'div',
    { class: 'actions' },
    join,
    accept,
    declineOffer,
    declineUnsuitable,
    cancel,
    acknowledge,
  );
  const cancelPanel = reasonPanel('cancel');
  const declinePanel = reasonPanel('decline');
  const acknowledged = h('div', { class: 'hint', 'data-testid': 'acknowledged' });
  const opinionSlot = h('div', { class: 'opinion-slot' });
  const referralHeading = h('h4');
  const referralList = h('ul', { class: 'referral-list', 'data-testid': 'referral-list' });
  const proposeReferral = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'propose-referral' });
  const referralSlot = h('div');
  const referrals = h('section', { class: 'referrals' }, referralHeading, referralList, proposeReferral, referralSlot);
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'card-error', hidden: true });

  const el = h(
    'article',
    { class: 'card request-card', 'data-testid': 'request-card' },
    h('header', { class: 'request-head' }, pseudonym, urgency, state),
    details,
    queueInfo,
    note,
    actions,
    cancelPanel.el,
    declinePanel.el,
    opinionSlot,
    acknowledged,
    referrals,
    error,
  );

  let busy = false;
  let problem: ApiError | null = null;
  let editor: OpinionEditor | null = null;
  let signed: OpinionViewPart | null = null;
  let referral: ReferralForm | null = null;

  const isRequester = () => me.role === 'referring_doctor' && view.requester === me.username;
  const isMySpecialist = () => me.role === 'specialist' && view.specialist === me.username;

  const row = (label: MessageKey, value: string, testid: string, attrs: Record<string, string> = {}) => [
    h('dt', {}, t(label)),
    h('dd', { 'data-testid': testid, ...attrs }, value),
  ];

  const renderDetails = () => {
    const rows: HTMLElement[] = [
      ...row('card.specialty', specialtyName(view.specialty), 'request-specialty'),
      ...row('card.question', view.question, 'request-question', { class: 'prewrap' }),
      ...row('card.requester', `${view.requester_name} · ${siteName(view.requester_site)}`, 'request-requester'),
    ];
    if (view.specialist) {
      const name = view.specialist_name ?? view.specialist;
      rows.push(
        ...row('card.specialist', view.centre ? `${name} · ${siteName(view.centre)}` : name, 'request-specialist'),
      );
    }
    if (view.preferred_centre) {
      rows.push(...row('card.preferred', siteName(view.preferred_centre), 'request-preferred'));
    }
    rows.push(...row('card.created', formatTime(view.created_at), 'request-created'));
    rows.push(
      ...row(
        'card.consent',
        t('card.consent_value', {
          method: t(`consent.${view.consent.method}`),
          by: view.consent.recorded_by === view.requester ? view.requester_name : view.consent.recorded_by,
          time: formatTime(view.consent.recorded_at),
        }),
        'request-consent',
        { 'data-method': view.consent.method },
      ),
    );
    if (view.closing_reason) rows.push(...row('card.reason', view.closing_reason, 'request-reason'));
    details.replaceChildren(...rows);
  };

  const renderOpinion = () => {
    const o = view.opinion;
    const wantEditor = isMySpecialist() && (view.state === 'accepted' || view.state === 'in_consultation');
    const wantSigned = o !== null && o.signature !== null;
    if (wantEditor) {
      if (!editor) {
        editor = opinionEditor(view, opts.onChanged);
        opinionSlot.replaceChildren(editor.el);
      } else {
        editor.update(view);
      }
    } else if (editor) {
      editor.dispose();
      editor = null;
      opinionSlot.replaceChildren();
    }
    if (!wantEditor && wantSigned && o) {
      if (!signed) {
        signed = opinionView(o);
        opinionSlot.replaceChildren(signed.el);
      } else {
        signed.update(o);
      }
    } else if (signed) {
      signed.dispose();
      signed = null;
      if (!wantEditor) opinionSlot.replaceChildren();
    }
  };

  const renderReferrals = () => {
    const mayRefer = (isRequester() || isMySpecialist()) && REFERABLE_STATES.includes(view.state);
    referrals.hidden = view.referrals.length === 0 && !mayRefer;
    referralHeading.textContent = t('card.referrals');
    referralList.replaceChildren(
      ...view.referrals.map((r) =>
        h(
          'li',
          { 'data-testid': 'referral-item', 'data-direction': r.direction, 'data-to-site': r.to_site },
          t('card.referral_item', {
            direction: t(`direction.${r.direction}`),
            site: siteName(r.to_site),
            reason: r.reason,
            by: r.proposed_by,
            time: formatTime(r.proposed_at),
          }),
        ),
      ),
    );
    proposeReferral.textContent = t('card.propose_referral');
    proposeReferral.hidden = !mayRefer || referral !== null;
    if (!mayRefer && referral) {
      referral.dispose();
      referral = null;
      referralSlot.replaceChildren();
    }
  };

  const render = () => {
    el.dataset.requestId = view.id;
    el.dataset.state = view.state;
    el.dataset.version = String(view.version);
    el.classList.toggle('request-final', FINAL_STATES.includes(view.state));

    pseudonym.textContent = view.patient_pseudonym;
    urgency.textContent = t(`urgency.${view.urgency}`);
    urgency.dataset.urgency = view.urgency;
    urgency.className = `badge urgency urgency-${view.urgency}`;
    state.textContent = t(`status.${view.state}`);
    state.dataset.state = view.state;
    state.className = `badge status status-${view.state}`;
    renderDetails();

    // Waiting: queue position and estimated wait.
    // (The specialist sees the queue in order instead.)
    queueInfo.hidden = !(isRequester() && (view.state === 'queued' || view.state === 'offered'));
    queuePosition.hidden = view.queue_position === null;
    if (view.queue_position !== null) {
      queuePosition.textContent = t('card.queue_position', { n: String(view.queue_position + 1) });
      queuePosition.dataset.position = String(view.queue_position);
    } else {
      delete queuePosition.dataset.position;
    }
    // Once offered, the note below says what happens next.
    estimatedWait.hidden = view.state === 'offered';
    estimatedWait.textContent =
      view.estimated_wait_secs === null
        ? t('card.wait_unknown')
        : view.estimated_wait_secs < 60
          ? t('card.wait_soon')
          : t('card.wait', { time: formatDuration(view.estimated_wait_secs) });
    estimatedWait.dataset.secs = view.estimated_wait_secs === null ? '' : String(view.estimated_wait_secs);
    if (queuePosition.hidden && estimatedWait.hidden) queueInfo.hidden = true;

    // A short note on what happens next.
    let noteText = '';
    if (isRequester() && view.state === 'offered') noteText = t('card.offered_waiting');
    if (isRequester() && view.state === 'accepted') {
      noteText = t('card.accepted_note', { name: view.specialist_name ?? view.specialist ?? '' });
    }
    note.textContent = noteText;
    note.hidden = noteText === '';

    // Actions.
    const offeredToMe = me.role === 'specialist' && view.state === 'offered' && view.specialist === me.username;
    const inMyQueue = me.role === 'specialist' && view.state === 'queued' && me.specialties.includes(view.specialty);
    join.textContent = t('card.join');
    join.hidden = !(JOINABLE_STATES.includes(view.state) && (isRequester() || isMySpecialist()));
    accept.textContent = t('card.accept');
    accept.hidden = !(offeredToMe || inMyQueue);
    declineOffer.textContent = t('card.decline_offer');
    declineOffer.hidden = !offeredToMe;
    declineUnsuitable.textContent = t('card.decline');
    declineUnsuitable.hidden = !offeredToMe;
    cancel.textContent = t('card.cancel');
    cancel.hidden = !(isRequester() && ['requested', 'queued', 'offered', 'accepted'].includes(view.state));
    acknowledge.textContent = t('card.acknowledge');
    acknowledge.hidden = !(isRequester() && view.state === 'opinion_written');
    for (const b of [join, accept, declineOffer, declineUnsuitable, cancel, acknowledge]) b.disabled = busy;
    actions.hidden = [join, accept, declineOffer, declineUnsuitable, cancel, acknowledge].every((b) => b.hidden);

    if (cancel.hidden) cancelPanel.el.hidden = true;
    cancelPanel.label.textContent = t('card.cancel_reason');
    cancelPanel.confirm.textContent = t('card.cancel_confirm');
    cancelPanel.back.textContent = t('common.back');
    if (declineUnsuitable.hidden) declinePanel.el.hidden = true;
    declinePanel.label.textContent = t('card.decline_reason');
    declinePanel.confirm.textContent = t('card.decline_confirm');
    declinePanel.back.textContent = t('common.back');
    for (const p of [cancelPanel, declinePanel]) {
      p.confirm.disabled = busy;
      if (!p.error.hidden) p.error.textContent = t('validate.reason');
    }

    renderOpinion();
    acknowledged.hidden = view.acknowledged_at === null;
    acknowledged.textContent = view.acknowledged_at ? t('card.acknowledged', { time: formatTime(view.acknowledged_at) }) : '';
    renderReferrals();
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);
  };

  /** Runs an action; its RequestView answer updates the card. */
  const run = async (action: () => Promise<unknown>): Promise<boolean> => {
    if (busy) return false;
    busy = true;
    problem = null;
    render();
    let ok = false;
    try {
      const res = await action();
      ok = true;
      opts.onChanged(isRequestView(res) ? res : await api.getRequest(view.id));
    } catch (e) {
      problem = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      if (problem.status === 409 || problem.status === 404) opts.onStale?.();
    } finally {
      busy = false;
      render();
    }
    return ok;
  };

  const reasonAction = (panel: ReasonPanel, send: (reason: string) => Promise<unknown>) => {
    panel.confirm.addEventListener('click', async () => {
      const reason = panel.input.value.trim();
      if (!reason) {
        panel.error.hidden = false;
        panel.error.textContent = t('validate.reason');
        panel.input.setAttribute('aria-invalid', 'true');
        panel.input.focus();
        return;
      }
      panel.error.hidden = true;
      panel.input.removeAttribute('aria-invalid');
      if (await run(() => send(reason))) {
        panel.input.value = '';
        panel.el.hidden = true;
      }
    });
    panel.back.addEventListener('click', () => {
      panel.el.hidden = true;
      panel.error.hidden = true;
    });
  };

  join.addEventListener('click', () => opts.onJoin(view.id));
  accept.addEventListener('click', () => void run(() => api.accept(view.id)));
  declineOffer.addEventListener('click', () => void run(() => api.declineOffer(view.id)));
  acknowledge.addEventListener('click', () => void run(() => api.acknowledge(view.id)));
  cancel.addEventListener('click', () => {
    cancelPanel.el.hidden = false;
    cancelPanel.input.focus();
  });
  declineUnsuitable.addEventListener('click', () => {
    declinePanel.el.hidden = false;
    declinePanel.input.focus();
  });
  reasonAction(cancelPanel, (reason) => api.cancel(view.id, reason));
  reasonAction(declinePanel, (reason) => api.decline(view.id, reason));
  proposeReferral.addEventListener('click', () => {
    referral = referralForm(view.id, (v) => {
      referral?.dispose();
      referral = null;
      referralSlot.replaceChildren();
      opts.onChanged(v);
    });
    referralSlot.replaceChildren(referral.el);
    render();
  });

  render();
  const off = onLangChange(render);
  return {
    el,
    get view() {
      return view;
    },
    update(v) {
      if (v.version < view.version) return;
      view = v;
      render();
    },
    dispose() {
      off();
      editor?.dispose();
      signed?.dispose();
      referral?.dispose();
    },
  };
}
