// Browser test of the dashboard, driven by tests/integration/dashboard.rs (which runs Kafka,
// Elasticsearch, the sink and the API, and produces the replay). Debian's chromium through
// playwright-core. The conversation is JSON lines:
//   stdout {"stage":"live"}            the page is loaded and both live streams are ready
//   stdin  {"tracks":N,"target":"…","target_position":[lon,lat],"observations":M,"feed":"…"}
//                                       the replay is in Kafka and indexed
//   stdout {"stage":"done", …}          what the page showed (the Rust test asserts on it)
//   stdout {"stage":"failed", …}        a condition was not met in time, with what was seen
// Every wait is for a condition with a timeout; nothing sleeps to pass.
import { createInterface } from 'node:readline';
import { COMMON_HOOKS, base, external, open, reporter, say, shot, tenant, token } from './page.mjs';

const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const { browser, page, requests } = await open();

const { seen, fail, until } = reporter(
  browser,
  page,
  {
    ...COMMON_HOOKS,
    selected: 'selectedTrack',
    history_points: 'historyPoints',
    window_points: 'windowPoints',
    rendered_aggregates: 'renderedAggregates',
  },
  100,
);

// 1. Load the page, the token passed in the fragment.
await page.goto(`${base}/dashboard/?tenant=${encodeURIComponent(tenant)}#token=${encodeURIComponent(token)}`);
await until('page live', () => window.geostream?.isLive() && window.geostream.eventsLive() && window.geostream.mapLoaded());
say({ stage: 'live', live_points: await page.evaluate(() => window.geostream.livePointCount()) });

// 2. The replay: wait until every replayed track is on the map, counted by the page.
const { value: line, done } = await input.next();
if (done) await fail('replay description', 'stdin closed');
const replay = JSON.parse(line);
await until('live points', (n) => window.geostream.livePointCount() === n, replay.tracks);

// 3. Click the target track's point on the map and see its history drawn; the aggregate bin
// produced around it is drawn from the vector tiles.
await page.evaluate(([p]) => window.geostream.focus(p, 12), [replay.target_position]);
await page.evaluate(() => window.geostream.refreshAggregates());
await until('aggregate bins drawn', () => window.geostream.renderedAggregates() > 0);
await until('target drawn', (t) => window.geostream.trackScreenPoint(t) !== null, replay.target);
const at = await page.evaluate((t) => window.geostream.trackScreenPoint(t), replay.target);
await page.mouse.click(at.x, at.y);
await until('history', (t) => window.geostream.selectedTrack() === t && window.geostream.historyPoints() > 0, replay.target);

// 4. History slider at its newest end: observations of the last window come from the OGC items.
await page.evaluate(() => {
  const s = document.getElementById('slider');
  s.value = s.max;
  s.dispatchEvent(new Event('change'));
});
await until('history window', () => window.geostream.windowPoints() > 0);

// 5. The feed status panel counts what the sink stored.
await until(
  'feed status',
  ([feed, n]) => document.querySelector(`#feeds tr[data-feed="${feed}"]`)?.dataset.total === String(n),
  [replay.feed, replay.observations],
  60_000,
);
const feedRow = await page.evaluate((feed) => {
  const tr = document.querySelector(`#feeds tr[data-feed="${feed}"]`);
  return { total: Number(tr.dataset.total), cells: [...tr.cells].map((c) => c.textContent) };
}, replay.feed);

// 6. The screenshot: every track in view, the clicked one's history and the bins on top.
await page.evaluate(() => window.geostream.fitAll());
await until('map idle', () => window.geostream.mapLoaded());
if (shot) await page.screenshot({ path: shot });
const s = await seen();
say({
  stage: 'done',
  ...s,
  tracks_shown: await page.evaluate(() => window.geostream.tracksShown()),
  history_panel: await page.evaluate(() => document.getElementById('selected').dataset.points),
  feed_row: feedRow,
  external_requests: external(requests),
});
await browser.close();
// stdin stays open on the Rust side; leave without waiting for it.
process.exit(0);
