// The top bar: the service name and the language switch.

import { LANGS, getLang, onLangChange, setLang, t, type Lang } from '../i18n';
import { h } from './dom';

export function renderHeader(): HTMLElement {
  const title = h('h1', { class: 'app-title' });
  const label = h('label', { for: 'lang-select', class: 'lang-label' });
  const select = h('select', { id: 'lang-select', 'data-testid': 'lang' });
  for (const { lang, label: name } of LANGS) {
    select.append(h('option', { value: lang, lang }, name));
  }
  select.value = getLang();
  select.addEventListener('change', () => setLang(select.value as Lang));

  const update = () => {
    title.textContent = t('app.title');
    label.textContent = t('lang.label');
    select.value = getLang();
    document.title = `${t('app.title')} · Telemed`;
  };
  update();
  onLangChange(update);

  return h('header', { class: 'app-header' }, title, h('div', { class: 'lang' }, label, select));
}
