// @ts-check
import { defineConfig } from 'astro/config';
import starlight from '@astrojs/starlight';

/**
 * The course site. Lessons are MDX files in the top-level content/ folder (see
 * src/content.config.ts); everything is built statically into dist/, which `npm start`
 * serves together with the lab sidecar at /api/lab.
 *
 * `astro dev` also attaches the sidecar to Vite's server (src/sidecar/astro-integration.ts),
 * so lessons run live labs with live reload. It is imported only for `dev`: a static build
 * (a hosted copy, a machine where no lab can run) does not load the lab code at all.
 */
const isDev = process.argv.slice(2).includes('dev');
const devIntegrations = isDev ? [(await import('./src/sidecar/astro-integration.ts')).default()] : [];

export default defineConfig({
  // The hosted copy's address, for canonical links and the sitemap (none when unset).
  site: process.env.SITE_URL || undefined,
  outDir: './dist',
  vite: {
    build: {
      rolldownOptions: {
        onwarn(warning, warn) {
          // Every MDX page triggers this with Astro 7 + Rolldown; harmless, and tracked
          // upstream (withastro/astro#18087). Hidden so that real warnings stand out.
          if (warning.code === 'MODULE_LEVEL_DIRECTIVE' && String(warning.message).includes('astro:head-inject')) return;
          warn(warning);
        },
      },
    },
  },
  output: 'static',
  // No telemetry, no remote fonts or images: the build works offline.
  integrations: [
    starlight({
      title: 'Keepalive Lab',
      description:
        'Why servers fill up with dead TCP connections, and how to stop it: an interactive course with a real network lab.',
      favicon: '/favicon.svg',
      customCss: ['./src/styles/custom.css'],
      // Starlight's defaults cover the rest (it adds @astrojs/mdx itself): a light/dark theme switch, Pagefind search
      // (built into dist/pagefind/, works offline), Expressive Code with copy buttons.
      // The sidebar lists pages by slug: Starlight's `autogenerate` only understands the
      // default src/content/docs/ folder.
      sidebar: [
        {
          label: 'Start here',
          items: [{ label: 'Welcome', slug: 'index' }],
        },
        {
          label: 'Course',
          items: [
            { slug: 'course/incident' },
            { slug: 'course/echo-server' },
            { slug: 'course/experiment-a' },
            { slug: 'course/experiment-b' },
            { slug: 'course/experiment-c' },
            { slug: 'course/keepalive' },
            { slug: 'course/keepalive-limits' },
            { slug: 'course/heartbeats' },
            { slug: 'course/side-by-side' },
            { slug: 'course/checklist' },
          ],
        },
        {
          // One scenario a page, with only its lab: for trainers and for trying things out.
          label: 'Playground',
          collapsed: true,
          items: [
            { slug: 'lab/fd-exhaustion' },
            { slug: 'lab/experiment-a' },
            { slug: 'lab/experiment-b' },
            { slug: 'lab/experiment-b-same-address' },
            { slug: 'lab/experiment-b-too-late' },
            { slug: 'lab/experiment-c' },
            { slug: 'lab/keepalive' },
            { slug: 'lab/keepalive-unacked' },
            { slug: 'lab/keepalive-user-timeout' },
            { slug: 'lab/hung-client' },
            { slug: 'lab/heartbeat' },
          ],
        },
      ],
      tableOfContents: { minHeadingLevel: 2, maxHeadingLevel: 3 },
    }),
    ...devIntegrations,
  ],
});
