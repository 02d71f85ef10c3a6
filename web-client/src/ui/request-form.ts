// The referring doctor's new-request form (POST /api/v1/requests), with
// client-side checks that mirror the server's rules, and the server's 422
// field errors shown next to their fields.
//
// Test ids: `request-form`, `req-pseudonym`, `req-specialty` (select of
// specialty ids), `req-urgency` (select `routine`|`urgent`|`emergency`),
// `req-question` (textarea), `req-centre` (select: `""` = any, else a
// specialist-centre id), `req-consent` (checkbox), `req-consent-method`
// (select `written`|`verbal`|`electronic`), `req-submit`, `form-error`
// (`data-code`), `form-success`; `field-error` lines (fields.ts) with
// `data-field` `patient_pseudonym`|`specialty`|`urgency`|`question`|
// `preferred_centre`|`consent`|`consent_method`.
// Test hook: `window.__telemed.clientValidation = false` skips the client-side
// checks, so a test can see the server's field errors.

import { api, ApiError, CONSENT_METHODS, MAX_QUESTION, URGENCIES, type NewRequest, type RequestView } from '../api';
import { allSpecialties, centres, specialtyName } from '../catalog';
import { errorText, onLangChange, t } from '../i18n';
import { h, setOptions, showError } from './dom';
import { FieldErrors, checkField, checkText, formField } from './fields';

const PSEUDONYM = /^[A-Za-z0-9-]{3,32}$/;
const RESIDENT_ID = /^[0-9]{17}[0-9Xx]$/;

export interface RequestForm {
  el: HTMLElement;
  dispose(): void;
}

export function requestForm(onCreated: (view: RequestView) => void): RequestForm {
  const errors = new FieldErrors();
  const pseudonym = h('input', {
    type: 'text',
    name: 'patient_pseudonym',
    maxlength: 64,
    spellcheck: 'false',
    autocomplete: 'off',
    'data-testid': 'req-pseudonym',
  });
  const specialty = h('select', { name: 'specialty', 'data-testid': 'req-specialty' });
  const urgency = h('select', { name: 'urgency', 'data-testid': 'req-urgency' });
  const question = h('textarea', { name: 'question', rows: 4, 'data-testid': 'req-question' });
  const centre = h('select', { name: 'preferred_centre', 'data-testid': 'req-centre' });
  const consent = h('input', { type: 'checkbox', name: 'consent', 'data-testid': 'req-consent' });
  const consentMethod = h('select', { name: 'consent_method', 'data-testid': 'req-consent-method' });

  const fPseudonym = formField(errors, 'req-pseudonym', 'patient_pseudonym', pseudonym, true);
  const fSpecialty = formField(errors, 'req-specialty', 'specialty', specialty);
  const fUrgency = formField(errors, 'req-urgency', 'urgency', urgency);
  const fQuestion = formField(errors, 'req-question', 'question', question, true);
  const fCentre = formField(errors, 'req-centre', 'preferred_centre', centre);
  const fConsent = checkField(errors, 'req-consent', 'consent', consent);
  const fConsentMethod = formField(errors, 'req-consent-method', 'consent_method', consentMethod);

  const heading = h('h3');
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'form-error', hidden: true });
  const success = h('div', { class: 'success', role: 'status', 'data-testid': 'form-success', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-large', 'data-testid': 'req-submit' });
  const form = h(
    'form',
    { class: 'card request-form', 'data-testid': 'request-form', novalidate: true },
    heading,
    fPseudonym.el,
    h('div', { class: 'row' }, fSpecialty.el, fUrgency.el, fCentre.el),
    fQuestion.el,
    h('div', { class: 'row consent-row' }, fConsent.el, fConsentMethod.el),
    error,
    success,
    submit,
  );

  let busy = false;
  let problem: ApiError | { code: 'validation_failed'; message: string } | null = null;
  let submitted: string | null = null;

  const render = () => {
    heading.textContent = t('form.heading');
    fPseudonym.label.textContent = t('form.pseudonym');
    fPseudonym.hint!.textContent = t('form.pseudonym_hint');
    fSpecialty.label.textContent = t('form.specialty');
    fUrgency.label.textContent = t('form.urgency');
    fQuestion.label.textContent = t('form.question');
    fQuestion.hint!.textContent = t('form.question_hint', { n: String([...question.value].length) });
    fCentre.label.textContent = t('form.centre');
    fConsent.label.textContent = t('form.consent');
    fConsentMethod.label.textContent = t('form.consent_method');
    setOptions(specialty, [
      ['', t('common.choose')],
      ...allSpecialties().map((s): [string, string] => [s.id, specialtyName(s.id)]),
    ]);
    setOptions(
      urgency,
      URGENCIES.map((u): [string, string] => [u, t(`urgency.${u}`)]),
    );
    setOptions(centre, [['', t('form.centre_any')], ...centres().map((c): [string, string] => [c.id, c.name])]);
    setOptions(consentMethod, [
      ['', t('common.choose')],
      ...CONSENT_METHODS.map((m): [string, string] => [m, t(`consent.${m}`)]),
    ]);
    submit.textContent = busy ? t('form.busy') : t('form.submit');
    submit.disabled = busy;
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);
    success.hidden = submitted === null;
    success.textContent = submitted ? t('form.submitted', { pseudonym: submitted }) : '';
    errors.render();
  };
  question.addEventListener('input', () => {
    fQuestion.hint!.textContent = t('form.question_hint', { n: String([...question.value].length) });
  });

  const validate = () => {
    const p = pseudonym.value;
    if (!p) errors.client('patient_pseudonym', 'validate.required', 'required');
    else if (!PSEUDONYM.test(p)) errors.client('patient_pseudonym', 'validate.pseudonym', 'invalid_format');
    else if (RESIDENT_ID.test(p)) errors.client('patient_pseudonym', 'validate.pseudonym_id', 'invalid_value');
    if (!specialty.value) errors.client('specialty', 'validate.required', 'required');
    if (!URGENCIES.includes(urgency.value as NewRequest['urgency'])) {
      errors.client('urgency', 'validate.required', 'required');
    }
    checkText(errors, 'question', question.value, 1, MAX_QUESTION, {
      required: 'validate.question',
      tooLong: 'validate.question_long',
    });
    if (!consent.checked) errors.client('consent', 'validate.consent', 'required');
    if (!consentMethod.value) errors.client('consent_method', 'validate.required', 'required');
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    errors.clear();
    problem = null;
    submitted = null;
    if (window.__telemed?.clientValidation !== false) validate();
    if (errors.size > 0) {
      problem = { code: 'validation_failed', message: t('form.fix_fields') };
      render();
      errors.focusFirst();
      return;
    }
    busy = true;
    render();
    const body: NewRequest = {
      patient_pseudonym: pseudonym.value,
      specialty: specialty.value,
      urgency: urgency.value as NewRequest['urgency'],
      question: question.value,
      preferred_centre: centre.value || null,
      consent_method: consentMethod.value as NewRequest['consent_method'],
    };
    try {
      const view = await api.createRequest(body);
      submitted = view.patient_pseudonym;
      pseudonym.value = '';
      question.value = '';
      consent.checked = false;
      onCreated(view);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      const unplaced = errors.server(err.fields);
      // Field errors are shown at their fields; any without a field on this form go in the summary.
      problem =
        unplaced.length > 0
          ? new ApiError(err.status, 'unknown', unplaced.map((f) => `${f.field}: ${f.message}`).join('; '))
          : err;
      busy = false;
      render();
      errors.focusFirst();
      return;
    }
    busy = false;
    render();
  });

  render();
  const off = onLangChange(render);
  return { el: form, dispose: off };
}
