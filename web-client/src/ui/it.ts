// The IT administrator's page: line and call quality (GET /api/v1/quality),
// refreshed every 5 s. No clinical content.
//
// Test ids: `page-it`, `quality-summary` with `quality-rooms`,
// `quality-participants`, `quality-rtp-in`, `quality-rtp-out`,
// `quality-keyframes` (each `data-value`), `quality-table` with one
// `quality-row` per site (`data-site-id`), `quality-updated` (`data-at`,
// Unix ms of the last successful refresh), `page-error` (`data-code`).

import { api, ApiError, type Quality } from '../api';
import { allSites } from '../catalog';
import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { h, showError, type Page } from './dom';
import { formatTime } from './format';

const REFRESH_MS = 5000;

export function itPage(): Page {
  const heading = h('h2');
  const updated = h('p', { class: 'hint', 'data-testid': 'quality-updated' });
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'page-error', hidden: true });
  const summary = h('dl', { class: 'quality-summary', 'data-testid': 'quality-summary' });
  const table = h('table', { class: 'data-table', 'data-testid': 'quality-table' });

  let quality: Quality | null = null;
  let at: number | null = null;
  let problem: ApiError | null = null;

  const render = () => {
    heading.textContent = t('it.heading');
    updated.textContent = at ? t('it.updated', { time: formatTime(at) }) : t('common.loading');
    if (at) updated.dataset.at = String(at);
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);
    const q = quality;
    const items: [MessageKey, string, number | undefined][] = [
      ['it.rooms', 'quality-rooms', q?.rooms],
      ['it.participants', 'quality-participants', q?.participants],
      ['it.rtp_in', 'quality-rtp-in', q?.rtp_packets_in],
      ['it.rtp_out', 'quality-rtp-out', q?.rtp_packets_out],
      ['it.keyframes', 'quality-keyframes', q?.keyframe_requests],
    ];
    summary.replaceChildren(
      ...items.flatMap(([label, testid, value]) => [
        h('dt', {}, t(label)),
        h('dd', { 'data-testid': testid, 'data-value': value ?? '' }, value === undefined ? t('common.none') : String(value)),
      ]),
    );
    const head = h(
      'tr',
      {},
      ...(['it.site', 'it.kind', 'it.capacity', 'it.active', 'it.waiting'] as MessageKey[]).map((k) => h('th', {}, t(k))),
    );
    const rows = (q?.sites ?? []).map((s) => {
      const kind = allSites().find((x) => x.id === s.site_id)?.kind;
      return h(
        'tr',
        { 'data-testid': 'quality-row', 'data-site-id': s.site_id },
        h('td', {}, s.name),
        h('td', {}, kind ? t(`site_kind.${kind}`) : t('common.none')),
        h('td', { class: 'num' }, String(s.line_capacity_kbps)),
        h('td', { class: 'num', 'data-testid': 'quality-active' }, String(s.active_consultations)),
        h('td', { class: 'num', 'data-testid': 'quality-waiting' }, String(s.waiting_requests)),
      );
    });
    if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, t('it.empty'))));
    table.replaceChildren(h('thead', {}, head), h('tbody', {}, ...rows));
  };

  let disposed = false;
  const load = async () => {
    try {
      const q = await api.quality();
      if (disposed) return;
      quality = q;
      at = Date.now();
      problem = null;
    } catch (e) {
      if (disposed) return;
      problem = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
    }
    render();
  };

  render();
  void load();
  const timer = window.setInterval(() => void load(), REFRESH_MS);
  const off = onLangChange(render);
  const el = h('main', { class: 'page admin-page', 'data-testid': 'page-it' }, heading, updated, error, summary, table);
  return {
    el,
    dispose() {
      disposed = true;
      window.clearInterval(timer);
      off();
    },
  };
}
