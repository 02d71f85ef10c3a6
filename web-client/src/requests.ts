// The requests a dashboard shows, kept current from API answers and the
// WebSocket pushes (request_updated, offer_made, paired).

import type { RequestView } from './api';

export class RequestBook {
  private readonly views = new Map<string, RequestView>();
  private readonly listeners = new Set<() => void>();

  get(id: string): RequestView | undefined {
    return this.views.get(id);
  }

  all(): RequestView[] {
    return [...this.views.values()];
  }

  has(id: string): boolean {
    return this.views.has(id);
  }

  /**
   * Takes `view` unless an older version: the same version may carry a new
   * queue position or estimated wait. Returns whether it was taken.
   */
  upsert(view: RequestView, notify = true): boolean {
    const old = this.views.get(view.id);
    if (old && old.version > view.version) return false;
    this.views.set(view.id, view);
    if (notify) this.changed();
    return true;
  }

  /**
   * Replaces everything with `views` (a fresh list from the API), keeping a
   * newer version already here (a push that overtook the list).
   */
  replaceAll(views: RequestView[]): void {
    const old = new Map(this.views);
    this.views.clear();
    for (const v of views) {
      const prev = old.get(v.id);
      this.views.set(v.id, prev && prev.version > v.version ? prev : v);
    }
    this.changed();
  }

  remove(id: string): void {
    if (this.views.delete(id)) this.changed();
  }

  /** Calls `listener` after every change; returns an unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

/** Newest first by creation time. */
export function newestFirst(a: RequestView, b: RequestView): number {
  return b.created_at - a.created_at || a.id.localeCompare(b.id);
}

/** Oldest change first (the order things happened). */
export function byUpdate(a: RequestView, b: RequestView): number {
  return b.updated_at - a.updated_at || a.id.localeCompare(b.id);
}

/** Whether a response body is a RequestView (some action endpoints may answer something else). */
export function isRequestView(x: unknown): x is RequestView {
  return !!x && typeof x === 'object' && typeof (x as RequestView).id === 'string' &&
    typeof (x as RequestView).state === 'string';
}
