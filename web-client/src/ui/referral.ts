// Proposing a two-way referral for a request (POST /requests/{id}/referrals):
// direction (up to a specialist centre, down to a county hospital or township
// clinic), receiving site, reason.
//
// Test ids: `referral-form`, `referral-direction` (select `up`|`down`),
// `referral-site` (select of site ids), `referral-reason` (textarea),
// `referral-submit`, `referral-error` (`data-code`), `field-error` lines with
// `data-field` `direction`|`to_site`|`reason`.

import { api, ApiError, MAX_REASON, type ReferralDirection, type RequestView } from '../api';
import { allSites } from '../catalog';
import { errorText, onLangChange, t } from '../i18n';
import { isRequestView } from '../requests';
import { h, setOptions, showError } from './dom';
import { FieldErrors, checkText, formField } from './fields';

export interface ReferralForm {
  el: HTMLElement;
  dispose(): void;
}

let counter = 0;

export function referralForm(requestId: string, onDone: (v: RequestView) => void): ReferralForm {
  const errors = new FieldErrors();
  const id = `referral-${++counter}`;
  const direction = h('select', { name: 'direction', 'data-testid': 'referral-direction' });
  const site = h('select', { name: 'to_site', 'data-testid': 'referral-site' });
  const reason = h('textarea', { name: 'reason', rows: 2, maxlength: MAX_REASON, 'data-testid': 'referral-reason' });
  const fDirection = formField(errors, `${id}-direction`, 'direction', direction);
  const fSite = formField(errors, `${id}-site`, 'to_site', site);
  const fReason = formField(errors, `${id}-reason`, 'reason', reason);
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'referral-error', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn', 'data-testid': 'referral-submit' });
  const form = h(
    'form',
    { class: 'referral-form', 'data-testid': 'referral-form', novalidate: true },
    h('div', { class: 'row' }, fDirection.el, fSite.el),
    fReason.el,
    error,
    submit,
  );

  let busy = false;
  let problem: ApiError | null = null;

  const siteOptions = () => {
    const up = direction.value !== 'down';
    const sites = allSites().filter((s) =>
      up ? s.kind === 'specialist_centre' : s.kind !== 'specialist_centre',
    );
    setOptions(site, [['', t('common.choose')], ...sites.map((s): [string, string] => [s.id, s.name])]);
  };

  const render = () => {
    fDirection.label.textContent = t('referral.direction');
    fSite.label.textContent = t('referral.site');
    fReason.label.textContent = t('referral.reason');
    submit.textContent = busy ? t('common.busy') : t('referral.submit');
    submit.disabled = busy;
    setOptions(direction, [
      ['up', t('direction.up')],
      ['down', t('direction.down')],
    ]);
    siteOptions();
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);
    errors.render();
  };
  direction.addEventListener('change', siteOptions);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    errors.clear();
    problem = null;
    if (!site.value) errors.client('to_site', 'validate.site', 'required');
    checkText(errors, 'reason', reason.value, 1, MAX_REASON, { required: 'validate.reason' });
    if (errors.size > 0) {
      errors.render();
      errors.focusFirst();
      render();
      return;
    }
    busy = true;
    render();
    try {
      const res = await api.refer(requestId, direction.value as ReferralDirection, site.value, reason.value.trim());
      reason.value = '';
      onDone(isRequestView(res) ? res : await api.getRequest(requestId));
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      const unplaced = errors.server(err.fields);
      problem = err.fields.length === 0 || unplaced.length > 0 ? err : null;
    } finally {
      busy = false;
      render();
    }
  });

  render();
  const off = onLangChange(render);
  return { el: form, dispose: off };
}
