import { defineConfig } from 'vite';

// The Rust server (`telemed`) serves dist/ at `/` and the WebSocket at `/ws`.
// `npm run dev` proxies the server's endpoints to a `make run` on port 8080.
const backend = 'http://127.0.0.1:8080';
const proxy = {
  '/ws': { target: backend, ws: true },
  '/healthz': backend,
  '/api': backend,
};

export default defineConfig({
  base: '/',
  build: { outDir: 'dist', target: 'es2022' },
  server: { proxy },
  preview: { proxy },
});
