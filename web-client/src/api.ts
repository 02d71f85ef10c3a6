// Typed client for the HTTP API v1 (docs/http-api.md): the JSON shapes, a
// fetch wrapper that adds the bearer token and turns `{code, message,
// fields?}` answers into an ApiError, and one function per endpoint.

export type Role = 'referring_doctor' | 'specialist' | 'it_admin' | 'operator';
export type SiteKind = 'county_hospital' | 'township_clinic' | 'specialist_centre';
export type Urgency = 'routine' | 'urgent' | 'emergency';
export type ConsentMethod = 'written' | 'verbal' | 'electronic';
export type ReferralDirection = 'up' | 'down';
export type RequestState =
  | 'requested'
  | 'queued'
  | 'offered'
  | 'accepted'
  | 'in_consultation'
  | 'opinion_written'
  | 'closed'
  | 'cancelled'
  | 'declined'
  | 'expired';

export const URGENCIES: Urgency[] = ['routine', 'urgent', 'emergency'];
export const CONSENT_METHODS: ConsentMethod[] = ['written', 'verbal', 'electronic'];
export const ROLES: Role[] = ['referring_doctor', 'specialist', 'it_admin', 'operator'];
export const FINAL_STATES: RequestState[] = ['closed', 'cancelled', 'declined', 'expired'];
export const WAITING_STATES: RequestState[] = ['requested', 'queued', 'offered'];
/** States in which the two participants may enter the room. */
export const JOINABLE_STATES: RequestState[] = ['accepted', 'in_consultation', 'opinion_written'];
/** States in which a referral may be proposed. */
export const REFERABLE_STATES: RequestState[] = ['in_consultation', 'opinion_written', 'closed'];

export interface UserView {
  username: string;
  display_name: string;
  role: Role;
  site_id: string;
  specialties: string[];
  disabled: boolean;
}

export interface Site {
  id: string;
  name: string;
  kind: SiteKind;
  region: string;
  line_capacity_kbps: number;
}

export interface Specialty {
  id: string;
  name_zh: string;
  name_en: string;
}

export interface LoginResponse {
  token: string;
  expires_at: number;
  user: UserView;
  site: Site;
}

export interface Consent {
  recorded_by: string;
  recorded_at: number;
  method: ConsentMethod;
}

export interface Signature {
  signed_by: string;
  signer_name: string;
  signed_at: number;
  digest: string;
}

export interface OpinionText {
  findings: string;
  diagnosis: string;
  recommendations: string;
  follow_up: string;
}

export interface Opinion extends OpinionText {
  author: string;
  updated_at: number;
  signature: Signature | null;
}

export interface Referral {
  direction: ReferralDirection;
  to_site: string;
  reason: string;
  proposed_by: string;
  proposed_at: number;
}

export interface RequestView {
  id: string;
  patient_pseudonym: string;
  specialty: string;
  urgency: Urgency;
  question: string;
  preferred_centre: string | null;
  consent: Consent;
  requester: string;
  requester_site: string;
  state: RequestState;
  created_at: number;
  queued_at: number | null;
  returned_to_queue: boolean;
  specialist: string | null;
  centre: string | null;
  offered_at: number | null;
  declined_by: string[];
  accepted_at: number | null;
  room: string | null;
  opinion: Opinion | null;
  acknowledged_at: number | null;
  referrals: Referral[];
  closing_reason: string | null;
  updated_at: number;
  version: number;
  requester_name: string;
  specialist_name: string | null;
  queue_position: number | null;
  estimated_wait_secs: number | null;
}

export interface NewRequest {
  patient_pseudonym: string;
  specialty: string;
  urgency: Urgency;
  question: string;
  preferred_centre: string | null;
  consent_method: ConsentMethod;
}

export interface NewUser {
  username: string;
  display_name: string;
  password: string;
  role: Role;
  site_id: string;
  specialties: string[];
}

export interface AuditEvent {
  seq: number;
  at: number;
  actor: string;
  action: string;
  request_id: string | null;
  address: string | null;
  detail: string;
}

export interface AuditFilter {
  actor?: string;
  request_id?: string;
  action?: string;
  since?: number;
  before?: number;
  limit?: number;
}

export interface SiteQuality {
  site_id: string;
  name: string;
  line_capacity_kbps: number;
  active_consultations: number;
  waiting_requests: number;
}

export interface Quality {
  rooms: number;
  participants: number;
  rtp_packets_in: number;
  rtp_packets_out: number;
  keyframe_requests: number;
  sites: SiteQuality[];
}

/** One measurement of a site's line (`bandwidth-probe` agent or CLI, or the browser line test). */
export interface LineMeasurementInput {
  source: 'agent' | 'cli' | 'browser';
  down_kbps: number;
  up_kbps: number;
  rtt_ms: number;
  jitter_ms: number;
  loss_pct: number;
  elapsed_ms: number;
  bytes_sent: number;
  bytes_received: number;
}

export interface LineMeasurement extends LineMeasurementInput {
  id: string;
  site: string;
  measured_at: number;
  measured_by: string;
  confidence: number | null;
}

/** A site's latest line measurement and the line budget the relay keeps for it. */
export interface SiteLine {
  site: string;
  measurement: LineMeasurement | null;
  budget_kbps: number;
  budget_source: 'measured' | 'configured';
}

/** Longest clinical question, reason and opinion field (as the server checks them). */
export const MAX_QUESTION = 2000;
export const MAX_REASON = 1000;
export const MAX_OPINION_FIELD = 8000;

export interface FieldError {
  field: string;
  code: string;
  message: string;
}

/** An error answer of the API (`{code, message, fields?}`), or a network failure (`status` 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Codes after which the token is useless: the user must log in again. */
export const SESSION_ENDED_CODES = ['missing_token', 'invalid_token', 'expired_token', 'account_disabled'];

const BASE = '/api/v1';

let token: string | null = null;
let onSessionEnded: ((err: ApiError) => void) | null = null;

/** Sets the bearer token sent with every call (null: none). */
export function setToken(value: string | null): void {
  token = value;
}

/** Called when an authenticated call answers 401 (token expired, revoked, account disabled). */
export function setSessionEndedHandler(handler: ((err: ApiError) => void) | null): void {
  onSessionEnded = handler;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'connect_failed', String(e));
  }
  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const obj = (data && typeof data === 'object' ? data : {}) as Partial<{
      code: string;
      message: string;
      fields: FieldError[];
    }>;
    const err = new ApiError(
      res.status,
      obj.code ?? `http_${res.status}`,
      obj.message ?? (text.slice(0, 200) || res.statusText),
      Array.isArray(obj.fields) ? obj.fields : [],
    );
    if (res.status === 401 && token && SESSION_ENDED_CODES.includes(err.code)) onSessionEnded?.(err);
    throw err;
  }
  return data as T;
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

const enc = encodeURIComponent;

export const api = {
  login: (username: string, password: string) =>
    call<LoginResponse>('POST', '/login', { username, password }),
  me: () => call<{ user: UserView; site: Site }>('GET', '/me'),
  sites: () => call<Site[]>('GET', '/sites'),
  specialties: () => call<Specialty[]>('GET', '/specialties'),

  createRequest: (body: NewRequest) => call<RequestView>('POST', '/requests', body),
  listRequests: (scope: 'mine' | 'queue', state?: RequestState) =>
    call<RequestView[]>('GET', `/requests${query({ scope, state })}`),
  getRequest: (id: string) => call<RequestView>('GET', `/requests/${enc(id)}`),
  cancel: (id: string, reason: string) =>
    call<RequestView>('POST', `/requests/${enc(id)}/cancel`, { reason }),
  accept: (id: string) => call<RequestView>('POST', `/requests/${enc(id)}/accept`),
  declineOffer: (id: string) => call<RequestView>('POST', `/requests/${enc(id)}/decline-offer`),
  decline: (id: string, reason: string) =>
    call<RequestView>('POST', `/requests/${enc(id)}/decline`, { reason }),
  saveOpinion: (id: string, text: OpinionText) =>
    call<RequestView>('PUT', `/requests/${enc(id)}/opinion`, text),
  signOpinion: (id: string) => call<RequestView>('POST', `/requests/${enc(id)}/opinion/sign`),
  acknowledge: (id: string) => call<RequestView>('POST', `/requests/${enc(id)}/acknowledge`),
  refer: (id: string, direction: ReferralDirection, to_site: string, reason: string) =>
    call<RequestView>('POST', `/requests/${enc(id)}/referrals`, { direction, to_site, reason }),

  getAvailability: () => call<{ available: boolean }>('GET', '/availability'),
  setAvailability: (available: boolean) =>
    call<{ available: boolean }>('PUT', '/availability', { available }),

  quality: () => call<Quality>('GET', '/quality'),
  saveLineMeasurement: (site: string, body: LineMeasurementInput) =>
    call<LineMeasurement>('POST', `/sites/${enc(site)}/line-measurements`, body),
  latestLineMeasurements: () => call<SiteLine[]>('GET', '/line-measurements/latest'),
  audit: (filter: AuditFilter = {}) =>
    call<AuditEvent[]>('GET', `/audit${query({ ...filter })}`),
  users: () => call<UserView[]>('GET', '/users'),
  createUser: (body: NewUser) => call<UserView>('POST', '/users', body),
};
