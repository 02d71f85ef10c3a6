// The join page: user name, password, room, and the Join button.

import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { ROOM_NAME, startSession, type Session } from '../session';
import { SignalingError } from '../signaling';
import { h } from './dom';

export interface JoinPageOptions {
  username?: string;
  room?: string;
  onJoined(session: Session): void;
}

export interface Page {
  el: HTMLElement;
  dispose(): void;
}

type Problem = { kind: 'validation'; key: MessageKey } | { kind: 'server'; code: string; message: string };

function field(id: string, labelText: HTMLElement, input: HTMLInputElement, hint?: HTMLElement): HTMLElement {
  input.id = id;
  return h('div', { class: 'field' }, labelText, input, hint);
}

export function joinPage(opts: JoinPageOptions): Page {
  const username = h('input', {
    type: 'text',
    name: 'username',
    autocomplete: 'username',
    maxlength: 64,
    'data-testid': 'username',
    value: opts.username ?? '',
  });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: 'current-password',
    maxlength: 256,
    'data-testid': 'password',
  });
  const room = h('input', {
    type: 'text',
    name: 'room',
    maxlength: 64,
    spellcheck: 'false',
    'data-testid': 'room',
    'aria-describedby': 'room-hint',
    value: opts.room ?? 'demo',
  });
  const heading = h('h2');
  const usernameLabel = h('label', { for: 'join-username' });
  const passwordLabel = h('label', { for: 'join-password' });
  const roomLabel = h('label', { for: 'join-room' });
  const roomHint = h('div', { id: 'room-hint', class: 'hint' });
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'error', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-large', 'data-testid': 'join' });

  const form = h(
    'form',
    { class: 'card join-card', novalidate: true },
    heading,
    field('join-username', usernameLabel, username),
    field('join-password', passwordLabel, password),
    field('join-room', roomLabel, room, roomHint),
    error,
    submit,
  );

  let busy = false;
  let problem: Problem | null = null;

  const update = () => {
    heading.textContent = t('join.heading');
    usernameLabel.textContent = t('join.username');
    passwordLabel.textContent = t('join.password');
    roomLabel.textContent = t('join.room');
    roomHint.textContent = t('join.room_hint');
    submit.textContent = busy ? t('join.busy') : t('join.submit');
    submit.disabled = busy;
    if (problem) {
      error.textContent =
        problem.kind === 'validation' ? t(problem.key) : errorText(problem.code, problem.message);
      error.dataset.code = problem.kind === 'server' ? problem.code : `validate.${problem.key}`;
      error.hidden = false;
    } else {
      error.textContent = '';
      delete error.dataset.code;
      error.hidden = true;
    }
  };

  const validate = (): { key: MessageKey; input: HTMLInputElement } | null => {
    if (username.value.length < 1 || username.value.length > 64) {
      return { key: 'validate.username', input: username };
    }
    if (password.value.length < 1 || password.value.length > 256) {
      return { key: 'validate.password', input: password };
    }
    if (!ROOM_NAME.test(room.value)) return { key: 'validate.room', input: room };
    return null;
  };

  let disposed = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    const invalid = validate();
    if (invalid) {
      problem = { kind: 'validation', key: invalid.key };
      invalid.input.focus();
      update();
      return;
    }
    problem = null;
    busy = true;
    update();
    try {
      const session = await startSession({
        username: username.value,
        password: password.value,
        room: room.value,
      });
      if (disposed) {
        session.close();
        return;
      }
      opts.onJoined(session);
    } catch (e) {
      const err = e instanceof SignalingError ? e : new SignalingError('unknown', String(e));
      problem = { kind: 'server', code: err.code, message: err.message };
      if (err.code === 'bad_credentials') password.select();
    } finally {
      busy = false;
      if (!disposed) update();
    }
  });

  update();
  const off = onLangChange(update);
  const el = h('main', { class: 'page join-page' }, form);
  queueMicrotask(() => (username.value ? password : username).focus());
  return {
    el,
    dispose: () => {
      disposed = true;
      off();
    },
  };
}
