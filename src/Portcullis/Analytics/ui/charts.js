// Time charts on the vendored uPlot (vendor/uPlot.iife.min.js, a global). A chart is built in a
// placeholder and drawn once the page is in the document (it needs its width); clicking a point opens
// the samples of that time bucket.
import { el } from './dom.js';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d'];

let pending = [];
let live = [];

/** Destroys the charts of the previous refresh. */
export function resetCharts() {
  for (const plot of live) plot.destroy();
  live = [];
}

/** Draws the charts of the page just put into the document. */
export function mountCharts() {
  for (const draw of pending) draw();
  pending = [];
}

/**
 * A time chart. times: seconds since the epoch; series: [{ label, values }]; format: value → text;
 * pick(t): the link to the rows behind the point at t (null: not clickable); step: the bucket width in seconds.
 */
export function timeChart({ id, times, series, format, pick, step }) {
  const total = series.reduce((sum, s) => sum + s.values.reduce((a, v) => a + (v ?? 0), 0), 0);
  // The plotted numbers in attributes too: what the chart shows can be checked without reading pixels.
  const box = el('div', { id, className: 'chart', 'data-points': times.length, 'data-series': series.length, 'data-total': total, 'data-step': step });
  if (times.length === 0 || series.length === 0) {
    box.append(el('p', { className: 'empty', text: 'No data in this range.' }));
    return box;
  }
  pending.push(() => {
    const options = {
      width: Math.max(280, box.clientWidth),
      height: 180,
      tzDate: (t) => uPlot.tzDate(new Date(t * 1000), 'Etc/UTC'),
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      // Latencies and shares have gaps (buckets without requests): lines span them, and a series with
      // few values shows its points, so one busy minute in an hour is still visible.
      series: [{}, ...series.map((s, i) => ({
        label: s.label,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        spanGaps: true,
        points: { show: s.values.filter((v) => v !== null && v !== undefined).length <= 30, size: 6, fill: COLORS[i % COLORS.length] },
        value: (u, v) => (v === null || v === undefined ? '–' : format(v)),
      }))],
      axes: [{}, { size: 70, values: (u, ticks) => ticks.map(format) }],
    };
    const plot = new uPlot(options, [times, ...series.map((s) => s.values)], box);
    live.push(plot);
    if (pick) {
      plot.over.classList.add('clickable');
      plot.over.title = 'Open the requests of this time';
      plot.over.addEventListener('click', () => {
        const index = plot.cursor.idx;
        if (index !== null && index !== undefined) location.assign(pick(times[index]));
      });
    }
  });
  return box;
}

/**
 * Lines up the points of several series (each [{ t, … }]) on one time axis: a bucket a series has no
 * point in counts 0 for counters and is a gap (null) for latencies.
 */
export function align(seriesList, fields) {
  const seconds = [...new Set(seriesList.flatMap((s) => s.points.map((p) => Date.parse(p.t) / 1000)))].sort((a, b) => a - b);
  const position = new Map(seconds.map((t, i) => [t, i]));
  const columns = seriesList.map((s) => {
    const values = {};
    for (const [field, empty] of Object.entries(fields)) values[field] = new Array(seconds.length).fill(empty);
    for (const point of s.points) {
      const i = position.get(Date.parse(point.t) / 1000);
      for (const field of Object.keys(fields)) values[field][i] = point[field] ?? fields[field];
    }
    return values;
  });
  return { times: seconds, columns };
}
