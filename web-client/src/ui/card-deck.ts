// Request cards of one page, keyed by request id, placed into the page's
// sections (a card can move from "offered" to "my consultations" and keeps
// what is being typed in it).

import type { RequestView } from '../api';
import { requestCard, type CardOptions, type RequestCard } from './request-card';

export interface Section {
  container: HTMLElement;
  views: RequestView[];
  /** Shown when `views` is empty. */
  empty: HTMLElement;
}

/** Sets `container`'s children to `nodes` unless they already are (so focus is not lost). */
export function syncChildren(container: HTMLElement, nodes: Node[]): void {
  const current = container.childNodes;
  if (current.length === nodes.length && nodes.every((n, i) => current[i] === n)) return;
  container.replaceChildren(...nodes);
}

export class CardDeck {
  private readonly cards = new Map<string, RequestCard>();

  constructor(private readonly opts: CardOptions) {}

  card(id: string): RequestCard | undefined {
    return this.cards.get(id);
  }

  /** Places a card for every view in its section; cards no longer shown are disposed. */
  render(sections: Section[]): void {
    const used = new Set<string>();
    for (const s of sections) {
      const nodes: Node[] = [];
      for (const v of s.views) {
        if (used.has(v.id)) continue;
        used.add(v.id);
        let card = this.cards.get(v.id);
        if (card) {
          card.update(v);
        } else {
          card = requestCard(v, this.opts);
          this.cards.set(v.id, card);
        }
        nodes.push(card.el);
      }
      s.empty.hidden = nodes.length > 0;
      syncChildren(s.container, nodes);
    }
    for (const [id, card] of this.cards) {
      if (!used.has(id)) {
        card.dispose();
        card.el.remove();
        this.cards.delete(id);
      }
    }
  }

  dispose(): void {
    for (const card of this.cards.values()) card.dispose();
    this.cards.clear();
  }
}
