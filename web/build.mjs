// Bundles the dashboard into dist/ (run by scripts/dashboard.sh). Everything the page loads is in
// dist/: the script, its CSS (MapLibre's included), the page and the base-layer GeoJSON, so it
// works with no internet.
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');
mkdirSync(join(out, 'data'), { recursive: true });
await esbuild.build({
  entryPoints: [join(here, 'src/app.js')],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'iife',
  target: ['es2020'],
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'src/index.html'), join(out, 'index.html'));
copyFileSync(join(here, 'data/naturalearth_110m_admin0_countries.geojson'), join(out, 'data/countries.geojson'));
