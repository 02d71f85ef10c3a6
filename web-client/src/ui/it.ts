// The IT administrator's page: line and call quality (GET /api/v1/quality) and
// each site's latest line measurement with the relay's budget for it (GET
// /api/v1/line-measurements/latest), refreshed every 5 s; the line test of
// this computer's line. No clinical content.
//
// Test ids: `page-it`, `quality-summary` with `quality-rooms`,
// `quality-participants`, `quality-rtp-in`, `quality-rtp-out`,
// `quality-keyframes` (each `data-value`), `quality-table` with one
// `quality-row` per site (`data-site-id`), `quality-updated` (`data-at`,
// Unix ms of the last successful refresh), `page-error` (`data-code`),
// `lines-table` with one `line-row` per site (`data-site-id`, `data-budget-kbps`,
// `data-budget-source`, `data-down-kbps`), and the line test (line-test.ts).

import { api, ApiError, type Quality, type SiteLine } from '../api';
import type { AppContext } from '../context';
import { allSites } from '../catalog';
import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { h, showError, type Page } from './dom';
import { formatTime } from './format';
import { lineTestPanel } from './line-test';

const REFRESH_MS = 5000;

export function itPage(ctx: AppContext): Page {
  const heading = h('h2');
  const updated = h('p', { class: 'hint', 'data-testid': 'quality-updated' });
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'page-error', hidden: true });
  const summary = h('dl', { class: 'quality-summary', 'data-testid': 'quality-summary' });
  const table = h('table', { class: 'data-table', 'data-testid': 'quality-table' });
  const linesHeading = h('h3');
  const lines = h('table', { class: 'data-table', 'data-testid': 'lines-table' });
  const lineTest = lineTestPanel(ctx);
  let siteLines: SiteLine[] = [];

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
    renderLines();
  };

  const renderLines = () => {
    linesHeading.textContent = t('it.lines');
    const cols: MessageKey[] = ['it.site', 'it.line_measured', 'it.line_source', 'it.line_down', 'it.line_up', 'it.line_rtt', 'it.line_loss', 'it.line_budget'];
    const rows = siteLines.map((l) => {
      const m = l.measurement;
      const name = allSites().find((x) => x.id === l.site)?.name ?? l.site;
      const cells = m
        ? [formatTime(m.measured_at), t(`it.source_${m.source}`), String(m.down_kbps), String(m.up_kbps), String(m.rtt_ms), String(m.loss_pct)]
        : [t('it.no_measurement'), '', '', '', '', ''];
      return h(
        'tr',
        {
          'data-testid': 'line-row',
          'data-site-id': l.site,
          'data-budget-kbps': l.budget_kbps,
          'data-budget-source': l.budget_source,
          'data-down-kbps': m ? m.down_kbps : '',
        },
        h('td', {}, name),
        ...cells.map((c, i) => h('td', { class: i >= 2 ? 'num' : undefined }, c)),
        h('td', { class: 'num' }, `${l.budget_kbps} (${t(`it.budget_${l.budget_source}`)})`),
      );
    });
    if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: cols.length, class: 'empty' }, t('it.empty'))));
    lines.replaceChildren(h('thead', {}, h('tr', {}, ...cols.map((k) => h('th', {}, t(k))))), h('tbody', {}, ...rows));
  };

  let disposed = false;
  const load = async () => {
    try {
      const [q, l] = await Promise.all([api.quality(), api.latestLineMeasurements()]);
      if (disposed) return;
      quality = q;
      siteLines = l;
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
  const el = h(
    'main',
    { class: 'page admin-page', 'data-testid': 'page-it' },
    heading,
    updated,
    error,
    summary,
    table,
    linesHeading,
    lines,
    lineTest.el,
  );
  return {
    el,
    dispose() {
      disposed = true;
      window.clearInterval(timer);
      off();
      lineTest.dispose();
    },
  };
}
