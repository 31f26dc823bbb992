// geostream's map dashboard: live tracks with short trails (Server-Sent Events read through
// fetch(), because EventSource cannot send the Authorization header), fences, events, aggregate
// bins from the API's vector tiles, a feed status panel, a history slider over the OGC items
// endpoint, and a track's history on click. Nothing is loaded from outside the API: no tiles,
// no fonts (no text layers, so no glyphs), the base layer is Natural Earth from dist/data.
import maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import './app.css';

const TRAIL = 12; // positions kept per track for its trail
const EVENTS_SHOWN = 100;
const HISTORY_WINDOW_MS = 10 * 60 * 1000;

const $ = (id) => document.getElementById(id);

// ---- token and tenant ----
function credentials() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get('token');
  if (fromHash) {
    localStorage.setItem('geostream.token', fromHash);
    // Out of the address bar (and history) once stored.
    history.replaceState(null, '', location.pathname + location.search);
  }
  const token = fromHash || localStorage.getItem('geostream.token') || '';
  const tenant = new URLSearchParams(location.search).get('tenant') || localStorage.getItem('geostream.tenant') || '';
  return { token, tenant };
}

let { token, tenant } = credentials();

async function api(path, init = {}) {
  const resp = await fetch(path, { ...init, headers: { ...(init.headers || {}), Authorization: `Bearer ${token}` } });
  if (!resp.ok) {
    let detail = `${resp.status}`;
    try {
      detail = (await resp.json()).detail || detail;
    } catch {
      // not problem+json
    }
    const err = new Error(`${path}: ${detail}`);
    err.status = resp.status;
    throw err;
  }
  return resp;
}
const v1 = (p) => `/v1/${encodeURIComponent(tenant)}${p}`;

// ---- state the test hook reads ----
const state = {
  tracks: new Map(), // track -> { feature, trail: [[lon, lat], ...] }
  liveFeatures: 0,
  obsReady: false,
  eventsReady: false,
  events: [],
  selected: null,
  historyPoints: 0,
  historyWindowPoints: 0,
  fences: 0,
  errors: [],
  minTime: null,
  maxTime: null,
};

function note(msg) {
  state.errors.push(msg);
  console.warn(msg);
}

const trackKey = (f) => f?.properties?.track ?? f?.id;

function position(f) {
  const g = f?.geometry;
  if (!g) return null;
  if (g.type === 'Point') return g.coordinates;
  // Anything else: the centre of its coordinates' box, as the API does.
  const flat = JSON.stringify(g.coordinates).match(/-?\d+(\.\d+)?(e-?\d+)?/gi)?.map(Number) || [];
  const xs = flat.filter((_, i) => i % 2 === 0);
  const ys = flat.filter((_, i) => i % 2 === 1);
  if (!xs.length) return null;
  return [(Math.min(...xs) + Math.max(...xs)) / 2, (Math.min(...ys) + Math.max(...ys)) / 2];
}

function seeTime(t) {
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) return;
  if (state.minTime === null || ms < state.minTime) state.minTime = ms;
  if (state.maxTime === null || ms > state.maxTime) state.maxTime = ms;
}

function addPosition(f, live) {
  const key = trackKey(f);
  const pos = position(f);
  if (key == null || !pos) return;
  if (live) state.liveFeatures += 1;
  seeTime(f.properties?.time);
  const t = state.tracks.get(key) || { feature: null, trail: [] };
  const newer = !t.feature || (f.properties?.time || '') >= (t.feature.properties?.time || '');
  if (newer) t.feature = f;
  t.trail.push(pos);
  if (t.trail.length > TRAIL) t.trail.shift();
  state.tracks.set(key, t);
  scheduleRedraw();
}

// ---- map ----
const map = new maplibregl.Map({
  container: 'map',
  center: [134, -25],
  zoom: 2,
  attributionControl: { compact: true, customAttribution: 'Natural Earth' },
  transformRequest: (url) => {
    // Our own API's tiles need the token; nothing else is requested but the base layer.
    const u = new URL(url, location.href);
    if (u.origin === location.origin && u.pathname.startsWith('/v1/')) {
      return { url, headers: { Authorization: `Bearer ${token}` } };
    }
    return { url };
  },
  style: {
    version: 8,
    sources: {
      countries: { type: 'geojson', data: 'data/countries.geojson' },
    },
    layers: [
      { id: 'sea', type: 'background', paint: { 'background-color': '#cfe3f0' } },
      { id: 'land', type: 'fill', source: 'countries', paint: { 'fill-color': '#f4f1ea' } },
      { id: 'borders', type: 'line', source: 'countries', paint: { 'line-color': '#b9b2a3', 'line-width': 0.6 } },
    ],
  },
});
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');

const empty = () => ({ type: 'FeatureCollection', features: [] });
let styleReady = false;
map.on('load', () => {
  map.addSource('aggregates', {
    type: 'vector',
    tiles: [new URL(v1('/tiles/aggregates/{z}/{x}/{y}.mvt'), location.href).href.replace(/%7B/g, '{').replace(/%7D/g, '}')],
    minzoom: 0,
    maxzoom: 14,
  });
  map.addLayer({
    id: 'aggregates-fill',
    type: 'fill',
    source: 'aggregates',
    'source-layer': 'aggregates',
    paint: {
      'fill-color': ['interpolate', ['linear'], ['coalesce', ['get', 'count'], 0], 0, '#fff7bc', 10, '#fec44f', 100, '#d95f0e', 1000, '#993404'],
      'fill-opacity': 0.55,
    },
  });
  map.addLayer({
    id: 'aggregates-points',
    type: 'circle',
    source: 'aggregates',
    'source-layer': 'aggregates',
    filter: ['==', ['geometry-type'], 'Point'],
    paint: { 'circle-radius': 8, 'circle-color': '#d95f0e', 'circle-opacity': 0.4 },
  });
  map.addSource('fences', { type: 'geojson', data: empty() });
  map.addLayer({ id: 'fences-fill', type: 'fill', source: 'fences', paint: { 'fill-color': '#6a51a3', 'fill-opacity': 0.12 } });
  map.addLayer({ id: 'fences-line', type: 'line', source: 'fences', paint: { 'line-color': '#6a51a3', 'line-width': 1.5 } });
  map.addSource('window', { type: 'geojson', data: empty() });
  map.addLayer({ id: 'window', type: 'circle', source: 'window', paint: { 'circle-radius': 2.5, 'circle-color': '#31a354', 'circle-opacity': 0.7 } });
  map.addSource('trails', { type: 'geojson', data: empty() });
  map.addLayer({ id: 'trails', type: 'line', source: 'trails', paint: { 'line-color': '#2b8cbe', 'line-width': 1.5, 'line-opacity': 0.6 } });
  map.addSource('history', { type: 'geojson', data: empty() });
  map.addLayer({ id: 'history-line', type: 'line', source: 'history', filter: ['==', ['geometry-type'], 'LineString'], paint: { 'line-color': '#e6550d', 'line-width': 3 } });
  map.addLayer({ id: 'history-points', type: 'circle', source: 'history', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-radius': 3, 'circle-color': '#e6550d' } });
  map.addSource('tracks', { type: 'geojson', data: empty() });
  map.addLayer({
    id: 'tracks',
    type: 'circle',
    source: 'tracks',
    paint: { 'circle-radius': 5, 'circle-color': '#045a8d', 'circle-stroke-color': '#fff', 'circle-stroke-width': 1 },
  });
  map.on('click', 'tracks', (e) => {
    const f = e.features?.[0];
    if (f) selectTrack(String(f.properties.track));
  });
  map.on('mouseenter', 'tracks', () => (map.getCanvas().style.cursor = 'pointer'));
  map.on('mouseleave', 'tracks', () => (map.getCanvas().style.cursor = ''));
  styleReady = true;
  redraw();
  loadFences();
});

let redrawPending = false;
function scheduleRedraw() {
  if (redrawPending) return;
  redrawPending = true;
  setTimeout(() => {
    redrawPending = false;
    redraw();
  }, 100);
}

function redraw() {
  const points = [];
  const trails = [];
  for (const [key, t] of state.tracks) {
    const p = position(t.feature);
    if (!p) continue;
    points.push({ type: 'Feature', geometry: { type: 'Point', coordinates: p }, properties: { track: String(key), time: t.feature.properties?.time ?? '' } });
    if (t.trail.length > 1) trails.push({ type: 'Feature', geometry: { type: 'LineString', coordinates: t.trail }, properties: { track: String(key) } });
  }
  const count = $('track-count');
  count.textContent = String(points.length);
  count.dataset.count = String(points.length);
  if (styleReady) {
    map.getSource('tracks').setData({ type: 'FeatureCollection', features: points });
    map.getSource('trails').setData({ type: 'FeatureCollection', features: trails });
  }
  updateSlider();
}

// ---- live push over fetch() ----
async function follow(kind, onFeature, onReady) {
  for (;;) {
    try {
      const resp = await api(v1(`/live?kind=${kind}`), { headers: { Accept: 'text/event-stream' } });
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (event === 'ready') onReady(true);
          else if (event === 'feature') onFeature(JSON.parse(data.join('\n')));
          else if (event === 'dropped') note(`${kind} stream dropped: ${data.join(' ')}`);
        }
      }
    } catch (e) {
      note(`${kind} stream: ${e.message}`);
    }
    onReady(false);
    // Reconnect from the current end; what was missed meanwhile is in /latest and /events.
    await new Promise((r) => setTimeout(r, 3000));
  }
}

function setConn() {
  const c = $('conn');
  c.dataset.live = String(state.obsReady);
  c.dataset.eventsLive = String(state.eventsReady);
  c.textContent = state.obsReady ? `live · ${state.liveFeatures} positions received` : 'connecting…';
}

// ---- events ----
function addEvent(f, top) {
  state.events[top ? 'unshift' : 'push'](f);
  if (state.events.length > EVENTS_SHOWN) state.events.length = EVENTS_SHOWN;
  const ol = $('events');
  ol.replaceChildren(
    ...state.events.map((e) => {
      const li = document.createElement('li');
      const p = e.properties || {};
      li.textContent = `${p.time ?? ''} ${p.kind ?? ''} ${p.track ?? ''} ${p.fence?.id ?? p.analytic ?? ''}`;
      li.dataset.kind = p.kind ?? '';
      return li;
    }),
  );
  ol.dataset.count = String(state.events.length);
}

// ---- fences ----
function circle(center, radiusM) {
  const ring = [];
  const [lon, lat] = center;
  for (let i = 0; i <= 64; i++) {
    const a = (i / 64) * 2 * Math.PI;
    const dLat = (radiusM * Math.cos(a)) / 111320;
    const dLon = (radiusM * Math.sin(a)) / (111320 * Math.cos((lat * Math.PI) / 180));
    ring.push([lon + dLon, lat + dLat]);
  }
  return { type: 'Polygon', coordinates: [ring] };
}

async function loadFences() {
  try {
    const body = await (await api(v1('/fences'))).json();
    const features = body.items
      .filter((s) => s.enabled !== false)
      .map((s) => ({
        type: 'Feature',
        geometry: s.geometry.type === 'Circle' ? circle(s.geometry.center, s.geometry.radius_m) : s.geometry,
        properties: { id: s.id, name: s.name },
      }));
    state.fences = features.length;
    if (styleReady) map.getSource('fences').setData({ type: 'FeatureCollection', features });
  } catch (e) {
    note(`fences: ${e.message}`);
  }
}

// ---- feed status ----
async function feedStatus() {
  try {
    const body = await (await api(v1('/feed-status?minutes=5'))).json();
    $('feeds').tBodies[0].replaceChildren(
      ...body.feeds.map((f) => {
        const tr = document.createElement('tr');
        for (const v of [f.feed, f.rate_per_s.toFixed(2), f.errors ?? '?', f.last_received ? new Date(f.last_received).toLocaleTimeString() : '–']) {
          const td = document.createElement('td');
          td.textContent = String(v);
          tr.append(td);
        }
        tr.dataset.feed = f.feed;
        tr.dataset.total = String(f.total);
        return tr;
      }),
    );
  } catch (e) {
    note(`feed status: ${e.message}`);
  }
}

// ---- a track's history ----
async function selectTrack(track) {
  state.selected = track;
  state.historyPoints = 0;
  const sel = $('selected');
  sel.dataset.track = track;
  sel.dataset.points = '0';
  sel.textContent = `${track}: loading…`;
  try {
    const features = [];
    let line = null;
    let next = v1(`/tracks/${encodeURIComponent(track)}?limit=9999`);
    while (next) {
      const body = await (await api(next)).json();
      features.push(...body.features);
      line = body.line;
      next = body.next || null;
    }
    if (state.selected !== track) return;
    // The API's line covers one page; draw one through every position fetched.
    const coords = features.map(position).filter(Boolean);
    const drawn = coords.length > 1 ? [{ type: 'Feature', geometry: { type: 'LineString', coordinates: coords }, properties: { track } }] : [];
    const pts = coords.map((c) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: c }, properties: { track } }));
    map.getSource('history').setData({ type: 'FeatureCollection', features: [...drawn, ...pts] });
    state.historyPoints = features.length;
    sel.dataset.points = String(features.length);
    const first = features[0]?.properties?.time ?? line?.properties?.start ?? '';
    const last = features.at(-1)?.properties?.time ?? '';
    sel.textContent = `${track}: ${features.length} positions, ${first} … ${last}`;
  } catch (e) {
    sel.textContent = `${track}: ${e.message}`;
    note(`track ${track}: ${e.message}`);
  }
}

// ---- history slider: observations in a window ending at the chosen time ----
function updateSlider() {
  const s = $('slider');
  if (state.minTime === null) return;
  s.disabled = false;
}

let windowSeq = 0;
async function loadWindow() {
  if (state.minTime === null) return;
  const frac = Number($('slider').value) / 1000;
  const end = state.minTime + (state.maxTime - state.minTime) * frac;
  const start = end - HISTORY_WINDOW_MS;
  const iso = (ms) => new Date(ms).toISOString();
  const seq = ++windowSeq;
  $('slider-label').textContent = `${iso(start)} … ${iso(end)}: loading`;
  try {
    const q = `datetime=${iso(start)}/${iso(end)}&limit=5000`;
    const body = await (await api(`/ogc/${encodeURIComponent(tenant)}/collections/observations/items?${q}`)).json();
    if (seq !== windowSeq) return;
    map.getSource('window').setData({ type: 'FeatureCollection', features: body.features });
    state.historyWindowPoints = body.features.length;
    $('slider-label').textContent = `${iso(start)} … ${iso(end)}: ${body.features.length} of ${body.numberMatched ?? '?'} observations`;
  } catch (e) {
    note(`history window: ${e.message}`);
  }
}
$('slider').addEventListener('change', loadWindow);

// ---- start ----
async function start() {
  $('tenant').textContent = tenant;
  follow('observations', (f) => {
    addPosition(f, true);
    setConn();
  }, (ready) => {
    state.obsReady = ready;
    setConn();
  });
  follow('events', (f) => addEvent(f, true), (ready) => {
    state.eventsReady = ready;
    setConn();
  });
  try {
    let next = v1('/latest?limit=9999');
    while (next) {
      const body = await (await api(next)).json();
      body.features.forEach((f) => addPosition(f, false));
      next = body.next || null;
    }
  } catch (e) {
    note(`latest: ${e.message}`);
  }
  try {
    const body = await (await api(v1('/events?limit=50'))).json();
    body.features.forEach((f) => addEvent(f, false));
  } catch (e) {
    note(`events: ${e.message}`);
  }
  feedStatus();
  setInterval(feedStatus, 5000);
}

if (token && tenant) {
  start();
} else {
  const form = $('login');
  form.hidden = false;
  $('tenant-input').value = tenant;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    tenant = $('tenant-input').value.trim();
    localStorage.setItem('geostream.token', token);
    localStorage.setItem('geostream.tenant', tenant);
    form.hidden = true;
    start();
  });
}

function refreshAggregates() {
  if (!styleReady) return;
  const src = map.getSource('aggregates');
  src.setTiles(src.tiles.slice());
}
setInterval(refreshAggregates, 30_000);

// Every track in view, the panel's width kept clear.
function fitAll() {
  const pts = [...state.tracks.values()].map((t) => position(t.feature)).filter(Boolean);
  if (!pts.length) return;
  const b = new maplibregl.LngLatBounds(pts[0], pts[0]);
  pts.forEach((p) => b.extend(p));
  map.fitBounds(b, { padding: { top: 40, bottom: 40, left: 40, right: 380 }, maxZoom: 12, duration: 0 });
}

// ---- the hook browser tests count through ----
window.geostream = {
  isLive: () => state.obsReady,
  eventsLive: () => state.eventsReady,
  livePointCount: () => state.tracks.size,
  liveFeatures: () => state.liveFeatures,
  tracksShown: () => [...state.tracks.keys()].map(String).sort(),
  trackPosition: (track) => position(state.tracks.get(track)?.feature),
  // Where a track's point is on screen, once the map has drawn it there (null until then).
  trackScreenPoint: (track) => {
    const p = position(state.tracks.get(track)?.feature);
    if (!p || !styleReady) return null;
    const px = map.project(p);
    const box = map.getContainer().getBoundingClientRect();
    const hit = map.queryRenderedFeatures([px.x, px.y], { layers: ['tracks'] });
    return hit.some((f) => String(f.properties.track) === track) ? { x: box.left + px.x, y: box.top + px.y } : null;
  },
  focus: (lonlat, zoom) => map.jumpTo({ center: lonlat, zoom }),
  selectedTrack: () => state.selected,
  historyPoints: () => state.historyPoints,
  windowPoints: () => state.historyWindowPoints,
  events: () => state.events.length,
  fences: () => state.fences,
  errors: () => [...state.errors],
  mapLoaded: () => styleReady && map.loaded(),
  // Tiles are cached by the map; new bins show after a reload (also every 30 s).
  refreshAggregates,
  renderedAggregates: () => (styleReady ? map.queryRenderedFeatures({ layers: ['aggregates-fill'] }).length : 0),
  renderedTracks: () => (styleReady ? map.queryRenderedFeatures({ layers: ['tracks'] }).length : 0),
  fitAll,
};
