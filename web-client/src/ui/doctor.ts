// The referring doctor's dashboard: the new-request form, "My requests" with
// live state, queue position and estimated wait, the join banner once a
// specialist accepts, the signed opinion with Acknowledge, and the history.
//
// Test ids: `page-doctor`, `my-requests` (+ `my-requests-empty`), `history`
// (+ `history-empty`), `page-error`; the form (request-form.ts), the cards
// (request-card.ts) and the banner (dashboard.ts).

import { api, ApiError, FINAL_STATES, type RequestView } from '../api';
import type { AppContext } from '../context';
import { errorText, onLangChange, t } from '../i18n';
import { RequestBook, newestFirst } from '../requests';
import { roomPath } from '../router';
import { CardDeck } from './card-deck';
import { listSection, pairedBanner, pushedRequest, subscribeLive } from './dashboard';
import { h, showError, type Page } from './dom';
import { lineTestPanel } from './line-test';
import { requestForm } from './request-form';

export function doctorPage(ctx: AppContext): Page {
  const me = ctx.auth.user;
  const book = new RequestBook();
  const take = (v: RequestView) => {
    if (v.requester === me.username) book.upsert(v);
  };
  const join = (id: string) => ctx.go(roomPath(id));

  const heading = h('h2');
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'page-error', hidden: true });
  const banner = pairedBanner('doctor', (v) => v.requester === me.username, join);
  const form = requestForm(take);
  const open = listSection('doctor.my_requests', 'my-requests', 'doctor.no_requests');
  const history = listSection('doctor.history', 'history', 'doctor.no_history');
  const deck = new CardDeck({ me, onChanged: take, onJoin: join, onStale: () => void load() });
  const lineTest = lineTestPanel(ctx);

  let loadError: ApiError | null = null;

  const render = () => {
    heading.textContent = t('doctor.heading');
    open.render();
    history.render();
    const all = book.all().sort(newestFirst);
    banner.render(all);
    deck.render([
      { container: open.list, empty: open.empty, views: all.filter((v) => !FINAL_STATES.includes(v.state)) },
      { container: history.list, empty: history.empty, views: all.filter((v) => FINAL_STATES.includes(v.state)) },
    ]);
    showError(error, loadError ? errorText(loadError.code, loadError.message) : null, loadError?.code);
  };

  let disposed = false;
  const load = async () => {
    try {
      const views = await api.listRequests('mine');
      if (disposed) return;
      loadError = null;
      book.replaceAll(views.filter((v) => v.requester === me.username));
    } catch (e) {
      loadError = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      render();
    }
  };

  const offBook = book.subscribe(render);
  const offLive = subscribeLive(
    ctx,
    (msg) => {
      const v = pushedRequest(msg);
      if (v) take(v);
    },
    () => void load(),
  );
  const offLang = onLangChange(render);
  render();
  void load();

  const el = h(
    'main',
    { class: 'page dashboard doctor-page', 'data-testid': 'page-doctor' },
    heading,
    error,
    banner.el,
    h('div', { class: 'dash-columns' }, h('div', { class: 'dash-col' }, form.el, lineTest.el), h('div', { class: 'dash-col' }, open.el, history.el)),
  );
  return {
    el,
    dispose() {
      disposed = true;
      offBook();
      offLive();
      offLang();
      form.dispose();
      deck.dispose();
      lineTest.dispose();
    },
  };
}
