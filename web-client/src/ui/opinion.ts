// The specialist's opinion: a read-only view of a signed opinion, and the
// editor (save draft = PUT opinion, sign = POST opinion/sign after a confirm
// step).
//
// Test ids, view: `opinion-view` (`data-signed` `true`|`false`),
// `opinion-findings`, `opinion-diagnosis`, `opinion-recommendations`,
// `opinion-follow-up`, `opinion-signer`, `opinion-signed-at` (`data-at`, Unix
// ms), `opinion-digest`.
// Editor: `opinion-editor` (`data-request-id`), `opinion-input-findings`,
// `opinion-input-diagnosis`, `opinion-input-recommendations`,
// `opinion-input-follow-up` (textareas), `opinion-save`, `opinion-sign`,
// `opinion-sign-confirm` (the confirm panel), `opinion-sign-confirm-button`,
// `opinion-sign-cancel`, `opinion-status` (`data-state`
// `clean`|`dirty`|`saved`), `opinion-error` (`data-code`), and `field-error`
// lines (see fields.ts) with `data-field` `findings`|`diagnosis`|
// `recommendations`|`follow_up`.

import { api, ApiError, MAX_OPINION_FIELD, type Opinion, type OpinionText, type RequestView } from '../api';
import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { isRequestView } from '../requests';
import { h, showError } from './dom';
import { FieldErrors, formField } from './fields';
import { formatTime } from './format';

const PARTS: { key: keyof OpinionText; label: MessageKey; testid: string }[] = [
  { key: 'findings', label: 'opinion.findings', testid: 'findings' },
  { key: 'diagnosis', label: 'opinion.diagnosis', testid: 'diagnosis' },
  { key: 'recommendations', label: 'opinion.recommendations', testid: 'recommendations' },
  { key: 'follow_up', label: 'opinion.follow_up', testid: 'follow-up' },
];

const MAX_PART = MAX_OPINION_FIELD;

export interface OpinionViewPart {
  el: HTMLElement;
  update(opinion: Opinion): void;
  dispose(): void;
}

/** A read-only opinion (normally a signed one). */
export function opinionView(opinion: Opinion): OpinionViewPart {
  const heading = h('h4');
  const dl = h('dl', { class: 'opinion-fields' });
  const el = h('section', { class: 'opinion-view', 'data-testid': 'opinion-view' }, heading, dl);
  let current = opinion;

  const render = () => {
    heading.textContent = t('opinion.heading');
    const rows: HTMLElement[] = [];
    for (const p of PARTS) {
      rows.push(
        h('dt', {}, t(p.label)),
        h('dd', { class: 'prewrap', 'data-testid': `opinion-${p.testid}` }, current[p.key] || t('common.none')),
      );
    }
    const sig = current.signature;
    el.dataset.signed = String(sig !== null);
    if (sig) {
      rows.push(
        h('dt', {}, t('opinion.signed_by')),
        h('dd', { 'data-testid': 'opinion-signer', 'data-username': sig.signed_by }, sig.signer_name),
        h('dt', {}, t('opinion.signed_at')),
        h('dd', { 'data-testid': 'opinion-signed-at', 'data-at': sig.signed_at }, formatTime(sig.signed_at)),
        h('dt', {}, t('opinion.digest')),
        h('dd', { class: 'digest', 'data-testid': 'opinion-digest' }, sig.digest),
      );
    }
    dl.replaceChildren(...rows);
  };
  render();
  const off = onLangChange(render);
  return {
    el,
    update(o) {
      current = o;
      render();
    },
    dispose: off,
  };
}

export interface OpinionEditor {
  el: HTMLElement;
  /** A newer view of the request: fields not being edited take the stored draft. */
  update(view: RequestView): void;
  dispose(): void;
}

/**
 * The editor for the specialist of `view`. `onChanged` gets each RequestView
 * the server answers (after save and sign).
 */
export function opinionEditor(view: RequestView, onChanged: (v: RequestView) => void): OpinionEditor {
  const errors = new FieldErrors();
  const idBase = `opinion-${view.id.replace(/[^A-Za-z0-9_-]/g, '')}-${Math.random().toString(36).slice(2, 7)}`;
  const heading = h('h4');
  const inputs = new Map<keyof OpinionText, HTMLTextAreaElement>();
  const fields = PARTS.map((p) => {
    const ta = h('textarea', {
      name: p.key,
      rows: p.key === 'findings' ? 4 : 3,
      maxlength: MAX_PART,
      'data-testid': `opinion-input-${p.testid}`,
    });
    inputs.set(p.key, ta);
    return { part: p, field: formField(errors, `${idBase}-${p.key}`, p.key, ta) };
  });

  const status = h('div', { class: 'opinion-status hint', 'data-testid': 'opinion-status', role: 'status' });
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'opinion-error', hidden: true });
  const save = h('button', { type: 'button', class: 'btn', 'data-testid': 'opinion-save' });
  const sign = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'opinion-sign' });
  const confirmText = h('p');
  const confirmButton = h('button', {
    type: 'button',
    class: 'btn btn-primary',
    'data-testid': 'opinion-sign-confirm-button',
  });
  const confirmCancel = h('button', { type: 'button', class: 'btn', 'data-testid': 'opinion-sign-cancel' });
  const confirm = h(
    'div',
    { class: 'confirm', 'data-testid': 'opinion-sign-confirm', role: 'alertdialog', hidden: true },
    confirmText,
    h('div', { class: 'actions' }, confirmButton, confirmCancel),
  );

  const el = h(
    'section',
    { class: 'opinion-editor', 'data-testid': 'opinion-editor', 'data-request-id': view.id },
    heading,
    ...fields.map((f) => f.field.el),
    status,
    error,
    h('div', { class: 'actions' }, save, sign),
    confirm,
  );

  let current = view;
  /** The text last loaded from or saved to the server. */
  let stored: OpinionText = textOf(view.opinion);
  let savedAt: number | null = view.opinion?.updated_at ?? null;
  let busy = false;
  let problem: ApiError | null = null;

  for (const [key, ta] of inputs) ta.value = stored[key];

  const currentText = (): OpinionText => ({
    findings: inputs.get('findings')!.value,
    diagnosis: inputs.get('diagnosis')!.value,
    recommendations: inputs.get('recommendations')!.value,
    follow_up: inputs.get('follow_up')!.value,
  });
  const dirty = () => {
    const now = currentText();
    return PARTS.some((p) => now[p.key] !== stored[p.key]);
  };

  const render = () => {
    heading.textContent = t('opinion.heading');
    for (const f of fields) f.field.label.textContent = t(f.part.label);
    save.textContent = t('opinion.save');
    sign.textContent = t('opinion.sign');
    confirmText.textContent = t('opinion.sign_confirm_text');
    confirmButton.textContent = t('opinion.sign_confirm');
    confirmCancel.textContent = t('common.back');
    const isDirty = dirty();
    status.dataset.state = isDirty ? 'dirty' : savedAt ? 'saved' : 'clean';
    status.textContent = isDirty
      ? t('opinion.dirty')
      : savedAt
        ? t('opinion.saved', { time: formatTime(savedAt) })
        : '';
    save.disabled = busy;
    sign.disabled = busy;
    confirmButton.disabled = busy;
    for (const ta of inputs.values()) ta.readOnly = busy;
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);
    errors.render();
  };

  for (const ta of inputs.values()) ta.addEventListener('input', render);

  const validate = (forSigning: boolean): boolean => {
    errors.clear();
    const text = currentText();
    for (const p of PARTS) {
      if ([...text[p.key]].length > MAX_PART) errors.client(p.key, 'fielderr.too_long', 'too_long');
    }
    if (forSigning) {
      if (!text.diagnosis.trim()) errors.client('diagnosis', 'validate.diagnosis_needed', 'required');
      if (!text.recommendations.trim()) {
        errors.client('recommendations', 'validate.recommendations_needed', 'required');
      }
    }
    errors.render();
    if (errors.size > 0) errors.focusFirst();
    return errors.size === 0;
  };

  const handle = (e: unknown) => {
    const err = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
    if (err.fields.length > 0) {
      const unplaced = errors.server(err.fields);
      problem = unplaced.length > 0 ? new ApiError(err.status, err.code, unplaced[0].message) : null;
      errors.focusFirst();
    } else {
      problem = err;
    }
  };

  const saveDraft = async (): Promise<boolean> => {
    const text = currentText();
    const res = await api.saveOpinion(current.id, text);
    stored = text;
    savedAt = Date.now();
    if (isRequestView(res)) {
      savedAt = res.opinion?.updated_at ?? savedAt;
      current = res;
      onChanged(res);
    }
    return true;
  };

  save.addEventListener('click', async () => {
    if (busy || !validate(false)) return;
    busy = true;
    problem = null;
    render();
    try {
      await saveDraft();
    } catch (e) {
      handle(e);
    } finally {
      busy = false;
      render();
    }
  });

  sign.addEventListener('click', () => {
    problem = null;
    if (!validate(true)) {
      render();
      return;
    }
    confirm.hidden = false;
    render();
    confirmButton.focus();
  });
  confirmCancel.addEventListener('click', () => {
    confirm.hidden = true;
    sign.focus();
  });
  confirmButton.addEventListener('click', async () => {
    if (busy || !validate(true)) return;
    busy = true;
    problem = null;
    render();
    try {
      // The signed text is what is stored: save what is on screen first.
      if (dirty() || !current.opinion) await saveDraft();
      const res = await api.signOpinion(current.id);
      confirm.hidden = true;
      if (isRequestView(res)) onChanged(res);
      else onChanged(await api.getRequest(current.id));
    } catch (e) {
      handle(e);
    } finally {
      busy = false;
      render();
    }
  });

  render();
  const off = onLangChange(render);
  return {
    el,
    update(v) {
      current = v;
      const incoming = textOf(v.opinion);
      // Only fields the user has not touched take the stored draft.
      for (const p of PARTS) {
        const ta = inputs.get(p.key)!;
        if (ta.value === stored[p.key]) ta.value = incoming[p.key];
      }
      stored = incoming;
      if (v.opinion) savedAt = v.opinion.updated_at;
      render();
    },
    dispose: off,
  };
}

function textOf(o: Opinion | null): OpinionText {
  return {
    findings: o?.findings ?? '',
    diagnosis: o?.diagnosis ?? '',
    recommendations: o?.recommendations ?? '',
    follow_up: o?.follow_up ?? '',
  };
}
