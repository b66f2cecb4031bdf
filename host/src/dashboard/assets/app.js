// Eddy's dashboard: one page, routed by the URL's fragment, reading and acting through
// the HTTP API. Everything shown comes from operators and records, so it is written as
// text nodes only (never as HTML).
'use strict';

const TOKEN_KEY = 'eddy.token';
const REFRESH_MS = 1000;
const main = document.getElementById('main');
let pageTimers = [];
let pageAborts = [];
// Which page is shown: a refresh that began on another one writes nothing.
let pageNumber = 0;

// ---- DOM helpers --------------------------------------------------------------------

function build(make, tag, attrs, children) {
  const el = make(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
const h = (tag, attrs, ...children) => build((t) => document.createElement(t), tag, attrs, children);
const s = (tag, attrs, ...children) =>
  build((t) => document.createElementNS('http://www.w3.org/2000/svg', t), tag, attrs, children);
const byId = (id) => document.getElementById(id);
function fill(el, ...children) {
  if (!el) return;
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}
function table(id, headers, rows) {
  return h('table', { id },
    h('thead', {}, h('tr', {}, headers.map(([label, cls]) => h('th', { class: cls }, label)))),
    h('tbody', {}, rows));
}
const badge = (state) => h('span', { class: `badge ${state}` }, state);

// ---- formatting ---------------------------------------------------------------------

const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const rate = (n) => (n === null || n === undefined ? '–' : n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
const time = (ms) => (ms === null || ms === undefined ? '–' : new Date(ms).toISOString().replace('T', ' ').replace('Z', ''));
const bytes = (n) => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
};
const short = (text, max) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

// ---- the API, with the user's token --------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body.detail ? `${body.error}: ${body.detail}` : body.error);
    this.status = status;
  }
}

async function call(method, path, body, raw) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  if (raw && raw.signal) init.signal = raw.signal;
  const res = await fetch(path, init);
  if (!res.ok) {
    const error = await res.json().catch(() => ({ error: res.statusText || `HTTP ${res.status}` }));
    // No token, a wrong one, or a read-only token for a change: ask for (another) one.
    if (res.status === 401 || res.status === 403) askToken(error.detail || error.error);
    throw new ApiError(res.status, error);
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}
const get = (path) => call('GET', path);
const post = (path, body) => call('POST', path, body === undefined ? {} : body);
const path = (...parts) => `/v1/${parts.map(encodeURIComponent).join('/')}`;

function askToken(message) {
  byId('token-bar').hidden = false;
  fill(byId('token-message'), message || '');
  byId('token-input').focus();
}

function flash(message, ok) {
  const el = byId('flash');
  el.hidden = !message;
  el.className = ok ? 'ok' : '';
  fill(el, message || '');
}

// ---- routing and refresh --------------------------------------------------------------

/** Runs `work(live)` now and every `ms` while the page is shown; `live()` says whether
 * it still is (check it after each wait, before writing). */
function every(ms, work) {
  let running = false;
  const mine = pageNumber;
  const live = () => mine === pageNumber;
  const tick = async () => {
    if (running || !live()) return;
    running = true;
    try {
      await work(live);
    } catch (e) {
      if (live() && !(e instanceof ApiError && e.status === 401)) flash(e.message);
    }
    running = false;
  };
  tick();
  pageTimers.push(setInterval(tick, ms));
}

const ROUTES = [
  [/^#?\/?$/, pipelinesPage, 'pipelines'],
  [/^#\/pipelines\/([^/]+)$/, pipelinePage, 'pipelines'],
  [/^#\/pipelines\/([^/]+)\/state$/, statePage, 'pipelines'],
  [/^#\/operators$/, operatorsPage, 'operators'],
  [/^#\/topics$/, topicsPage, 'topics'],
  [/^#\/topics\/([^/]+)$/, topicPage, 'topics'],
];

function route() {
  pageTimers.forEach(clearInterval);
  pageAborts.forEach((a) => a.abort());
  pageTimers = [];
  pageAborts = [];
  pageNumber += 1;
  flash('');
  for (const [pattern, page, section] of ROUTES) {
    const m = location.hash.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll('header nav a')) {
      a.classList.toggle('active', a.dataset.nav === section);
    }
    let args;
    try {
      args = m.slice(1).map(decodeURIComponent);
    } catch (e) {
      break; // a malformed address: not found
    }
    page(...args);
    return;
  }
  fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the pipelines')));
}

// ---- throughput from the server's history ----------------------------------------------

const lastStage = (tasks) => tasks.reduce((m, t) => Math.max(m, t.stage), 0);
const total = (tasks, stage, field) =>
  tasks.filter((t) => t.stage === stage).reduce((sum, t) => sum + (t[field] || 0), 0);

/** Events/s in (first stage) and out (last stage) between consecutive samples. */
function rates(history) {
  const out = [];
  const samples = history.samples || [];
  for (let i = 1; i < samples.length; i += 1) {
    const [a, b] = [samples[i - 1], samples[i]];
    const seconds = (b.at_ms - a.at_ms) / 1000;
    if (seconds <= 0) continue;
    const last = lastStage(b.tasks);
    // A task that restarted counts from zero again: no negative rates.
    const delta = (stage, field) => Math.max(0, total(b.tasks, stage, field) - total(a.tasks, stage, field));
    out.push({ at: b.at_ms, in: delta(0, 'events_in') / seconds, out: delta(last, 'events_out') / seconds });
  }
  return out;
}

function sparkline(points) {
  const [w, hgt] = [120, 24];
  const max = Math.max(1, ...points.map((p) => p.in));
  const xy = points.map((p, i) => `${(i / Math.max(1, points.length - 1)) * w},${hgt - (p.in / max) * (hgt - 2) - 1}`);
  return s('svg', { class: 'spark', width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}` },
    s('polyline', { points: xy.join(' ') }));
}

function chart(points) {
  const [w, hgt, left, bottom] = [760, 160, 56, 18];
  const max = Math.max(1, ...points.map((p) => Math.max(p.in, p.out)));
  const first = points.length ? points[0].at : 0;
  const span = points.length > 1 ? points[points.length - 1].at - first : 1;
  const x = (p) => left + ((p.at - first) / span) * (w - left - 4);
  const y = (v) => 14 + (1 - v / max) * (hgt - bottom - 18);
  const line = (field) => points.map((p) => `${x(p)},${y(p[field])}`).join(' ');
  const minutes = span / 60000;
  return s('svg', { class: 'chart', width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}` },
    s('line', { class: 'axis', x1: left, y1: y(0), x2: w, y2: y(0) }),
    s('line', { class: 'axis', x1: left, y1: y(max), x2: w, y2: y(max) }),
    s('text', { x: 2, y: y(max) + 4 }, `${rate(max)}/s`),
    s('text', { x: 2, y: y(0) + 4 }, '0'),
    s('text', { x: left, y: hgt - 2 }, points.length > 1 ? `last ${minutes.toFixed(1)} min` : 'collecting samples…'),
    s('polyline', { class: 'in', points: line('in') }),
    s('polyline', { class: 'out', points: line('out') }));
}

// ---- pipelines ---------------------------------------------------------------------

function pipelinesPage() {
  fill(main, h('h1', {}, 'Pipelines'), h('div', { id: 'pipelines' }, 'Loading…'));
  every(REFRESH_MS, async (live) => {
    const pipelines = await get('/v1/pipelines');
    const histories = await Promise.all(
      pipelines.map((p) => get(`${path('pipelines', p.name)}/history`).catch(() => ({ samples: [] }))));
    if (!live()) return;
    if (!pipelines.length) {
      fill(byId('pipelines'), h('p', { class: 'muted' }, 'No pipelines yet: create one with `eddy pipeline create SPEC.toml`.'));
      return;
    }
    const rows = pipelines.map((p, i) => {
      const points = rates(histories[i]);
      const now = points.length ? points[points.length - 1] : null;
      const watermarks = p.tasks.map((t) => t.watermark).filter((w) => w !== null && w !== undefined);
      return h('tr', { 'data-pipeline': p.name },
        h('td', {}, h('a', { href: `#/pipelines/${encodeURIComponent(p.name)}` }, p.name)),
        h('td', { class: 'state' }, badge(p.state)),
        h('td', { class: 'num events-in' }, num(total(p.tasks, 0, 'events_in'))),
        h('td', { class: 'num' }, now ? rate(now.in) : '–'),
        h('td', { class: 'num' }, now ? rate(now.out) : '–'),
        h('td', {}, sparkline(points.slice(-300))),
        h('td', { class: 'num lag' }, num(p.tasks.reduce((sum, t) => sum + t.lag, 0))),
        h('td', { class: 'mono' }, watermarks.length ? time(Math.min(...watermarks)) : '–'),
        h('td', { class: 'num' }, num(p.tasks.reduce((sum, t) => sum + t.errors, 0))));
    });
    fill(byId('pipelines'), table('pipelines-table',
      [['Name'], ['State'], ['Events in', 'num'], ['In/s', 'num'], ['Out/s', 'num'], ['Last 5 min'], ['Lag', 'num'], ['Watermark'], ['Errors', 'num']],
      rows));
  });
}

function pipelinePage(name) {
  const base = path('pipelines', name);
  const view = { status: null, upgradeStarted: null };
  fill(main,
    h('h1', {}, name, ' ', h('span', { id: 'pipeline-state' })),
    h('p', { id: 'pipeline-reason', class: 'error' }),
    h('div', { class: 'actions' },
      h('button', { id: 'action-stop', onclick: () => act(`${base}/stop`, 'Stopped') }, 'Stop'),
      h('button', { id: 'action-start', onclick: () => act(`${base}/start`, 'Started') }, 'Start'),
      h('button', { id: 'action-savepoint', onclick: () => takeSavepoint(base) }, 'Take savepoint'),
      h('span', { id: 'savepoint-status' }),
      h('a', { href: `#/pipelines/${encodeURIComponent(name)}/state` }, 'Browse state')),
    h('div', { class: 'cards', id: 'cards' }),
    h('div', {}, h('span', { class: 'legend-in' }, '■ events in/s'), '  ', h('span', { class: 'legend-out' }, '■ events out/s')),
    h('div', { id: 'chart' }),
    h('h2', {}, 'Topology'), h('div', { id: 'topology' }),
    h('h2', {}, 'Upgrade an operator'), upgradeForm(base, view),
    h('h2', {}, 'Tasks'), h('div', { id: 'tasks' }),
    h('h2', {}, 'Upgrades'), h('div', { id: 'upgrades' }),
    h('h2', {}, 'Savepoints'), h('div', { id: 'savepoints' }));
  let drawn = '';
  every(REFRESH_MS, async (live) => {
    const [status, history, savepoints] = await Promise.all([
      get(base), get(`${base}/history`), get(`${base}/savepoints`)]);
    if (!live()) return;
    view.status = status;
    fill(byId('pipeline-state'), badge(status.state));
    fill(byId('pipeline-reason'), status.reason || '');
    const running = ['running', 'recovering', 'starting', 'rebalancing'].includes(status.state);
    byId('action-stop').disabled = !running;
    byId('action-start').disabled = running || status.state === 'stopping';
    const points = rates(history);
    const now = points.length ? points[points.length - 1] : null;
    const card = (label, value) => h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
    fill(byId('cards'),
      card('Events in', num(total(status.tasks, 0, 'events_in'))),
      card('In/s', now ? rate(now.in) : '–'),
      card('Out/s', now ? rate(now.out) : '–'),
      card('Lag', num(status.tasks.reduce((sum, t) => sum + t.lag, 0))),
      card('Errors', num(status.tasks.reduce((sum, t) => sum + t.errors, 0))));
    fill(byId('chart'), chart(points));
    const shape = JSON.stringify([status.stages, status.operators, status.spec.outputs]);
    if (shape !== drawn) { fill(byId('topology'), topology(status)); drawn = shape; }
    fill(byId('tasks'), tasksTable(status.tasks));
    fill(byId('upgrades'), upgradesTable(status.upgrades));
    fill(byId('savepoints'), savepointsTable(savepoints, status, base));
    fillOperatorChoice(status);
    showUpgrade(view);
  });
}

async function act(url, done) {
  try {
    await post(url);
    flash(`${done}.`, true);
  } catch (e) {
    flash(e.message);
  }
}

function tasksTable(tasks) {
  const rows = tasks.map((t) => h('tr', {},
    h('td', { class: 'num' }, t.stage), h('td', { class: 'num' }, t.partition),
    h('td', {}, badge(t.state), t.canary ? ` canary ${t.canary}` : '',
      t.state === 'silent' ? ` ${Math.floor(t.report_age_ms / 1000)} s` : ''),
    h('td', {}, t.server || ''),
    h('td', { class: 'num' }, num(t.committed_offset)), h('td', { class: 'num' }, num(t.end_offset)),
    h('td', { class: 'num' }, num(t.lag)), h('td', { class: 'num' }, num(t.events_in)),
    h('td', { class: 'num' }, num(t.events_out)), h('td', { class: 'mono' }, time(t.watermark)),
    h('td', { class: 'num' }, num(t.timers)), h('td', { class: 'num' }, num(t.errors)),
    h('td', { class: 'wrap error' }, t.failure || t.last_error || '')));
  return table('tasks-table', [['Stage', 'num'], ['Partition', 'num'], ['State'], ['Server'], ['Committed', 'num'],
    ['End', 'num'], ['Lag', 'num'], ['In', 'num'], ['Out', 'num'], ['Watermark'], ['Timers', 'num'], ['Errors', 'num'], ['Last error']], rows);
}

function upgradesTable(upgrades) {
  if (!upgrades.length) return h('p', { class: 'muted' }, 'No upgrades yet.');
  const rows = upgrades.slice().reverse().map((u) => h('tr', {},
    h('td', { class: 'mono' }, time(u.started_ms)), h('td', {}, u.operator),
    h('td', {}, `${u.from_version} → ${u.to_version}`), h('td', { class: 'num' }, `${u.pause_ms.toFixed(1)} ms`),
    h('td', {}, badge(u.result)), h('td', { class: 'wrap' }, u.reason || ''), h('td', { class: 'mono' }, u.savepoint)));
  return table('upgrades-table', [['Started'], ['Operator'], ['Versions'], ['Pause', 'num'], ['Result'], ['Reason'], ['Savepoint']], rows);
}

// ---- topology ------------------------------------------------------------------------

/** Inputs → each stage's operators → repartition topics → the sink, left to right. */
function topology(status) {
  const columns = [];
  const names = new Map(status.operators.map((o) => [o.id, `${o.id} @${o.version}`]));
  for (const stage of status.stages) {
    if (stage.index === 0) {
      const inputs = stage.inputs.length ? stage.inputs : [{ name: 'source', topic: stage.source, kind: 'stream' }];
      columns.push(inputs.map((i) => ({ kind: 'topic', label: i.topic, title: `${i.name} (${i.kind}): ${i.topic}` })));
    } else {
      columns.push([{ kind: 'repartition', label: stage.source, title: `repartition topic ${stage.source}`, stage: stage.index }]);
    }
    for (const id of stage.operators) {
      columns.push([{ kind: 'operator', id, label: names.get(id) || id, title: `operator ${id}`, stage: stage.index }]);
    }
  }
  const sink = status.stages.length ? status.stages[status.stages.length - 1].sink : status.sink;
  const outs = [{ kind: 'topic', label: sink, title: `sink ${sink}` }];
  for (const [port, topic] of Object.entries(status.spec.outputs || {})) {
    outs.push({ kind: 'topic', label: topic.topic || topic, title: `side output ${port}`, port });
  }
  columns.push(outs);
  const [bw, bh, gx, gy, top] = [210, 34, 40, 14, 22];
  const rows = Math.max(...columns.map((c) => c.length));
  const width = columns.length * (bw + gx);
  const height = top + rows * (bh + gy) + 8;
  const place = (col, row) => ({ x: 4 + col * (bw + gx), y: top + row * (bh + gy) });
  const parts = [s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
    s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#8c959f' })))];
  columns.forEach((column, c) => {
    if (c + 1 >= columns.length) return;
    column.forEach((_, r) => columns[c + 1].forEach((next, r2) => {
      const a = place(c, r);
      const b = place(c + 1, r2);
      const [x1, y1, x2, y2] = [a.x + bw, a.y + bh / 2, b.x - 2, b.y + bh / 2];
      const mid = (x1 + x2) / 2;
      parts.push(s('path', { class: 'edge', d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'stroke-dasharray': next.port ? '4 3' : null }));
    }));
  });
  const labelled = new Set();
  columns.forEach((column, c) => column.forEach((node, r) => {
    const { x, y } = place(c, r);
    if (node.kind === 'operator' && !labelled.has(node.stage)) {
      labelled.add(node.stage);
      parts.push(s('text', { class: 'stage-label', x, y: y - 6 }, `stage ${node.stage}`));
    }
    parts.push(s('g', { class: `node ${node.kind}`, 'data-name': node.id || node.label },
      s('title', {}, node.title),
      s('rect', { x, y, width: bw, height: bh, rx: 6 }),
      s('text', { x: x + 10, y: y + bh / 2 + 4 }, short(node.port ? `${node.port}: ${node.label}` : node.label, 31))));
  }));
  return s('svg', { class: 'topology', width, height, viewBox: `0 0 ${width} ${height}` }, parts);
}

// ---- upgrades --------------------------------------------------------------------------

function upgradeForm(base, view) {
  const operator = h('select', { id: 'upgrade-operator', onchange: () => loadVersions(view) });
  const version = h('select', { id: 'upgrade-version' });
  const button = h('button', { id: 'upgrade-button', onclick: () => upgrade(base, view) }, 'Upgrade');
  return h('div', { class: 'panel' },
    h('div', { class: 'actions' }, 'Operator ', operator, ' to version ', version, button),
    h('div', { id: 'upgrade-status' }));
}

function fillOperatorChoice(status) {
  const select = byId('upgrade-operator');
  if (!select || select.options.length) return;
  for (const o of status.operators) select.append(h('option', { value: o.id, 'data-name': o.name }, `${o.id} (${o.name}@${o.version})`));
  loadVersions({ status });
}

async function loadVersions(view) {
  const select = byId('upgrade-operator');
  const chosen = select.selectedOptions[0];
  if (!chosen) return;
  const described = await get(path('operators', chosen.dataset.name, 'versions')).catch((e) => { flash(e.message); return { versions: [] }; });
  const current = view.status && view.status.operators.find((o) => o.id === chosen.value);
  const versions = described.versions.slice().reverse();
  // By default the newest version the operator does not run yet.
  const pick = versions.find((v) => !current || v.version !== current.version);
  fill(byId('upgrade-version'), versions.map((v) =>
    h('option', { value: v.version, selected: pick && v.version === pick.version },
      `${v.version}${current && v.version === current.version ? ' (running)' : ''}`)));
}

async function upgrade(base, view) {
  const operator = byId('upgrade-operator').value;
  const version = Number(byId('upgrade-version').value);
  const button = byId('upgrade-button');
  button.disabled = true;
  fill(byId('upgrade-status'), `Upgrading ${operator} to version ${version}: pausing, taking a savepoint, swapping…`);
  try {
    const record = await post(`${base}/upgrade`, { operator, version });
    view.upgradeStarted = record.started_ms;
    showUpgrade(view, record);
  } catch (e) {
    fill(byId('upgrade-status'), h('span', { class: 'error' }, `Upgrade refused: ${e.message}`));
  } finally {
    button.disabled = false;
  }
}

/** The page's own upgrade as the server reports it, until its probation's verdict. */
function showUpgrade(view, given) {
  if (view.upgradeStarted === null) return;
  const record = given || (view.status && view.status.upgrades.find((u) => u.started_ms === view.upgradeStarted));
  if (!record) return;
  const verdict = record.result === 'probation'
    ? `on probation (${view.status && view.status.spec.settings.probation_records} records or ${view.status && view.status.spec.settings.probation_ms} ms)…`
    : record.result.replaceAll('_', ' ');
  fill(byId('upgrade-status'),
    `${record.operator} ${record.from_version} → ${record.to_version}: paused ${record.pause_ms.toFixed(1)} ms, `,
    h('span', { id: 'upgrade-verdict', 'data-result': record.result }, badge(record.result), ' ', verdict),
    record.reason ? ` (${record.reason})` : '');
}

// ---- savepoints ------------------------------------------------------------------------

async function takeSavepoint(base) {
  const button = byId('action-savepoint');
  const started = performance.now();
  button.disabled = true;
  const tick = setInterval(() => fill(byId('savepoint-status'), `Taking a savepoint… ${((performance.now() - started) / 1000).toFixed(1)} s`), 100);
  try {
    const manifest = await post(`${base}/savepoints`);
    fill(byId('savepoint-status'), h('span', { id: 'savepoint-taken', 'data-id': manifest.id },
      `Savepoint ${manifest.id} taken: ${num(manifest.keys)} keys in ${((performance.now() - started) / 1000).toFixed(1)} s`));
  } catch (e) {
    fill(byId('savepoint-status'), h('span', { class: 'error' }, e.message));
  } finally {
    clearInterval(tick);
    button.disabled = false;
  }
}

function savepointsTable(savepoints, status, base) {
  if (!savepoints.length) return h('p', { class: 'muted' }, 'No savepoints yet.');
  const stopped = ['stopped', 'failed', 'created'].includes(status.state);
  const rows = savepoints.slice().reverse().map((m) => h('tr', { 'data-savepoint': m.id },
    h('td', { class: 'mono' }, m.id), h('td', { class: 'mono' }, time(m.created_ms)),
    h('td', {}, m.operators.map((o) => `${o.id}@${o.version}`).join(', ')),
    h('td', { class: 'num' }, num(m.keys)),
    h('td', {}, h('button', { onclick: () => download(m.id) }, 'Download'), ' ',
      h('button', { class: 'restore', disabled: !stopped, title: stopped ? null : 'stop the pipeline to restore it', onclick: () => restore(base, m.id) }, 'Restore'))));
  return table('savepoints-table', [['Id'], ['Taken'], ['Operators'], ['Keys', 'num'], ['']], rows);
}

async function download(id) {
  try {
    const res = await call('GET', `${path('savepoints', id)}/archive`, undefined, {});
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: `${id}.tar.gz` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    flash(e.message);
  }
}

async function restore(base, id) {
  if (!window.confirm(`Replace the pipeline's state and offsets with savepoint ${id}?`)) return;
  try {
    await post(`${base}/restore`, { savepoint: id });
    flash(`Restored from ${id}; start the pipeline to run from there.`, true);
  } catch (e) {
    flash(e.message);
  }
}

// ---- state browser -----------------------------------------------------------------------

function statePage(name) {
  const base = path('pipelines', name);
  let continuation = null;
  const store = () => byId('state-store').value.split('\n');
  const url = (params) => {
    const [operator, storeName] = store();
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== null));
    return `${base}/state/${encodeURIComponent(operator)}/${encodeURIComponent(storeName)}?${query}`;
  };
  const entryRows = (entries) => entries.map((e) => h('tr', {},
    h('td', { class: 'num' }, e.partition),
    h('td', { class: 'wrap mono state-key' }, e.key !== undefined ? e.key : `base64 ${e.key_b64}`),
    h('td', { class: 'wrap mono state-value' }, e.value !== undefined ? e.value : `base64 ${e.value_b64}`),
    h('td', { class: 'num state-number' }, e.number !== undefined ? num(e.number) : '')));
  const headers = [['Partition', 'num'], ['Key'], ['Value'], ['Number', 'num']];
  const lookup = async (event) => {
    event.preventDefault();
    if (!byId('state-key').value) {
      fill(byId('state-result'), h('p', { class: 'error' }, 'Type a key to read.'));
      return;
    }
    try {
      const found = await get(url({ key: byId('state-key').value, partition: byId('state-partition').value }));
      fill(byId('state-result'), table('state-found', headers, entryRows(found.entries)), found.server ? h('p', { class: 'muted' }, `answered by ${found.server}`) : '');
    } catch (e) {
      fill(byId('state-result'), h('p', { class: 'error' }, e.message));
    }
  };
  const scan = async (more) => {
    try {
      const params = { prefix: byId('state-prefix').value, partition: byId('state-partition').value, limit: 50 };
      if (more && continuation) params.continuation = continuation;
      const page = await get(url(params));
      continuation = page.continuation || null;
      const body = more ? byId('state-entries').querySelector('tbody') : null;
      if (body) body.append(...entryRows(page.entries));
      else fill(byId('state-scan-result'), table('state-entries', headers, entryRows(page.entries)));
      byId('state-more').hidden = !continuation;
    } catch (e) {
      fill(byId('state-scan-result'), h('p', { class: 'error' }, e.message));
    }
  };
  fill(main,
    h('h1', {}, 'State of ', h('a', { href: `#/pipelines/${encodeURIComponent(name)}` }, name)),
    h('p', { class: 'muted' }, 'Committed state only: a batch in flight is not seen.'),
    h('div', { class: 'actions' }, 'Store ', h('select', { id: 'state-store' }),
      ' Partition ', h('input', { id: 'state-partition', size: 4, placeholder: 'auto' })),
    h('form', { class: 'actions panel', onsubmit: lookup },
      'Key ', h('input', { id: 'state-key', size: 30 }), h('button', { id: 'state-get', type: 'submit' }, 'Get')),
    h('div', { id: 'state-result' }),
    h('form', { class: 'actions panel', onsubmit: (e) => { e.preventDefault(); scan(false); } },
      'Keys starting with ', h('input', { id: 'state-prefix', size: 30, placeholder: '(all)' }),
      h('button', { id: 'state-scan', type: 'submit' }, 'Scan')),
    h('div', { id: 'state-scan-result' }),
    h('button', { id: 'state-more', hidden: true, onclick: () => scan(true) }, 'More'));
  get(`${base}/state`).then((stores) => {
    if (!stores.length) {
      fill(byId('state-store'), h('option', { value: '' }, '(no stores yet)'));
      byId('state-get').disabled = true;
      byId('state-scan').disabled = true;
    } else fill(byId('state-store'), stores.map((st) => h('option', { value: `${st.operator}\n${st.store}` }, `${st.operator} / ${st.store}`)));
  }).catch((e) => flash(e.message));
}

// ---- operators and topics ----------------------------------------------------------------

function operatorsPage() {
  fill(main, h('h1', {}, 'Operators'), h('div', { id: 'operators' }, 'Loading…'));
  every(5000, async (live) => {
    const [operators, pipelines] = await Promise.all([get('/v1/operators'), get('/v1/pipelines')]);
    if (!live()) return;
    const users = (name, version) => pipelines
      .filter((p) => p.operators.some((o) => o.name === name && o.version === version)).map((p) => p.name);
    const rows = operators.flatMap((o) => o.versions.slice().reverse().map((v) => h('tr', {},
      h('td', {}, o.name), h('td', { class: 'num' }, v.version, v.version === o.latest ? ' (latest)' : ''),
      h('td', { class: 'language' }, v.language || '–'),
      h('td', { class: 'num' }, bytes(v.size)), h('td', { class: 'mono', title: v.digest }, v.digest.slice(0, 12)),
      h('td', { class: 'mono' }, time(v.created_ms)),
      h('td', {}, users(o.name, v.version).map((p, i) => [i ? ', ' : '', h('a', { href: `#/pipelines/${encodeURIComponent(p)}` }, p)])))));
    fill(byId('operators'), operators.length
      ? table('operators-table', [['Name'], ['Version', 'num'], ['Language'], ['Size', 'num'], ['Digest'], ['Uploaded'], ['Used by']], rows)
      : h('p', { class: 'muted' }, 'No operators yet: upload one with `eddy operator push NAME FILE.wasm`.'));
  });
}

function topicsPage() {
  fill(main, h('h1', {}, 'Topics'), h('div', { id: 'topics' }, 'Loading…'));
  every(2000, async (live) => {
    const topics = await get('/v1/topics');
    if (!live()) return;
    const rows = topics.map((t) => {
      const offsets = t.partition_offsets || [];
      return h('tr', {},
        h('td', {}, h('a', { href: `#/topics/${encodeURIComponent(t.name)}` }, t.name)),
        h('td', { class: 'num' }, t.partitions),
        h('td', { class: 'num' }, num(offsets.reduce((sum, p) => sum + p.end_offset - p.start_offset, 0))),
        h('td', { class: 'num' }, bytes(offsets.reduce((sum, p) => sum + p.bytes, 0))),
        h('td', { class: 'num' }, t.retention_ms ? `${(t.retention_ms / 3600000).toFixed(0)} h` : '–'));
    });
    fill(byId('topics'), table('topics-table', [['Name'], ['Partitions', 'num'], ['Records', 'num'], ['Bytes', 'num'], ['Retention', 'num']], rows));
  });
}

function topicPage(name) {
  const base = path('topics', name);
  fill(main, h('h1', {}, 'Topic ', name), h('div', { id: 'partitions' }),
    h('h2', {}, 'Live tail ', h('span', { id: 'tail-state', class: 'muted' })),
    h('div', { class: 'tail' }, table('tail', [['Partition', 'num'], ['Offset', 'num'], ['Time'], ['Key'], ['Value']], [])));
  every(2000, async (live) => {
    const t = await get(base);
    if (!live()) return;
    fill(byId('partitions'), table('partitions-table', [['Partition', 'num'], ['Start', 'num'], ['End', 'num'], ['Bytes', 'num']],
      (t.partition_offsets || []).map((p) => h('tr', {}, h('td', { class: 'num' }, p.partition), h('td', { class: 'num' }, num(p.start_offset)),
        h('td', { class: 'num' }, num(p.end_offset)), h('td', { class: 'num' }, bytes(p.bytes))))));
  });
  tail(`${base}/records?follow=true&from=end`);
}

/** Follows server-sent events with fetch, which (unlike EventSource) can send the token. */
async function tail(url) {
  const abort = new AbortController();
  pageAborts.push(abort);
  const body = byId('tail').querySelector('tbody');
  fill(byId('tail-state'), '(following new records)');
  try {
    const res = await call('GET', url, undefined, { signal: abort.signal });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        if (!data) continue;
        if (event.startsWith('event: error')) { fill(byId('tail-state'), `(stopped: ${data})`); return; }
        const r = JSON.parse(data);
        body.prepend(h('tr', {}, h('td', { class: 'num' }, r.partition), h('td', { class: 'num' }, r.offset),
          h('td', { class: 'mono' }, time(r.timestamp)), h('td', { class: 'wrap mono' }, r.key ?? (r.key_b64 === undefined ? '' : `base64 ${r.key_b64}`)), h('td', { class: 'wrap mono' }, r.value ?? r.value_b64 ?? '')));
        while (body.rows.length > 200) body.lastChild.remove();
      }
    }
    fill(byId('tail-state'), '(the server ended the stream)');
  } catch (e) {
    if (e.name !== 'AbortError') fill(byId('tail-state'), `(stopped: ${e.message})`);
  }
}

// ---- start ---------------------------------------------------------------------------

byId('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, byId('token-input').value);
  byId('token-input').value = '';
  byId('token-bar').hidden = true;
  route();
});
window.addEventListener('hashchange', route);
get('/v1/server').then((server) => fill(byId('server'),
  `${server.name ? `${server.name} · ` : ''}${server.workers} workers · memory budget ${bytes(server.memory.budget_bytes)}`)).catch(() => {});
route();
