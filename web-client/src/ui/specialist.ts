// The specialist's dashboard: the availability switch, the request offered to
// them (Accept / Pass / Unsuitable), the queue of their specialties (refreshed
// on `queue_changed`), their consultations (Join room, opinion editor,
// referral) and the history.
//
// Test ids: `page-specialist`, `availability-toggle` (`data-available`
// `true`|`false`, `aria-pressed`), `availability-status`, `offer-banner`,
// `offers`, `queue`, `my-consultations`, `history` (each with `<id>-empty`),
// `page-error` (`data-code`); the cards (request-card.ts) and the banner
// (dashboard.ts).

import { api, ApiError, FINAL_STATES, type RequestView } from '../api';
import { specialtyName } from '../catalog';
import type { AppContext } from '../context';
import { errorText, onLangChange, t } from '../i18n';
import { RequestBook, newestFirst } from '../requests';
import { roomPath } from '../router';
import { CardDeck } from './card-deck';
import { listSection, pairedBanner, pushedRequest, subscribeLive } from './dashboard';
import { h, showError, type Page } from './dom';
import { lineTestPanel } from './line-test';

/** Also refresh the queue this often, in case a `queue_changed` was missed. */
const QUEUE_REFRESH_MS = 15_000;

export function specialistPage(ctx: AppContext): Page {
  const me = ctx.auth.user;
  const mine = new RequestBook();
  const queue = new RequestBook();
  /** Queue order as last listed by the server (request id → index). */
  let queueOrder = new Map<string, number>();

  const take = (v: RequestView) => {
    if (v.specialist === me.username) mine.upsert(v);
    else mine.remove(v.id);
    if (v.state === 'queued' && me.specialties.includes(v.specialty) && !v.declined_by.includes(me.username)) {
      queue.upsert(v);
    } else {
      queue.remove(v.id);
    }
  };
  const join = (id: string) => ctx.go(roomPath(id));

  const heading = h('h2');
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'page-error', hidden: true });
  const availabilityLabel = h('span', { class: 'availability-label' });
  const availabilityStatus = h('span', { class: 'availability-status', 'data-testid': 'availability-status' });
  const availabilityToggle = h('button', {
    type: 'button',
    class: 'btn btn-large',
    'data-testid': 'availability-toggle',
  });
  const availability = h(
    'section',
    { class: 'card availability' },
    availabilityLabel,
    availabilityStatus,
    availabilityToggle,
  );
  const offerBanner = h('div', { class: 'offer-banner', 'data-testid': 'offer-banner', role: 'alert', hidden: true });
  const banner = pairedBanner('specialist', (v) => v.specialist === me.username, join);
  const offers = listSection('spec.offer', 'offers', 'spec.no_offer');
  const queueSection = listSection('spec.queue', 'queue', 'spec.queue_empty');
  const consultations = listSection('spec.mine', 'my-consultations', 'spec.no_mine');
  const history = listSection('spec.history', 'history', 'spec.no_history');
  const deck = new CardDeck({
    me,
    onChanged: (v) => {
      take(v);
      void loadQueue();
    },
    onJoin: join,
    onStale: () => void loadAll(),
  });

  let available: boolean | null = null;
  let availabilityBusy = false;
  let problem: ApiError | null = null;

  const render = () => {
    heading.textContent = t('spec.heading');
    availabilityLabel.textContent = t('spec.availability');
    availabilityStatus.textContent = available === null ? t('common.loading') : available ? t('spec.available') : t('spec.unavailable');
    availabilityStatus.className = `availability-status ${available ? 'is-available' : 'is-unavailable'}`;
    availabilityToggle.textContent = available ? t('spec.set_unavailable') : t('spec.set_available');
    availabilityToggle.dataset.available = String(available === true);
    availabilityToggle.setAttribute('aria-pressed', String(available === true));
    availabilityToggle.classList.toggle('btn-primary', !available);
    availabilityToggle.disabled = available === null || availabilityBusy;
    for (const s of [offers, queueSection, consultations, history]) s.render();

    const all = mine.all().sort(newestFirst);
    const offered = all.filter((v) => v.state === 'offered');
    offerBanner.hidden = offered.length === 0;
    offerBanner.textContent = offered
      .map((v) => t('offer.banner', { pseudonym: v.patient_pseudonym, specialty: specialtyName(v.specialty) }))
      .join(' · ');
    banner.render(all);
    const queued = queue
      .all()
      .filter((v) => !mine.has(v.id))
      .sort(
        (a, b) =>
          (queueOrder.get(a.id) ?? Infinity) - (queueOrder.get(b.id) ?? Infinity) ||
          (a.queue_position ?? Infinity) - (b.queue_position ?? Infinity) ||
          a.created_at - b.created_at,
      );
    deck.render([
      { container: offers.list, empty: offers.empty, views: offered },
      { container: queueSection.list, empty: queueSection.empty, views: queued },
      {
        container: consultations.list,
        empty: consultations.empty,
        views: all.filter((v) => v.state !== 'offered' && !FINAL_STATES.includes(v.state)),
      },
      { container: history.list, empty: history.empty, views: all.filter((v) => FINAL_STATES.includes(v.state)) },
    ]);
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);
  };

  let disposed = false;
  const fail = (e: unknown) => {
    if (disposed) return;
    problem = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
    render();
  };
  const loadMine = async () => {
    try {
      const views = await api.listRequests('mine');
      if (disposed) return;
      mine.replaceAll(views.filter((v) => v.specialist === me.username));
    } catch (e) {
      fail(e);
    }
  };
  let queueSeq = 0;
  const loadQueue = async () => {
    const seq = ++queueSeq;
    try {
      const views = await api.listRequests('queue');
      if (disposed || seq !== queueSeq) return;
      queueOrder = new Map(views.map((v, i) => [v.id, i]));
      queue.replaceAll(views);
    } catch (e) {
      fail(e);
    }
  };
  const loadAvailability = async () => {
    try {
      const res = await api.getAvailability();
      if (disposed) return;
      available = res.available;
      render();
    } catch (e) {
      fail(e);
    }
  };
  const loadAll = async () => {
    problem = null;
    await Promise.all([loadMine(), loadQueue(), loadAvailability()]);
  };

  availabilityToggle.addEventListener('click', async () => {
    if (availabilityBusy || available === null) return;
    availabilityBusy = true;
    problem = null;
    render();
    try {
      const res = await api.setAvailability(!available);
      available = typeof res?.available === 'boolean' ? res.available : !available;
    } catch (e) {
      problem = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
    } finally {
      availabilityBusy = false;
      render();
    }
    // Becoming available may have produced an offer (also pushed as offer_made).
    void loadMine();
    void loadQueue();
  });

  const offMine = mine.subscribe(render);
  const offQueue = queue.subscribe(render);
  const offLive = subscribeLive(
    ctx,
    (msg) => {
      if (msg.type === 'queue_changed') {
        void loadQueue();
        return;
      }
      const v = pushedRequest(msg);
      if (v) take(v);
    },
    () => void loadAll(),
  );
  const offLang = onLangChange(render);
  const timer = window.setInterval(() => void loadQueue(), QUEUE_REFRESH_MS);
  render();
  void loadAll();

  const lineTest = lineTestPanel(ctx);
  const el = h(
    'main',
    { class: 'page dashboard specialist-page', 'data-testid': 'page-specialist' },
    heading,
    error,
    availability,
    offerBanner,
    banner.el,
    offers.el,
    h('div', { class: 'dash-columns' }, h('div', { class: 'dash-col' }, consultations.el, queueSection.el), h('div', { class: 'dash-col' }, history.el, lineTest.el)),
  );
  return {
    el,
    dispose() {
      disposed = true;
      window.clearInterval(timer);
      offMine();
      offQueue();
      offLive();
      offLang();
      deck.dispose();
      lineTest.dispose();
    },
  };
}
