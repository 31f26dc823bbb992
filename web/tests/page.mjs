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
