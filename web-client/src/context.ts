// What every logged-in page gets: the login, the live WebSocket, navigation.

import type { AuthState } from './auth';
import type { LiveConnection } from './ws';

export interface AppContext {
  auth: AuthState;
  live: LiveConnection;
  /** Goes to a route path such as `/doctor` or `/room/<id>`. */
  go(path: string): void;
}
