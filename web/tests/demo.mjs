// Browser check of `geostream demo`, driven by services/geostream/tests/cli.rs (which runs the demo
// and passes its dashboard's address, tenant and token). Debian's chromium through playwright-core.
// It loads the dashboard as a newcomer would and waits (each wait bounded) until the page is live,
// shows tracks of several feeds moving (live positions keep arriving), lists events and draws
// the demo's fences; then it prints one JSON line with what it saw:
//   {"stage":"done", ...}     or     {"stage":"failed", "what":..., "seen":...}
import { COMMON_HOOKS, base, external, open, reporter, say, shot, tenant, token } from './page.mjs';

const { browser, page, requests } = await open();

const { seen, until } = reporter(browser, page, { ...COMMON_HOOKS, events: 'events', fences: 'fences' }, 200);

await page.goto(`${base}/dashboard/?tenant=${encodeURIComponent(tenant)}#token=${encodeURIComponent(token)}`);
await until('page live', () => window.geostream?.isLive() && window.geostream.eventsLive() && window.geostream.mapLoaded());
const start = await seen();
// Moving: positions keep arriving live after the page went live, for tracks of several feeds.
await until('live positions arriving', (n) => window.geostream.liveFeatures() >= n + 50, start.live_features);
await until('tracks on the map', () => window.geostream.livePointCount() >= 20);
await until('events listed', () => window.geostream.events() > 0);
await until('fences drawn', () => window.geostream.fences() > 0);
// The feed panel fills at its next refresh (every 5 s) once the feeds have stored positions.
await until('feeds listed', () => document.querySelectorAll('#feeds tr[data-feed]').length >= 4);
const feeds = await page.evaluate(() => [...document.querySelectorAll('#feeds tr[data-feed]')].map((tr) => tr.dataset.feed));
await page.evaluate(() => window.geostream.fitAll());
// Drawn, not idle: with every feed moving, a busy machine may never see the map idle between
// two live updates (it did not, in 120 s, under the test suite's load).
await until('tracks drawn', () => window.geostream.renderedTracks() >= 20);
if (shot) await page.screenshot({ path: shot });
say({ stage: 'done', at_live: start, ...(await seen()), feeds, external_requests: external(requests) });
await browser.close();
process.exit(0);
