// The advisor's page (/ui/advice): its findings with their evidence, explanation and patch, filtered by
// severity, kind and state. The sign-in cookie only reads: acknowledging, muting and applying a patch are
// shown as the API call (with an admin token) and the CLI command to run.
import { el, fmt, table } from './dom.js';

const SEVERITIES = ['info', 'warning', 'critical'];
const STATES = ['open', 'acknowledged', 'muted', 'resolved', 'all'];
const number = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });

function select(id, label, values, current, all) {
  return el('label', { className: 'filter' }, label + ' ',
    el('select', { id, 'data-filter': id.replace('advice-', '') },
      all ? el('option', { value: '', text: all }) : null,
      values.map((v) => el('option', { value: v, text: v, selected: v === current }))));
}

function evidence(f) {
  const e = f.evidence;
  return el('div', { className: 'evidence' },
    el('p', { className: 'hint' },
      `Evidence ${fmt.time(e.from)} → ${fmt.time(e.to)} UTC`, e.basis ? ` · ${e.basis}` : '',
      e.dashboardLink ? el('a', { className: 'rows', href: e.dashboardLink, text: ' rows →' }) : null),
    table('evidence-' + f.id, [
      { title: 'Measure', cell: (v) => v.name },
      { title: 'Value', className: 'num', cell: (v) => number.format(v.value ?? 0) + (v.unit ? ' ' + v.unit : '') },
      { title: 'Baseline', className: 'num', cell: (v) => (v.baseline === null || v.baseline === undefined ? '–' : number.format(v.baseline) + (v.unit ? ' ' + v.unit : '')) },
    ], e.values.map((v) => ({ ...v, key: v.name })), 'No numbers.'));
}

function actions(f) {
  const base = `curl -X POST -H "Authorization: Bearer $PORTCULLIS_ADMIN_TOKEN" ${location.origin}/admin/advice/${f.id}`;
  const lines = [`${base}/${f.state === 'muted' ? 'unmute' : 'mute'}`];
  if (f.state === 'open') lines.unshift(`${base}/acknowledge`);
  if (f.patch) lines.push(`portcullis advise -c portcullis.yaml --apply ${f.id}`);
  return el('details', { className: 'actions' },
    el('summary', { text: 'Acknowledge, mute' + (f.patch ? ', apply' : '') + ' (admin token)' }),
    el('p', { className: 'hint', text: 'This page only reads. Run these with an admin-scope token, or apply the patch with the CLI:' }),
    el('pre', { className: 'command', text: lines.join('\n') }));
}

function finding(f) {
  return el('article', { className: `finding severity-${f.severity}`, id: 'finding-' + f.id, 'data-kind': f.kind, 'data-severity': f.severity, 'data-state': f.state },
    el('h2', {}, el('span', { className: 'badge ' + f.severity, text: f.severity }), ' ', el('span', { className: 'title', text: f.title })),
    el('p', { className: 'meta' },
      `${f.kind} · ${f.subject.kind} ${f.subject.name}${f.subject.route ? ' on route ' + f.subject.route : ''} · confidence ${f.confidence}`
      + ` · first seen ${fmt.time(f.firstSeen)} · last seen ${fmt.time(f.lastSeen)} UTC · ${f.state} · id ${f.id}`),
    el('p', { className: 'explanation', text: f.explanation }),
    evidence(f),
    f.patch ? el('div', { className: 'patch' },
      el('p', { className: 'hint', text: 'Patch' + (f.patch.file ? ' (for ' + f.patch.file + ')' : '') + ': ' + f.patch.summary }),
      el('pre', { id: 'patch-' + f.id, text: f.patch.yaml })) : null,
    actions(f));
}

export async function advicePage(ctx) {
  const params = {};
  for (const name of ['kind', 'severity', 'subject', 'state']) {
    const value = ctx.params.get(name);
    if (value) params[name] = value;
  }
  const [answer, all] = await Promise.all([ctx.advice(params), ctx.advice({ state: 'all' })]);
  const id = ctx.params.get('id');
  const findings = id ? answer.findings.filter((f) => f.id === id) : answer.findings;
  const kinds = [...new Set(all.findings.map((f) => f.kind))].sort();
  const filters = el('form', { className: 'filters', id: 'advice-filters' },
    select('advice-severity', 'Severity', SEVERITIES, params.severity, 'any'),
    select('advice-kind', 'Kind', kinds, params.kind, 'any'),
    select('advice-state', 'State', STATES, params.state ?? 'open', null));
  for (const changed of filters.querySelectorAll('select')) {
    changed.addEventListener('change', () => {
      const next = {};
      for (const s of filters.querySelectorAll('select')) if (s.value) next[s.dataset.filter] = s.value;
      location.assign(ctx.href('/ui/advice', next));
    });
  }
  const run = answer.lastRun;
  const summary = !answer.enabled ? 'The advisor is off (advice.enabled: false).'
    : !run ? 'The advisor has not run yet.'
      : `Last run ${fmt.time(run.at)} UTC in ${number.format(run.durationMs)} ms over ${run.detectors.length} detector(s)`
        + (answer.storeAvailable ? '' : ' · no analytics store: config checks only')
        + run.detectors.filter((d) => d.error).map((d) => ` · ${d.name} failed: ${d.error}`).join('');
  const node = el('div', { className: 'dashboard advice' },
    el('div', { className: 'heading' }, el('h1', { id: 'title', text: 'Advice' })),
    el('p', { id: 'advice-run', className: 'hint', text: summary }),
    filters,
    findings.length === 0
      ? el('p', { id: 'findings', className: 'empty', text: 'No findings match.' })
      : el('div', { id: 'findings' }, findings.map(finding)));
  const at = answer.generatedAt ?? new Date().toISOString();
  return { node, from: at, to: at, source: 'advisor' };
}
