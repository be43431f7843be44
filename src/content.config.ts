/**
 * The lessons live in the top-level content/ folder (not Starlight's default
 * src/content/docs/), beside demos/ and src/: a course author edits prose without going
 * into the site's code. Starlight's docsLoader() has no option for another folder, so this
 * is the glob loader it wraps, with the same pattern (files starting with `_` are skipped)
 * and Starlight's schema.
 */
// `npm test` type-checks src/ with plain tsc, which does not know Astro's virtual modules:
// this declares 'astro:content' (Astro's own file; `astro sync` generates richer types).
/// <reference path="../node_modules/astro/types/content.d.ts" />
import { defineCollection } from 'astro:content';
import { glob } from 'astro/loaders';
import { i18nLoader } from '@astrojs/starlight/loaders';
import { docsSchema, i18nSchema } from '@astrojs/starlight/schema';

export const collections = {
  docs: defineCollection({
    loader: glob({ base: './content', pattern: '**/[^_]*.{md,mdx}' }),
    schema: docsSchema(),
  }),
  // Starlight's UI strings, overridable per language in src/content/i18n/<lang>.json. Declared
  // (with an empty en.json) so Starlight finds the collection it always asks for.
  i18n: defineCollection({ loader: i18nLoader(), schema: i18nSchema() }),
};
