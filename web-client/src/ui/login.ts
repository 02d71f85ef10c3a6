// The login page: user name and password (POST /api/v1/login).
//
// Test ids: `username`, `password`, `login` (submit button), `error`
// (`data-code`: the server's code, or `validate.*` for client checks).
// Labels: `label[for=login-username]`, `label[for=login-password]`.

import { ApiError } from '../api';
import { login, type AuthState } from '../auth';
import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { h, type Page } from './dom';

export interface LoginPageOptions {
  /** Shown at first, e.g. after the session ended. */
  notice?: MessageKey;
  onLoggedIn(auth: AuthState): void;
}

type Problem = { kind: 'validation'; key: MessageKey } | { kind: 'server'; code: string; message: string };

export function loginPage(opts: LoginPageOptions): Page {
  const username = h('input', {
    id: 'login-username',
    type: 'text',
    name: 'username',
    autocomplete: 'username',
    maxlength: 64,
    spellcheck: 'false',
    'data-testid': 'username',
  });
  const password = h('input', {
    id: 'login-password',
    type: 'password',
    name: 'password',
    autocomplete: 'current-password',
    maxlength: 256,
    'data-testid': 'password',
  });
  const heading = h('h2');
  const usernameLabel = h('label', { for: 'login-username' });
  const passwordLabel = h('label', { for: 'login-password' });
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'error', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-large', 'data-testid': 'login' });

  const form = h(
    'form',
    { class: 'card login-card', novalidate: true },
    heading,
    h('div', { class: 'field' }, usernameLabel, username),
    h('div', { class: 'field' }, passwordLabel, password),
    error,
    submit,
  );

  let busy = false;
  let problem: Problem | null = opts.notice ? { kind: 'validation', key: opts.notice } : null;

  const update = () => {
    heading.textContent = t('login.heading');
    usernameLabel.textContent = t('login.username');
    passwordLabel.textContent = t('login.password');
    submit.textContent = busy ? t('login.busy') : t('login.submit');
    submit.disabled = busy;
    if (problem) {
      error.textContent =
        problem.kind === 'validation' ? t(problem.key) : errorText(problem.code, problem.message);
      error.dataset.code = problem.kind === 'server' ? problem.code : problem.key;
      error.hidden = false;
    } else {
      error.textContent = '';
      delete error.dataset.code;
      error.hidden = true;
    }
  };

  let disposed = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    if (username.value.length < 1 || username.value.length > 64) {
      problem = { kind: 'validation', key: 'validate.username' };
      username.focus();
      update();
      return;
    }
    if (password.value.length < 1 || password.value.length > 256) {
      problem = { kind: 'validation', key: 'validate.password' };
      password.focus();
      update();
      return;
    }
    problem = null;
    busy = true;
    update();
    try {
      const auth = await login(username.value.trim(), password.value);
      if (disposed) return;
      opts.onLoggedIn(auth);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      problem = { kind: 'server', code: err.code, message: err.message };
      if (err.code === 'bad_credentials') password.select();
    } finally {
      busy = false;
      if (!disposed) update();
    }
  });

  update();
  const off = onLangChange(update);
  const el = h('main', { class: 'page login-page', 'data-testid': 'page-login' }, form);
  queueMicrotask(() => username.focus());
  return {
    el,
    dispose: () => {
      disposed = true;
      off();
    },
  };
}
