// Pieces shared by the doctor's and the specialist's dashboards: a titled
// list section, the "accepted — join now" banner, and the subscription to the
// live request pushes.
//
// Test ids: `paired-banner` (one `paired-item` per joinable request with
// `data-request-id`, each with a `banner-join` button), `page-error`
// (`data-code`), and the section ids given by the pages.

import { JOINABLE_STATES, type RequestView } from '../api';
import type { AppContext } from '../context';
import { t, type MessageKey } from '../i18n';
import type { ServerMessage } from '../signaling';
import { h } from './dom';

export interface ListSection {
  el: HTMLElement;
  list: HTMLElement;
  empty: HTMLElement;
  render(): void;
}

/** A section with a heading, a list container `testid` and an empty note `testid-empty`. */
export function listSection(title: MessageKey, testid: string, emptyText: MessageKey): ListSection {
  const heading = h('h3');
  const list = h('div', { class: 'card-list', 'data-testid': testid });
  const empty = h('p', { class: 'empty hint', 'data-testid': `${testid}-empty` });
  const el = h('section', { class: `dash-section section-${testid}` }, heading, empty, list);
  return {
    el,
    list,
    empty,
    render() {
      heading.textContent = t(title);
      empty.textContent = t(emptyText);
    },
  };
}

export interface PairedBanner {
  el: HTMLElement;
  render(views: RequestView[]): void;
}

/**
 * The prominent banner for consultations that can be joined now (accepted or
 * in consultation); `side` decides the wording.
 */
export function pairedBanner(
  side: 'doctor' | 'specialist',
  isMine: (v: RequestView) => boolean,
  onJoin: (id: string) => void,
): PairedBanner {
  const el = h('section', { class: 'paired-banner', 'data-testid': 'paired-banner', role: 'status', hidden: true });
  return {
    el,
    render(views) {
      const ready = views.filter(
        (v) => isMine(v) && JOINABLE_STATES.includes(v.state) && v.state !== 'opinion_written',
      );
      el.hidden = ready.length === 0;
      el.replaceChildren(
        ...ready.map((v) => {
          const join = h(
            'button',
            { type: 'button', class: 'btn btn-primary btn-large', 'data-testid': 'banner-join', 'data-request-id': v.id },
            t('card.join'),
          );
          join.addEventListener('click', () => onJoin(v.id));
          const text =
            side === 'doctor'
              ? t('paired.banner', { name: v.specialist_name ?? v.specialist ?? '', pseudonym: v.patient_pseudonym })
              : t('paired.banner_specialist', { name: v.requester_name, pseudonym: v.patient_pseudonym });
          return h(
            'div',
            { class: 'paired-item', 'data-testid': 'paired-item', 'data-request-id': v.id },
            h('p', {}, text),
            join,
          );
        }),
      );
    },
  };
}

/** Request views in live pushes. */
export function pushedRequest(msg: ServerMessage): RequestView | null {
  switch (msg.type) {
    case 'request_updated':
    case 'offer_made':
    case 'paired':
      return msg.request;
    default:
      return null;
  }
}

/**
 * Subscribes to the live WebSocket: `onMessage` for every message, `onOnline`
 * after every (re)connect (reload what may have been missed). Returns an
 * unsubscribe function.
 */
export function subscribeLive(
  ctx: AppContext,
  onMessage: (msg: ServerMessage) => void,
  onOnline: () => void,
): () => void {
  const offMsg = ctx.live.onMessage(onMessage);
  const offState = ctx.live.onState((s) => {
    if (s === 'online') onOnline();
  });
  return () => {
    offMsg();
    offState();
  };
}
