// The logged-in user of this tab: the token from POST /api/v1/login, kept in
// sessionStorage (per tab, gone when the tab closes), and where each role
// lands after login.

import { api, setToken, type LoginResponse, type Role, type Site, type UserView } from './api';

export interface AuthState {
  token: string;
  expires_at: number;
  user: UserView;
  site: Site;
}

const STORAGE_KEY = 'telemed.auth';

let current: AuthState | null = load();
setToken(current?.token ?? null);

function load(): AuthState | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const state = JSON.parse(raw) as AuthState;
    if (!state?.token || !state.user || typeof state.expires_at !== 'number') return null;
    if (state.expires_at <= Date.now()) return null;
    return state;
  } catch {
    return null;
  }
}

function save(state: AuthState | null): void {
  try {
    if (state) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(state));
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage unavailable: the login lasts until the page is reloaded
  }
}

/** The current login, or null (also when the token has expired). */
export function getAuth(): AuthState | null {
  if (current && current.expires_at <= Date.now()) logout();
  return current;
}

/** Logs in; rejects with an ApiError (e.g. `bad_credentials`). */
export async function login(username: string, password: string): Promise<AuthState> {
  const res: LoginResponse = await api.login(username, password);
  current = { token: res.token, expires_at: res.expires_at, user: res.user, site: res.site };
  setToken(current.token);
  save(current);
  return current;
}

/** Forgets the token (the server keeps no session to end). */
export function logout(): void {
  current = null;
  setToken(null);
  save(null);
}

/** The dashboard route of a role. */
export function homeRoute(role: Role): string {
  switch (role) {
    case 'referring_doctor':
      return '/doctor';
    case 'specialist':
      return '/specialist';
    case 'it_admin':
      return '/it';
    case 'operator':
      return '/operator';
  }
}
