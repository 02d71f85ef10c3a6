// Entry point: the header and the page for the current route. Logged out,
// every route shows the login page; logged in, each role has its dashboard
// (#/doctor, #/specialist, #/it, #/operator) and the two clinical roles the
// room (#/room/<request id>). One WebSocket per logged-in tab (ws.ts).

import './style.css';
import { setSessionEndedHandler } from './api';
import { getAuth, homeRoute, logout, type AuthState } from './auth';
import { loadCatalog, resetCatalog } from './catalog';
import type { AppContext } from './context';
import { errorText, t, type MessageKey } from './i18n';
import { currentRoute, navigate, type Route } from './router';
import { doctorPage } from './ui/doctor';
import { h, type Page } from './ui/dom';
import { renderHeader } from './ui/header';
import { itPage } from './ui/it';
import { loginPage } from './ui/login';
import { operatorPage } from './ui/operator';
import { roomPage } from './ui/room';
import { specialistPage } from './ui/specialist';
import { LiveConnection } from './ws';

window.__telemed = { pc: null, ...window.__telemed };

const root = document.getElementById('app');
if (!root) throw new Error('#app is missing');
const outlet = document.createElement('div');
outlet.className = 'outlet';
const header = renderHeader(() => endSession());
root.append(header.el, outlet);

let current: Page | null = null;
let live: LiveConnection | null = null;
let liveToken: string | null = null;
/** Shown on the login page after the session ended by itself. */
let loginNotice: MessageKey | undefined;

function mount(page: Page): void {
  current?.dispose();
  current = page;
  outlet.replaceChildren(page.el);
}

/** Logs out (button, or the server refused the token) and shows the login page. */
function endSession(notice?: MessageKey): void {
  current?.dispose();
  current = null;
  live?.close();
  live = null;
  liveToken = null;
  logout();
  resetCatalog();
  header.setUser(null, null);
  loginNotice = notice;
  navigate('/login');
}

setSessionEndedHandler(() => endSession('login.session_ended'));

function allowed(route: Route, auth: AuthState): boolean {
  const role = auth.user.role;
  switch (route.name) {
    case 'doctor':
      return role === 'referring_doctor';
    case 'specialist':
      return role === 'specialist';
    case 'it':
      return role === 'it_admin';
    case 'operator':
      return role === 'operator';
    case 'room':
      return role === 'referring_doctor' || role === 'specialist';
    default:
      return false;
  }
}

function context(auth: AuthState): AppContext {
  if (!live || liveToken !== auth.token) {
    live?.close();
    live = new LiveConnection(auth.token, () => endSession('login.session_ended'));
    liveToken = auth.token;
  }
  header.setUser(auth, live);
  return { auth, live, go: navigate };
}

let renderSeq = 0;

async function render(): Promise<void> {
  const seq = ++renderSeq;
  const route = currentRoute();
  const auth = getAuth();
  if (!auth) {
    if (route.name !== 'login') {
      navigate('/login');
      return;
    }
    header.setUser(null, null);
    const notice = loginNotice;
    loginNotice = undefined;
    mount(loginPage({ notice, onLoggedIn: (a) => navigate(homeRoute(a.user.role)) }));
    return;
  }
  if (!allowed(route, auth)) {
    navigate(homeRoute(auth.user.role));
    return;
  }
  const ctx = context(auth);
  try {
    await loadCatalog();
  } catch (e) {
    if (seq !== renderSeq) return;
    const code = (e as { code?: string }).code ?? 'unknown';
    const retry = h('button', { type: 'button', class: 'btn' }, t('common.refresh'));
    retry.addEventListener('click', () => void render());
    mount({
      el: h('main', { class: 'page' }, h('div', { class: 'error', role: 'alert', 'data-testid': 'page-error', 'data-code': code }, errorText(code, String(e))), retry),
      dispose: () => undefined,
    });
    return;
  }
  if (seq !== renderSeq) return;
  switch (route.name) {
    case 'doctor':
      mount(doctorPage(ctx));
      break;
    case 'specialist':
      mount(specialistPage(ctx));
      break;
    case 'it':
      mount(itPage(ctx));
      break;
    case 'operator':
      mount(operatorPage());
      break;
    case 'room':
      mount(roomPage(ctx, route.requestId, () => navigate(homeRoute(auth.user.role))));
      break;
    default:
      navigate(homeRoute(auth.user.role));
  }
}

window.addEventListener('hashchange', () => void render());
void render();
