// The line test panel (linetest.ts): a button that tests this computer's line to the relay for
// LINE_TEST_SECONDS, shows capacity down and up, RTT and loss with a plain verdict, and stores the
// result for the user's site. On the doctor's and the specialist's dashboards (before a
// consultation) and the IT page.
//
// Test ids: `line-test` (section), `line-test-start` (button), `line-test-status` (`data-state`
// `idle`|`running`|`done`|`failed`), `line-test-result` (`data-verdict`, `data-down-kbps`,
// `data-up-kbps`, `data-rtt-ms`, `data-loss-pct`), `line-test-saved` (`data-saved` `true`|`false`).

import { api, ApiError } from '../api';
import type { AppContext } from '../context';
import { errorText, onLangChange, t } from '../i18n';
import { LINE_TEST_SECONDS, runLineTest, type LineTestResult } from '../linetest';
import { SignalingError } from '../signaling';
import { h, type Page } from './dom';

type State = 'idle' | 'running' | 'done' | 'failed';

export function lineTestPanel(ctx: AppContext): Page {
  const me = ctx.auth.user;
  const heading = h('h3');
  const hint = h('p', { class: 'hint' });
  const start = h('button', { type: 'button', class: 'btn', 'data-testid': 'line-test-start' });
  const status = h('p', { 'data-testid': 'line-test-status', role: 'status' });
  const result = h('dl', { class: 'line-test-result', 'data-testid': 'line-test-result', hidden: true });
  const saved = h('p', { class: 'hint', 'data-testid': 'line-test-saved', hidden: true });

  let state: State = 'idle';
  let done = 0;
  let outcome: LineTestResult | null = null;
  let problem: { code: string; message: string } | null = null;
  let saveProblem: ApiError | null = null;
  let savedOk = false;
  let disposed = false;

  const render = () => {
    heading.textContent = t('line_test.heading');
    hint.textContent = t('line_test.hint', { seconds: String(LINE_TEST_SECONDS) });
    start.textContent = state === 'running' ? t('line_test.running') : t('line_test.start');
    start.disabled = state === 'running';
    status.dataset.state = state;
    status.textContent =
      state === 'running'
        ? t('line_test.progress', { done: String(done), total: String(LINE_TEST_SECONDS) })
        : state === 'failed' && problem
          ? t('line_test.failed', { error: errorText(problem.code, problem.message) })
          : '';
    result.hidden = outcome === null;
    if (outcome) {
      const r = outcome;
      Object.assign(result.dataset, {
        verdict: r.verdict,
        downKbps: String(r.down_kbps),
        upKbps: String(r.up_kbps),
        rttMs: String(r.rtt_ms),
        lossPct: String(r.loss_pct),
      });
      const rows: [string, string][] = [
        [t('line_test.verdict'), t(`line_test.verdict_${r.verdict}`)],
        [t('line_test.down'), `${r.down_kbps} kbit/s`],
        [t('line_test.up'), `${r.up_kbps} kbit/s`],
        [t('line_test.rtt'), `${r.rtt_ms} ms`],
        [t('line_test.loss'), `${r.loss_pct} %`],
      ];
      result.className = `line-test-result verdict-${r.verdict}`;
      result.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    }
    saved.hidden = outcome === null;
    saved.dataset.saved = String(savedOk);
    saved.textContent = savedOk
      ? t('line_test.saved')
      : saveProblem
        ? t('line_test.not_saved', { error: errorText(saveProblem.code, saveProblem.message) })
        : '';
  };

  const run = async () => {
    if (state === 'running') return;
    state = 'running';
    done = 0;
    outcome = null;
    problem = null;
    saveProblem = null;
    savedOk = false;
    render();
    try {
      const sig = await ctx.live.ready();
      const r = await runLineTest(sig, me, (s) => {
        done = s;
        if (!disposed) render();
      });
      if (disposed) return;
      outcome = r;
      state = 'done';
      render();
      const { verdict: _verdict, ...measurement } = r;
      try {
        await api.saveLineMeasurement(me.site_id, measurement);
        savedOk = true;
      } catch (e) {
        saveProblem = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      }
    } catch (e) {
      state = 'failed';
      problem =
        e instanceof SignalingError || e instanceof ApiError
          ? { code: e.code, message: e.message }
          : { code: 'unknown', message: String(e) };
    }
    if (!disposed) render();
  };
  start.addEventListener('click', () => void run());

  const off = onLangChange(render);
  render();
  const el = h('section', { class: 'card line-test', 'data-testid': 'line-test' }, heading, hint, start, status, result, saved);
  return {
    el,
    dispose() {
      disposed = true;
      off();
    },
  };
}
