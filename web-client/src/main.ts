// Entry point: the header, then the join page or the room page.

import './style.css';
import type { Session } from './session';
import { renderHeader } from './ui/header';
import { joinPage, type Page } from './ui/join';
import { roomPage } from './ui/room';

window.__telemed = { pc: null };

const root = document.getElementById('app');
if (!root) throw new Error('#app is missing');
const outlet = document.createElement('div');
outlet.className = 'outlet';
root.append(renderHeader(), outlet);

let current: Page | null = null;

function mount(page: Page): void {
  current?.dispose();
  current = page;
  outlet.replaceChildren(page.el);
}

function showJoin(prefill: { username?: string; room?: string } = {}): void {
  mount(joinPage({ ...prefill, onJoined: showRoom }));
}

function showRoom(session: Session): void {
  mount(roomPage(session, { onExit: showJoin }));
}

showJoin();
