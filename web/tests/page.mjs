// What both browser scripts share (browser.mjs for the dashboard test, demo.mjs for the demo's):
// the settings from the environment the Rust test passes, Debian's chromium started the same way,
// one page with its console and errors forwarded and every request it makes recorded (the tests
// check that none leaves the API), and the JSON-lines reply on stdout.
import { chromium } from 'playwright-core';

export const env = process.env;
export const base = env.GEOSTREAM_URL;
export const token = env.GEOSTREAM_TOKEN;
export const tenant = env.GEOSTREAM_TENANT;
export const shot = env.GEOSTREAM_SCREENSHOT;
export const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** Starts chromium and opens one 1280x800 page; `requests` collects every URL it asks for. */
export async function open() {
  const browser = await chromium.launch({
    executablePath: env.GEOSTREAM_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const requests = [];
  page.on('console', (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  page.on('request', (r) => requests.push(r.url()));
  return { browser, page, requests };
}

/** The requests that went anywhere but the API (data: and blob: URLs are the page's own). */
export function external(requests) {
  return requests.filter((u) => !u.startsWith(base) && !u.startsWith('data:') && !u.startsWith('blob:'));
}

/** What both scripts report of the page's test hook (`window.geostream`), by report key. */
export const COMMON_HOOKS = {
  live: 'isLive',
  events_live: 'eventsLive',
  live_points: 'livePointCount',
  live_features: 'liveFeatures',
  errors: 'errors',
};

/**
 * `seen()`: what the hook reports, `{key: window.geostream[name]()}` for each of `hooks`.
 * `fail(what, e)`: ends the script with a screenshot and `{"stage":"failed", what, error, seen}`.
 * `until(what, fn, arg, timeout)`: waits for a page condition, polled every `polling` ms; one not
 * met in time fails.
 */
export function reporter(browser, page, hooks, polling) {
  const seen = () =>
    page
      .evaluate((hooks) => {
        const g = window.geostream;
        if (!g) return { hook: false };
        return Object.fromEntries(Object.entries(hooks).map(([key, name]) => [key, g[name]()]));
      }, hooks)
      .catch((e) => ({ evaluate: e.message }));
  async function fail(what, e) {
    const s = await seen();
    if (shot) await page.screenshot({ path: shot }).catch(() => {});
    say({ stage: 'failed', what, error: String(e?.message ?? e), seen: s });
    await browser.close();
    process.exit(1);
  }
  async function until(what, fn, arg, timeout = 120_000) {
    try {
      await page.waitForFunction(fn, arg, { timeout, polling });
    } catch (e) {
      await fail(what, e);
    }
  }
  return { seen, fail, until };
}
