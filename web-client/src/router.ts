// Hash routes: #/login, #/doctor, #/specialist, #/room/<request id>, #/it, #/operator.

export type Route =
  | { name: 'login' }
  | { name: 'doctor' }
  | { name: 'specialist' }
  | { name: 'it' }
  | { name: 'operator' }
  | { name: 'room'; requestId: string }
  | { name: 'unknown' };

export function currentRoute(): Route {
  const path = location.hash.replace(/^#/, '') || '/';
  const parts = path.split('/').filter(Boolean);
  switch (parts[0]) {
    case 'login':
    case 'doctor':
    case 'specialist':
    case 'it':
    case 'operator':
      return parts.length === 1 ? { name: parts[0] } : { name: 'unknown' };
    case 'room':
      return parts.length === 2 ? { name: 'room', requestId: decodeURIComponent(parts[1]) } : { name: 'unknown' };
    default:
      return { name: 'unknown' };
  }
}

/** Goes to `path` (e.g. `/doctor`); the hashchange listener renders it. */
export function navigate(path: string): void {
  const hash = `#${path}`;
  if (location.hash === hash) {
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

export function roomPath(requestId: string): string {
  return `/room/${encodeURIComponent(requestId)}`;
}
