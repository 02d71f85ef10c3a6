// The top bar: the service name, who is logged in, the live connection, the
// logout button and the language switch.
//
// Test ids: `lang` (select, `zh-CN`|`en`), `current-user` (`data-username`,
// `data-role`), `live-status` (`data-state` `connecting`|`online`|`offline`),
// `logout`.

import type { AuthState } from '../auth';
import { LANGS, getLang, onLangChange, setLang, t, type Lang } from '../i18n';
import type { LiveConnection, LiveState } from '../ws';
import { h } from './dom';

export interface Header {
  el: HTMLElement;
  /** Shows the logged-in user (or nobody) and follows `live`'s state. */
  setUser(auth: AuthState | null, live: LiveConnection | null): void;
}

export function renderHeader(onLogout: () => void): Header {
  const title = h('h1', { class: 'app-title' });
  const label = h('label', { for: 'lang-select', class: 'lang-label' });
  const select = h('select', { id: 'lang-select', 'data-testid': 'lang' });
  for (const { lang, label: name } of LANGS) {
    select.append(h('option', { value: lang, lang }, name));
  }
  select.value = getLang();
  select.addEventListener('change', () => setLang(select.value as Lang));

  const user = h('span', { class: 'current-user', 'data-testid': 'current-user', hidden: true });
  const live = h('span', { class: 'live-status', 'data-testid': 'live-status', role: 'status', hidden: true });
  const logout = h('button', { type: 'button', class: 'btn btn-header', 'data-testid': 'logout', hidden: true });
  logout.addEventListener('click', onLogout);

  let auth: AuthState | null = null;
  let liveState: LiveState | null = null;
  let offLive: (() => void) | null = null;

  const update = () => {
    title.textContent = t('app.title');
    label.textContent = t('lang.label');
    select.value = getLang();
    document.title = `${t('app.title')} · Telemed`;
    user.hidden = auth === null;
    logout.hidden = auth === null;
    logout.textContent = t('nav.logout');
    if (auth) {
      user.textContent = t('nav.user', { name: auth.user.display_name, role: t(`role.${auth.user.role}`) });
      user.dataset.username = auth.user.username;
      user.dataset.role = auth.user.role;
    }
    live.hidden = liveState === null;
    if (liveState) {
      live.textContent = t(`live.${liveState}`);
      live.dataset.state = liveState;
      live.className = `live-status live-${liveState}`;
    }
  };
  update();
  onLangChange(update);

  const el = h(
    'header',
    { class: 'app-header' },
    title,
    h('div', { class: 'header-right' }, live, user, logout, h('div', { class: 'lang' }, label, select)),
  );
  return {
    el,
    setUser(a, l) {
      offLive?.();
      offLive = null;
      auth = a;
      liveState = l ? l.liveState : null;
      if (l) {
        offLive = l.onState((s) => {
          liveState = s;
          update();
        });
      }
      update();
    },
  };
}
