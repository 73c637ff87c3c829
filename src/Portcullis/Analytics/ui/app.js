// The dashboard shell: time range and filters (kept in the page URL, so every view can be linked),
// calls to the analytics API, auto-refresh, and the page for this path.
import { el, fmt } from './dom.js';
import { mountCharts, resetCharts } from './charts.js';
import { pages } from './pages.js';

const PRESETS = { '15m': 'now-15m', '1h': 'now-1h', '24h': 'now-24h', '7d': 'now-7d' };
const FILTERS = ['route', 'cluster', 'consumer', 'consumerGroup', 'status', 'reason', 'minStatus'];

const url = new URL(location.href);
const $ = (id) => document.getElementById(id);

/** The API's from/to for the chosen range: a preset relative to now, or custom ISO instants. */
function range() {
  const from = url.searchParams.get('from');
  const to = url.searchParams.get('to');
  if (from && to) return { from, to };
  return { from: PRESETS[url.searchParams.get('range')] ?? PRESETS['1h'], to: 'now' };
}

/** This page's filters (route, consumer, …) from its URL. */
function filters() {
  const result = {};
  for (const name of FILTERS) {
    const value = url.searchParams.get(name);
    if (value) result[name] = value;
  }
  return result;
}

/** A dashboard link that keeps the current time range; `params` replace the filters. */
export function href(path, params = {}) {
  const target = new URLSearchParams();
  for (const name of ['range', 'from', 'to']) {
    const value = url.searchParams.get(name);
    if (value) target.set(name, value);
  }
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') target.set(name, value);
  }
  const query = target.toString();
  return path + (query ? '?' + query : '');
}

/** GET /admin/analytics/{endpoint} with the range and `params`; a lost sign-in goes back to the form. */
function api(endpoint, params = {}) {
  return get('/admin/analytics/' + endpoint, endpoint, { ...range(), ...params });
}

/** GET /admin/advice with `params` (kind, severity, subject, state): the advisor's findings. */
function advice(params = {}) {
  return get('/admin/advice', 'advice', params);
}

async function get(path, endpoint, params) {
  const query = new URLSearchParams(params);
  const response = await fetch(path + '?' + query, { headers: { Accept: 'application/json' } });
  if (response.status === 401) {
    location.assign('/ui/login?next=' + encodeURIComponent(location.pathname + location.search));
    throw new Error('signed out');
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch { /* not problem+json */ }
    throw new Error(`${endpoint}: ${response.status} ${detail}`);
  }
  return response.json();
}

let timer = 0;
let paused = false;
let loading = false;

async function load() {
  if (loading) return;
  loading = true;
  clearTimeout(timer);
  const status = $('status');
  const pageName = location.pathname.replace(/^\/ui\/?/, '') || 'overview';
  const page = pages[pageName] ?? pages.overview;
  // The navigation keeps the chosen range.
  $('nav-overview').href = href('/ui/');
  $('nav-samples').href = href('/ui/samples');
  $('nav-advice').href = href('/ui/advice');
  try {
    const content = await page({ api, advice, href, filters: filters(), params: url.searchParams, range: range() });
    resetCharts();
    $('page').replaceChildren(content.node);
    mountCharts();
    status.className = 'status';
    status.replaceChildren(
      el('span', { id: 'shown-range', 'data-from': content.from, 'data-to': content.to },
        `${fmt.time(content.from)} → ${fmt.time(content.to)} UTC`),
      ` · ${content.source} · updated ${new Date().toLocaleTimeString('en-GB')}${paused ? ' · paused' : ''}`);
  } catch (error) {
    status.className = 'status error';
    status.textContent = String(error.message ?? error);
  } finally {
    loading = false;
    schedule();
  }
}

function schedule() {
  clearTimeout(timer);
  if (!paused) timer = setTimeout(load, Number($('refresh').value) * 1000);
}

/** Writes the range into the page URL (so it survives reloads and links) and loads again. */
function setRange(params) {
  for (const name of ['range', 'from', 'to']) url.searchParams.delete(name);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  history.replaceState(null, '', url);
  load();
}

// The inputs hold UTC (datetime-local has no zone of its own).
const toInput = (date) => date.toISOString().slice(0, 16);
const fromInput = (value) => new Date(value + (value.length === 16 ? ':00Z' : 'Z'));

function setUpControls() {
  const select = $('range');
  const custom = url.searchParams.has('from') && url.searchParams.has('to');
  select.value = custom ? 'custom' : (url.searchParams.get('range') in PRESETS ? url.searchParams.get('range') : '1h');
  $('custom').hidden = !custom;
  const now = new Date();
  $('from').value = toInput(custom ? new Date(url.searchParams.get('from')) : new Date(now.getTime() - 3600_000));
  $('to').value = toInput(custom ? new Date(url.searchParams.get('to')) : now);
  select.addEventListener('change', () => {
    $('custom').hidden = select.value !== 'custom';
    if (select.value !== 'custom') setRange({ range: select.value });
  });
  $('apply').addEventListener('click', () => {
    const from = fromInput($('from').value);
    const to = fromInput($('to').value);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
      $('status').className = 'status error';
      $('status').textContent = 'Choose a start before the end.';
      return;
    }
    setRange({ from: from.toISOString().replace('.000Z', 'Z'), to: to.toISOString().replace('.000Z', 'Z') });
  });
  $('refresh').addEventListener('change', schedule);
  $('pause').addEventListener('click', () => {
    paused = !paused;
    $('pause').textContent = paused ? 'Resume' : 'Pause';
    $('pause').setAttribute('aria-pressed', String(paused));
    if (paused) clearTimeout(timer); else load();
  });
}

setUpControls();
load();
