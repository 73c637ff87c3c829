// The pages: overview, a route, a consumer (the overview with a filter) and the samples (live tail).
// Each returns { node, from, to, source } once its data is in; app.js puts it on screen.
import { el, fmt, table, panel } from './dom.js';
import { align, timeChart } from './charts.js';
import { advicePage } from './advice.js';

const UNITS = { s: 1, m: 60, h: 3600, d: 86400 };
const stepSeconds = (step) => {
  const match = /^(\d+)([smhd])$/.exec(step ?? '');
  return match ? Number(match[1]) * UNITS[match[2]] : 60;
};

// A null key is the group "none": anonymous callers, unmatched requests, no refusal.
const keyParam = (key) => key ?? '(none)';
const keyText = (key, none) => key ?? none;

function card(id, label, value, link) {
  return el('a', { className: 'card', href: link }, el('span', { className: 'label', text: label }), el('span', { id, className: 'value', text: value }));
}

function heading(title, filter, ctx, path) {
  const chips = Object.entries(filter).map(([name, value]) => {
    const rest = { ...filter };
    delete rest[name];
    return el('a', { className: 'chip', href: ctx.href(path, rest), title: 'Remove this filter' }, `${name} = ${value} ×`);
  });
  return el('div', { className: 'heading' }, el('h1', { id: 'title', text: title }), ...chips);
}

function topRoutes(ctx, rows, filter) {
  return table('top-routes', [
    { title: 'Route', cell: (r) => el('a', { className: 'route-link', href: ctx.href('/ui/route', { route: keyParam(r.key) }), text: keyText(r.key, '(unmatched)') }) },
    ...numbers(ctx, (r) => ({ ...filter, route: keyParam(r.key) })),
  ], rows);
}

function topConsumers(ctx, rows, filter) {
  return table('top-consumers', [
    { title: 'Consumer', cell: (r) => el('a', { className: 'consumer-link', href: ctx.href('/ui/consumer', { consumer: keyParam(r.key) }), text: keyText(r.key, '(anonymous)') }) },
    ...numbers(ctx, (r) => ({ ...filter, consumer: keyParam(r.key) })),
  ], rows);
}

// The columns of a top table; the counts link to the samples behind them.
function numbers(ctx, filterOf) {
  return [
    { title: 'Requests', className: 'num', cell: (r) => el('a', { href: ctx.href('/ui/samples', filterOf(r)), text: fmt.count(r.requests) }) },
    { title: 'Errors', className: 'num', cell: (r) => el('a', { href: ctx.href('/ui/samples', { ...filterOf(r), status: '5xx' }), text: fmt.count(r.errors) }) },
    { title: 'Refused', className: 'num', cell: (r) => el('a', { href: ctx.href('/ui/samples', { ...filterOf(r), minStatus: 400 }), text: fmt.count(r.refused) }) },
    { title: 'Error rate', className: 'num', cell: (r) => fmt.percent(r.errorRate) },
    { title: 'p50', className: 'num', cell: (r) => fmt.ms(r.p50) },
    { title: 'p99', className: 'num', cell: (r) => fmt.ms(r.p99) },
    { title: 'Bytes out', className: 'num', cell: (r) => fmt.bytes(r.bytesOut) },
  ];
}

function samplesTable(ctx, rows, id = 'samples') {
  return table(id, [
    { title: 'Time', cell: (s) => fmt.time(s.ts) },
    { title: 'Method', cell: (s) => s.method },
    { title: 'Host', cell: (s) => s.host },
    { title: 'Path', className: 'path', cell: (s) => s.path },
    { title: 'Status', className: 'num', cell: (s) => el('span', { className: s.status >= 500 ? 'bad' : s.status >= 400 ? 'warn' : '', text: s.status }) },
    { title: 'Reason', cell: (s) => (s.reason ? el('a', { href: ctx.href('/ui/samples', { reason: s.reason }), text: s.reason }) : '') },
    { title: 'Route', cell: (s) => el('a', { href: ctx.href('/ui/route', { route: keyParam(s.route) }), text: keyText(s.route, '(unmatched)') }) },
    { title: 'Consumer', cell: (s) => el('a', { href: ctx.href('/ui/consumer', { consumer: keyParam(s.consumer) }), text: keyText(s.consumer, '(anonymous)') }) },
    { title: 'Latency', className: 'num', cell: (s) => fmt.ms(s.latencyMs) },
    { title: 'Upstream', className: 'num', cell: (s) => fmt.ms(s.upstreamMs) },
    { title: 'Request id', className: 'id', cell: (s) => s.requestId },
  ].map((c) => ({ ...c, cell: (s) => c.cell(s) ?? '' })), rows, 'No sampled requests in this range.');
}

/** The overview, or the same for one route or consumer; `tops` are the tables below the charts. */
async function dashboard(ctx, title, filter, tops) {
  const [summary, series, byReason, routes, consumers, recent] = await Promise.all([
    ctx.api('summary', filter),
    ctx.api('timeseries', filter),
    ctx.api('timeseries', { ...filter, groupBy: 'reason', limit: 8 }),
    tops.includes('routes') ? ctx.api('top', { ...filter, by: 'route', limit: 10 }) : null,
    tops.includes('consumers') ? ctx.api('top', { ...filter, by: 'consumer', limit: 10 }) : null,
    tops.includes('samples') ? ctx.api('samples', { ...filter, limit: 20 }) : null,
  ]);

  const step = stepSeconds(series.step);
  const seconds = Math.max(1, (Date.parse(summary.to) - Date.parse(summary.from)) / 1000);
  const samples = (extra) => ctx.href('/ui/samples', { ...filter, ...extra });
  // Clicking a point: that bucket's samples.
  const bucket = (extra) => (t) => ctx.href('/ui/samples', { ...filter, ...extra, from: new Date(t * 1000).toISOString(), to: new Date((t + step) * 1000).toISOString() });

  const all = align(series.series, { requests: 0, errors: 0, refused: 0, p50: null, p99: null });
  const column = all.columns[0] ?? { requests: [], errors: [], refused: [], p50: [], p99: [] };
  const share = (field) => column[field].map((n, i) => (column.requests[i] > 0 ? (n / column.requests[i]) * 100 : null));
  const refusals = byReason.series.filter((s) => s.key !== null);
  const reasons = align(refusals, { requests: 0 });

  const node = el('div', { className: 'dashboard' },
    heading(title, filter, ctx, '/ui/'),
    el('div', { className: 'cards' },
      card('total-requests', 'Requests', fmt.count(summary.requests), samples({})),
      card('total-rps', 'Requests/s', fmt.rate(summary.requests / seconds), samples({})),
      card('total-error-rate', 'Error rate (5xx)', fmt.percent(summary.errorRate), samples({ status: '5xx' })),
      card('total-refused', 'Refused', fmt.count(summary.refused), samples({ minStatus: 400 })),
      card('total-p50', 'Latency p50', fmt.ms(summary.latency?.p50), samples({})),
      card('total-p99', 'Latency p99', fmt.ms(summary.latency?.p99), samples({})),
      card('total-bytes-out', 'Bytes out', fmt.bytes(summary.bytesOut), samples({}))),
    el('div', { className: 'grid' },
      panel('Requests per second', samples({}), timeChart({
        id: 'chart-rps', times: all.times, format: fmt.rate, pick: bucket({}), step,
        series: [{ label: 'requests/s', values: column.requests.map((n) => n / step) }],
      })),
      panel('Errors and refusals (% of requests)', samples({ minStatus: 400 }), timeChart({
        id: 'chart-errors', times: all.times, format: (v) => fmt.rate(v) + ' %', pick: bucket({ minStatus: 400 }),
        series: [{ label: '5xx', values: share('errors') }, { label: 'refused', values: share('refused') }],
      })),
      panel('Latency', samples({}), timeChart({
        id: 'chart-latency', times: all.times, format: fmt.ms, pick: bucket({}),
        series: [{ label: 'p50', values: column.p50 }, { label: 'p99', values: column.p99 }],
      })),
      panel('Refusals and failures by reason', samples({ minStatus: 400 }), timeChart({
        id: 'chart-reasons', times: reasons.times, format: fmt.count, pick: bucket({ minStatus: 400 }),
        series: refusals.map((s, i) => ({ label: s.key, values: reasons.columns[i].requests })),
      }))),
    routes ? panel('Top routes', samples({}), topRoutes(ctx, routes.rows, filter)) : null,
    consumers ? panel('Top consumers', samples({}), topConsumers(ctx, consumers.rows, filter)) : null,
    el('div', { className: 'grid' },
      panel('Status classes', samples({}), table('status-classes', [
        { title: 'Class', cell: (r) => el('a', { href: samples({ status: r.key }), text: r.key }) },
        { title: 'Requests', className: 'num', cell: (r) => fmt.count(r.requests) },
      ], Object.entries(summary.statusClasses ?? {}).map(([key, requests]) => ({ key, requests })))),
      panel('Top reasons', samples({ minStatus: 400 }), table('reasons', [
        { title: 'Reason', cell: (r) => el('a', { href: samples({ reason: r.reason }), text: r.reason }) },
        { title: 'Requests', className: 'num', cell: (r) => fmt.count(r.requests) },
      ], (summary.reasons ?? []).map((r) => ({ ...r, key: r.reason })), 'No refusals in this range.'))),
    recent ? panel('Latest samples', samples({}), samplesTable(ctx, recent.rows, 'recent-samples')) : null);
  return { node, from: summary.from, to: summary.to, source: summary.source };
}

async function samplesPage(ctx) {
  const answer = await ctx.api('samples', { ...ctx.filters, limit: 200 });
  const node = el('div', { className: 'dashboard' },
    heading('Samples', ctx.filters, ctx, '/ui/samples'),
    el('p', { className: 'hint', text: 'Newest first: every refused or failed request and a share of successful ones. Refreshes on its own unless paused.' }),
    samplesTable(ctx, answer.rows));
  return { node, from: answer.from, to: answer.to, source: answer.source };
}

export const pages = {
  overview: (ctx) => dashboard(ctx, 'Overview', {}, ['routes', 'consumers']),
  route: (ctx) => dashboard(ctx, 'Route ' + (ctx.filters.route ?? ''), pick(ctx.filters, 'route'), ['consumers', 'samples']),
  consumer: (ctx) => dashboard(ctx, 'Consumer ' + (ctx.filters.consumer ?? ''), pick(ctx.filters, 'consumer'), ['routes', 'samples']),
  samples: samplesPage,
  advice: advicePage,
};

function pick(filters, name) {
  return filters[name] ? { [name]: filters[name] } : {};
}
