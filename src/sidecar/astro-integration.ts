/**
 * `npm run dev`: the same sidecar, attached to Astro's dev server, so lessons with live
 * reload can still run labs at /api/lab.
 */
import type { AstroIntegration } from 'astro';
import { Sidecar, loopbackHosts } from './sidecar.ts';

export default function labSidecar(): AstroIntegration {
  let sidecar: Sidecar | null = null;
  return {
    name: 'keepalive-lab-sidecar',
    hooks: {
      'astro:server:setup': ({ server }) => {
        const port = server.config.server.port ?? 4321;
        sidecar = new Sidecar({ allowedHosts: loopbackHosts(port) });
        // Vite's own HMR socket shares this server: handleUpgrade ignores paths that are not ours.
        server.httpServer?.on('upgrade', (req, socket, head) => {
          sidecar?.handleUpgrade(req, socket, head);
        });
      },
      'astro:server:done': async () => {
        await sidecar?.close();
      },
    },
  };
}
