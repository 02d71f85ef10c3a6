// The operator's page: the user list, a form to create an account
// (POST /api/v1/users) and the audit log (GET /api/v1/audit). No clinical
// content.
//
// Test ids: `page-operator`, `users-table` with `user-row`
// (`data-username`, `data-role`, `data-disabled`); the form `user-form` with
// `new-user-username`, `new-user-display-name`, `new-user-password`,
// `new-user-role` (select of roles), `new-user-site` (select of site ids),
// `new-user-specialty` checkboxes (`value` = specialty id),
// `new-user-submit`, `user-form-error` (`data-code`), `user-form-success`,
// `field-error` lines (fields.ts) with `data-field` `username`|
// `display_name`|`password`|`role`|`site_id`|`specialties`;
// the audit log `audit-actor`, `audit-action` (filters), `audit-refresh`,
// `audit-table` with `audit-row` (`data-seq`, `data-action`,
// `data-actor`), `audit-empty`; `page-error` (`data-code`).

import { api, ApiError, ROLES, type AuditEvent, type NewUser, type Role, type UserView } from '../api';
import { allSites, allSpecialties, siteName, specialtyName } from '../catalog';
import { errorText, onLangChange, t, type MessageKey } from '../i18n';
import { h, setOptions, showError, type Page } from './dom';
import { FieldErrors, checkText, formField } from './fields';
import { formatTime } from './format';

const USERNAME = /^[a-z0-9._-]{1,64}$/;

export function operatorPage(): Page {
  const heading = h('h2');
  const error = h('div', { class: 'error', role: 'alert', 'data-testid': 'page-error', hidden: true });

  // Users.
  const usersHeading = h('h3');
  const usersTable = h('table', { class: 'data-table', 'data-testid': 'users-table' });

  // New user.
  const errors = new FieldErrors();
  const username = h('input', { type: 'text', name: 'username', maxlength: 64, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'new-user-username' });
  const displayName = h('input', { type: 'text', name: 'display_name', maxlength: 128, autocomplete: 'off', 'data-testid': 'new-user-display-name' });
  const password = h('input', { type: 'password', name: 'password', maxlength: 256, autocomplete: 'new-password', 'data-testid': 'new-user-password' });
  const role = h('select', { name: 'role', 'data-testid': 'new-user-role' });
  const site = h('select', { name: 'site_id', 'data-testid': 'new-user-site' });
  const specialtiesBox = h('div', { class: 'check-list', role: 'group' });
  const specialtiesLabel = h('span', { class: 'label' });
  const specialtiesField = h('div', { class: 'field' }, specialtiesLabel, specialtiesBox);
  const fUsername = formField(errors, 'new-user-username', 'username', username);
  const fDisplayName = formField(errors, 'new-user-display-name', 'display_name', displayName);
  const fPassword = formField(errors, 'new-user-password', 'password', password);
  const fRole = formField(errors, 'new-user-role', 'role', role);
  const fSite = formField(errors, 'new-user-site', 'site_id', site);
  // The specialties' error line hangs off the group; FieldErrors wants a control to focus.
  const specialtiesFocus = h('input', { type: 'hidden', id: 'new-user-specialties' });
  specialtiesField.append(errors.register('specialties', specialtiesFocus));
  const formHeading = h('h3');
  const formError = h('div', { class: 'error', role: 'alert', 'data-testid': 'user-form-error', hidden: true });
  const formSuccess = h('div', { class: 'success', role: 'status', 'data-testid': 'user-form-success', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'new-user-submit' });
  const form = h(
    'form',
    { class: 'card user-form', 'data-testid': 'user-form', novalidate: true },
    formHeading,
    h('div', { class: 'row' }, fUsername.el, fDisplayName.el, fPassword.el),
    h('div', { class: 'row' }, fRole.el, fSite.el, specialtiesField),
    formError,
    formSuccess,
    submit,
  );

  // Audit log.
  const auditHeading = h('h3');
  const auditActor = h('input', { type: 'text', id: 'audit-actor', maxlength: 64, 'data-testid': 'audit-actor' });
  const auditAction = h('input', { type: 'text', id: 'audit-action', maxlength: 64, 'data-testid': 'audit-action' });
  const auditActorLabel = h('label', { for: 'audit-actor' });
  const auditActionLabel = h('label', { for: 'audit-action' });
  const auditRefresh = h('button', { type: 'submit', class: 'btn', 'data-testid': 'audit-refresh' });
  const auditFilter = h(
    'form',
    { class: 'row audit-filter' },
    h('div', { class: 'field' }, auditActorLabel, auditActor),
    h('div', { class: 'field' }, auditActionLabel, auditAction),
    auditRefresh,
  );
  const auditTable = h('table', { class: 'data-table', 'data-testid': 'audit-table' });
  const auditEmpty = h('p', { class: 'hint', 'data-testid': 'audit-empty', hidden: true });

  let users: UserView[] = [];
  let events: AuditEvent[] = [];
  let problem: ApiError | null = null;
  let formProblem: ApiError | null = null;
  let created: string | null = null;
  let busy = false;

  const renderSpecialties = () => {
    const checked = new Set(
      [...specialtiesBox.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value),
    );
    specialtiesBox.replaceChildren(
      ...allSpecialties().map((sp) => {
        const id = `new-user-specialty-${sp.id}`;
        const box = h('input', { type: 'checkbox', id, value: sp.id, 'data-testid': 'new-user-specialty' });
        box.checked = checked.has(sp.id);
        return h('label', { for: id, class: 'check-row' }, box, specialtyName(sp.id));
      }),
    );
    specialtiesField.hidden = role.value !== 'specialist';
  };

  const renderSites = () => {
    const r = role.value as Role;
    const fits = allSites().filter((s) =>
      r === 'specialist'
        ? s.kind === 'specialist_centre'
        : r === 'referring_doctor'
          ? s.kind !== 'specialist_centre'
          : true,
    );
    setOptions(site, [['', t('common.choose')], ...fits.map((s): [string, string] => [s.id, s.name])]);
  };

  const render = () => {
    heading.textContent = t('op.heading');
    usersHeading.textContent = t('op.users');
    formHeading.textContent = t('op.new_user');
    auditHeading.textContent = t('op.audit');
    showError(error, problem ? errorText(problem.code, problem.message) : null, problem?.code);

    const cols: MessageKey[] = ['op.username', 'op.display_name', 'op.role', 'op.site', 'op.specialties', 'op.status'];
    usersTable.replaceChildren(
      h('thead', {}, h('tr', {}, ...cols.map((k) => h('th', {}, t(k))))),
      h(
        'tbody',
        {},
        ...users.map((u) =>
          h(
            'tr',
            { 'data-testid': 'user-row', 'data-username': u.username, 'data-role': u.role, 'data-disabled': String(u.disabled) },
            h('td', {}, u.username),
            h('td', {}, u.display_name),
            h('td', {}, t(`role.${u.role}`)),
            h('td', {}, siteName(u.site_id)),
            h('td', {}, u.specialties.map(specialtyName).join('、') || t('common.none')),
            h('td', {}, u.disabled ? t('op.disabled') : t('op.active')),
          ),
        ),
      ),
    );

    fUsername.label.textContent = t('op.username');
    fDisplayName.label.textContent = t('op.display_name');
    fPassword.label.textContent = t('op.password');
    fRole.label.textContent = t('op.role');
    fSite.label.textContent = t('op.site');
    specialtiesLabel.textContent = t('op.specialties');
    setOptions(role, ROLES.map((r): [string, string] => [r, t(`role.${r}`)]));
    renderSites();
    renderSpecialties();
    submit.textContent = busy ? t('common.busy') : t('op.create');
    submit.disabled = busy;
    showError(formError, formProblem ? errorText(formProblem.code, formProblem.message) : null, formProblem?.code);
    formSuccess.hidden = created === null;
    formSuccess.textContent = created ? t('op.created', { username: created }) : '';
    errors.render();

    auditActorLabel.textContent = t('op.actor');
    auditActionLabel.textContent = t('op.action');
    auditRefresh.textContent = t('op.filter');
    const acols: MessageKey[] = ['op.at', 'op.actor', 'op.action', 'op.request', 'op.address', 'op.detail'];
    auditTable.replaceChildren(
      h('thead', {}, h('tr', {}, ...acols.map((k) => h('th', {}, t(k))))),
      h(
        'tbody',
        {},
        ...events.map((e) =>
          h(
            'tr',
            { 'data-testid': 'audit-row', 'data-seq': e.seq, 'data-action': e.action, 'data-actor': e.actor },
            h('td', {}, formatTime(e.at)),
            h('td', {}, e.actor),
            h('td', {}, e.action),
            h('td', { class: 'mono' }, e.request_id ?? t('common.none')),
            h('td', {}, e.address ?? t('common.none')),
            h('td', {}, e.detail),
          ),
        ),
      ),
    );
    auditEmpty.textContent = t('op.no_events');
    auditEmpty.hidden = events.length > 0;
  };
  role.addEventListener('change', () => {
    renderSites();
    renderSpecialties();
  });

  let disposed = false;
  const fail = (e: unknown) => {
    if (disposed) return;
    problem = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
    render();
  };
  const loadUsers = async () => {
    try {
      users = await api.users();
      if (!disposed) render();
    } catch (e) {
      fail(e);
    }
  };
  const loadAudit = async () => {
    try {
      events = await api.audit({ actor: auditActor.value.trim(), action: auditAction.value.trim(), limit: 200 });
      if (!disposed) render();
    } catch (e) {
      fail(e);
    }
  };

  auditFilter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    problem = null;
    void loadAudit();
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    errors.clear();
    formProblem = null;
    created = null;
    const specialties = [...specialtiesBox.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value);
    const r = role.value as Role;
    if (!USERNAME.test(username.value)) errors.client('username', 'validate.new_username', 'invalid_format');
    checkText(errors, 'display_name', displayName.value, 1, 128, { required: 'validate.display_name' });
    const pw = [...password.value].length;
    if (pw < 8 || pw > 256) errors.client('password', 'validate.new_password', pw < 8 ? 'too_short' : 'too_long');
    if (!site.value) errors.client('site_id', 'validate.required', 'required');
    if (r === 'specialist' && specialties.length === 0) errors.client('specialties', 'validate.specialties', 'required');
    if (errors.size > 0) {
      render();
      errors.focusFirst();
      return;
    }
    const body: NewUser = {
      username: username.value,
      display_name: displayName.value.trim(),
      password: password.value,
      role: r,
      site_id: site.value,
      specialties: r === 'specialist' ? specialties : [],
    };
    busy = true;
    render();
    try {
      const u = await api.createUser(body);
      created = u.username;
      username.value = '';
      displayName.value = '';
      password.value = '';
      void loadUsers();
      void loadAudit();
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(0, 'unknown', String(e));
      const unplaced = errors.server(err.fields);
      formProblem =
        unplaced.length > 0
          ? new ApiError(err.status, 'unknown', unplaced.map((f) => `${f.field}: ${f.message}`).join('; '))
          : err;
    } finally {
      busy = false;
      render();
    }
  });

  render();
  void loadUsers();
  void loadAudit();
  const off = onLangChange(render);
  const el = h(
    'main',
    { class: 'page admin-page', 'data-testid': 'page-operator' },
    heading,
    error,
    h('section', {}, usersHeading, usersTable),
    form,
    h('section', {}, auditHeading, auditFilter, auditTable, auditEmpty),
  );
  return {
    el,
    dispose() {
      disposed = true;
      off();
    },
  };
}
