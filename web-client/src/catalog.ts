// Sites and specialties: loaded once after login, named in the current
// language.

import { api, type Site, type Specialty } from './api';
import { getLang } from './i18n';

let sites: Site[] = [];
let specialties: Specialty[] = [];
let loading: Promise<void> | null = null;

/** Loads sites and specialties (once; again after reset()). */
export function loadCatalog(): Promise<void> {
  loading ??= Promise.all([api.sites(), api.specialties()])
    .then(([s, sp]) => {
      sites = s;
      specialties = sp;
    })
    .catch((e: unknown) => {
      loading = null;
      throw e;
    });
  return loading;
}

/** Forgets the catalog (on logout). */
export function resetCatalog(): void {
  sites = [];
  specialties = [];
  loading = null;
}

export function allSites(): Site[] {
  return sites;
}

export function allSpecialties(): Specialty[] {
  return specialties;
}

/** Specialist centres (for the preferred-centre choice). */
export function centres(): Site[] {
  return sites.filter((s) => s.kind === 'specialist_centre');
}

export function siteName(id: string | null | undefined): string {
  if (!id) return '—';
  return sites.find((s) => s.id === id)?.name ?? id;
}

export function specialtyName(id: string): string {
  const sp = specialties.find((s) => s.id === id);
  if (!sp) return id;
  return getLang() === 'en' ? sp.name_en : sp.name_zh;
}
