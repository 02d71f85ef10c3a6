// Form fields with a label, an optional hint and an error line under the
// field, and the bookkeeping of field errors from client-side validation and
// from the server's 422 `fields`.
//
// Test ids: every error line is `field-error` with `data-field` (the field name
// as in the request body), `data-code` and `data-source` (`client`|`server`).

import type { FieldError } from '../api';
import { getLang, hasKey, t, type MessageKey } from '../i18n';
import { h } from './dom';

export type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

export interface FormField {
  el: HTMLElement;
  label: HTMLLabelElement;
  hint: HTMLElement | null;
}

/** A labelled control (`id` links the label) with its error line registered in `errors`. */
export function formField(
  errors: FieldErrors,
  id: string,
  field: string,
  control: Control,
  withHint = false,
): FormField {
  control.id = id;
  const label = h('label', { for: id });
  const hint = withHint ? h('div', { class: 'hint', id: `${id}-hint` }) : null;
  if (hint) control.setAttribute('aria-describedby', hint.id);
  const error = errors.register(field, control);
  const el = h('div', { class: 'field' }, label, control, hint, error);
  return { el, label, hint };
}

/** A checkbox with its label text to the right. */
export function checkField(errors: FieldErrors, id: string, field: string, box: HTMLInputElement): FormField {
  box.id = id;
  const label = h('label', { for: id });
  const error = errors.register(field, box);
  const el = h('div', { class: 'field field-check' }, h('div', { class: 'check-row' }, box, label), error);
  return { el, label, hint: null };
}

type Problem =
  | { source: 'client'; key: MessageKey; code: string }
  | { source: 'server'; code: string; message: string };

/** Localised text for a server field error; the server's own sentence in English. */
function serverText(field: string, code: string, message: string): string {
  if (getLang() === 'en' && message) return message;
  const specific = `fielderr.${field}.${code}`;
  if (hasKey(specific)) return t(specific);
  if (field === 'patient_pseudonym' && code === 'invalid_format') return t('validate.pseudonym');
  if (field === 'patient_pseudonym' && code === 'invalid_value') return t('validate.pseudonym_id');
  const generic = `fielderr.${code}`;
  return hasKey(generic) ? t(generic) : message || code;
}

export class FieldErrors {
  private readonly lines = new Map<string, { el: HTMLElement; control: Control }>();
  private readonly problems = new Map<string, Problem>();

  /** Creates the error line of `field`. */
  register(field: string, control: Control): HTMLElement {
    const el = h('div', {
      class: 'field-error',
      role: 'alert',
      'data-testid': 'field-error',
      'data-field': field,
      hidden: true,
    });
    el.id = `${control.id || field}-error`;
    this.lines.set(field, { el, control });
    return el;
  }

  clear(): void {
    this.problems.clear();
    this.render();
  }

  get size(): number {
    return this.problems.size;
  }

  /** A client-side problem with `field` (the first one per field wins). */
  client(field: string, key: MessageKey, code = 'invalid'): void {
    if (!this.problems.has(field)) this.problems.set(field, { source: 'client', key, code });
  }

  /** The server's field errors; returns those that have no line on this form. */
  server(errors: FieldError[]): FieldError[] {
    const unplaced: FieldError[] = [];
    for (const e of errors) {
      if (!this.lines.has(e.field)) {
        unplaced.push(e);
        continue;
      }
      if (!this.problems.has(e.field)) {
        this.problems.set(e.field, { source: 'server', code: e.code, message: e.message });
      }
    }
    this.render();
    return unplaced;
  }

  /** Focuses the first control with a problem. */
  focusFirst(): void {
    for (const [field, line] of this.lines) {
      if (this.problems.has(field)) {
        line.control.focus();
        return;
      }
    }
  }

  /** Shows the problems (again: call after a language change). */
  render(): void {
    for (const [field, { el, control }] of this.lines) {
      const p = this.problems.get(field);
      if (!p) {
        el.hidden = true;
        el.textContent = '';
        delete el.dataset.code;
        delete el.dataset.source;
        delete el.dataset.message;
        control.removeAttribute('aria-invalid');
        continue;
      }
      el.hidden = false;
      el.dataset.source = p.source;
      el.dataset.code = p.code;
      if (p.source === 'client') {
        el.textContent = t(p.key);
        delete el.dataset.message;
      } else {
        el.textContent = serverText(field, p.code, p.message);
        el.dataset.message = p.message;
        el.title = p.message;
      }
      control.setAttribute('aria-invalid', 'true');
    }
  }
}

/** Free text like the server's `text` rule: trimmed length `min..max`, no control characters. */
export function checkText(
  errors: FieldErrors,
  field: string,
  value: string,
  min: number,
  max: number,
  keys: { required: MessageKey; tooLong?: MessageKey },
): void {
  const n = [...value.trim()].length;
  if (n === 0 && min > 0) errors.client(field, keys.required, 'required');
  else if (n < min) errors.client(field, keys.required, 'too_short');
  else if ([...value].length > max) errors.client(field, keys.tooLong ?? keys.required, 'too_long');
  // eslint-disable-next-line no-control-regex
  else if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(value)) {
    errors.client(field, 'validate.control_chars', 'invalid_format');
  }
}
