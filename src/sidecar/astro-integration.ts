/**
 * `npm run dev`: the same sidecar, attached to Astro's dev server, so lessons with live
 * reload can still run labs at /api/lab.
 *
 * The dev server is for this machine: `npm run dev` binds it to 127.0.0.1. Should it be
 * bound more widely all the same (`astro dev --host`), the sidecar still takes WebSockets
 * from loopback peers only: there is no access token here, and a Host header is only what
 * the peer chose to write.
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AstroIntegration } from 'astro';
import { Sidecar, loopbackHosts } from './sidecar.ts';
import { guardSocket } from './sockets.ts';

/** The part of Vite's dev server the sidecar uses. */
interface DevServer {
  config: { server: { port?: number } };
  httpServer: (EventEmitter & { address(): AddressInfo | string | null }) | null;
}

export function attachSidecar(server: DevServer): Sidecar {
  const configured = server.config.server.port ?? 4321;
  // The port Vite really listens on: it moves to the next one (4322, …) when the configured
  // one is taken, and its config keeps the configured number. Read at each request.
  const port = () => {
    const a = server.httpServer?.address();
    return a && typeof a === 'object' ? a.port : configured;
  };
  const sidecar = new Sidecar({ allowedHosts: (host) => loopbackHosts(port()).includes(host.toLowerCase()), loopbackPeersOnly: true });
  // Vite's own HMR socket shares this server: handleUpgrade ignores paths that are not ours.
  server.httpServer?.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    guardSocket(socket);
    sidecar.handleUpgrade(req, socket, head);
  });
  return sidecar;
}

export default function labSidecar(): AstroIntegration {
  let sidecar: Sidecar | null = null;
  return {
    name: 'keepalive-lab-sidecar',
    hooks: {
      'astro:server:setup': ({ server }) => {
        sidecar = attachSidecar(server);
      },
      'astro:server:done': async () => {
        await sidecar?.close();
      },
    },
  };
}
