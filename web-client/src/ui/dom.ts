// A tiny helper to build DOM elements.

type Attrs = Record<string, string | number | boolean | undefined>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === 'class') el.className = String(value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/** A mounted page: its element and what to undo when it is replaced. */
export interface Page {
  el: HTMLElement;
  dispose(): void;
}

/** Shows `text` in an error element (or hides it when null), with `data-code`. */
export function showError(el: HTMLElement, text: string | null, code?: string): void {
  el.textContent = text ?? '';
  el.hidden = text === null;
  if (text !== null && code) el.dataset.code = code;
  else delete el.dataset.code;
}

/** Builds a `<select>` with `options` ([value, label]) keeping the current value when possible. */
export function setOptions(select: HTMLSelectElement, options: [string, string][]): void {
  const value = select.value;
  select.replaceChildren(...options.map(([v, label]) => h('option', { value: v }, label)));
  if (options.some(([v]) => v === value)) select.value = value;
}
