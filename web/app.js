// web/app.js — kusari's web UI (docs/UI.md): one page, routed by the URL's
// hash, that reads everything from the server's /api/v1 with the token the
// user signed in with (kept in sessionStorage, sent as a Bearer header).
// Whatever comes from the store (names, tags, arguments, errors, logs) is
// put in the page as text (textContent), never as markup.
'use strict';

const TOKEN_KEY = 'kusari.token';
const PAGE_SIZE = 25;
const SERIES_POINTS = 1000;
let page = { alive: false, charts: [] };  // the current page's live loops and charts

// ---- helpers -------------------------------------------------------------------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
const main = () => document.getElementById('main');
function show(...nodes) { main().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined)); }
function fmtNum(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;  // "NaN", "Infinity"
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(4) : String(+v.toPrecision(6));
}
function fmtDuration(s) {
  if (s === null || s === undefined) return '';
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.round((s % 3600) / 60) + ' min';
}
function statusBadge(s) { return el('span', { class: 'status ' + s, 'data-status': s }, s); }
function runLink(id) { return el('a', { href: '#/run/' + encodeURIComponent(id) }, id); }
function enc(s) { return encodeURIComponent(s); }
function encPath(p) { return p.split('/').map(encodeURIComponent).join('/'); }
function ended(status) { return ['Completed', 'Failed', 'Canceled'].includes(status); }
function errorBox(msg) { return el('div', { class: 'error', role: 'alert' }, msg); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// ---- the API ----------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

async function request(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers['Authorization'] = 'Bearer ' + token();
  let resp;
  try {
    resp = await fetch('/api/v1/' + path, { method: opts.method || 'GET', headers, body: opts.body, signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', 'Cannot reach the kusari server at ' + location.origin +
      '. Is `kusari server` still running? (' + e.message + ')');
  }
  if (!resp.ok) {
    let code = 'http_' + resp.status, msg = resp.status + ' ' + resp.statusText;
    try { const j = await resp.json(); if (j && j.error) { code = j.error.code; msg = j.error.message; } } catch (_) { /* not JSON */ }
    throw new ApiError(resp.status, code, msg);
  }
  return resp;
}
async function api(path, opts) { return (await request(path, opts)).json(); }

// a failure of a page's request: a refused token goes back to the login page
function failed(e) {
  if (e && e.name === 'AbortError') return;
  if (e instanceof ApiError && e.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.setItem('kusari.login_message', 'The server refused the token: ' + e.message);
    location.hash = '#/login';
    return;
  }
  if (e instanceof ApiError && e.status === 0) {
    banner(e.message);
    show(el('p', { class: 'muted' }, 'Nothing to show without the server. Reload the page once it is back.'));
    return;
  }
  show(errorBox(e && e.message ? e.message : String(e)));
}
function banner(msg) {
  const b = document.getElementById('banner');
  b.textContent = msg || '';
  b.hidden = !msg;
}

// ---- routing ------------------------------------------------------------------------
function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const q = h.indexOf('?');
  const path = (q >= 0 ? h.slice(0, q) : h).split('/').map(decodeURIComponent);
  const params = new URLSearchParams(q >= 0 ? h.slice(q + 1) : '');
  return { path, params };
}
function setHash(path, params) {
  const qs = params ? params.toString() : '';
  location.hash = '#/' + path + (qs ? '?' + qs : '');
}

async function route() {
  page.alive = false;
  if (page.abort) page.abort.abort();
  for (const c of page.charts) c.destroy();
  page = { alive: true, charts: [], abort: new AbortController() };
  banner('');
  const { path, params } = parseHash();
  document.getElementById('logout').hidden = !token();
  if (path[0] === 'login') return loginPage();
  if (!token()) { location.hash = '#/login'; return; }
  try {
    switch (path[0]) {
      case '': case 'experiments': return await experimentsPage();
      case 'runs': return await runsPage(params);
      case 'run': return await runPage(path[1]);
      case 'compare': return await comparePage(params);
      case 'sweep': return await sweepPage(path[1]);
      case 'models': return await modelsPage();
      case 'services': return servicesPage();
      default: show(errorBox('No such page: ' + location.hash));
    }
  } catch (e) { failed(e); }
}

// ---- login ---------------------------------------------------------------------------
function loginPage() {
  const msg = sessionStorage.getItem('kusari.login_message');
  sessionStorage.removeItem('kusari.login_message');
  const input = el('input', { type: 'password', id: 'token', autocomplete: 'off', placeholder: 'kst_…' });
  const out = el('div', { id: 'login-message' });
  if (msg) out.appendChild(errorBox(msg));
  const form = el('form', { class: 'login', id: 'login-form' },
    el('h1', {}, 'Sign in to kusari'),
    el('p', { class: 'muted' }, 'Paste an API token (made with `kusari server token create NAME`). It is kept for this browser tab only.'),
    el('label', { for: 'token' }, 'Token'), input,
    el('button', { class: 'primary', type: 'submit', id: 'signin' }, 'Sign in'), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    const t = input.value.trim();
    if (!t) { out.appendChild(errorBox('Enter a token.')); return; }
    sessionStorage.setItem(TOKEN_KEY, t);
    try {
      await api('health');
      location.hash = '#/';
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      out.appendChild(errorBox(e.status === 401 ? 'The server refused this token: ' + e.message : e.message));
    }
  });
  show(form);
  input.focus();
}

// ---- experiments ------------------------------------------------------------------------
async function experimentsPage() {
  const j = await api('experiments', { signal: page.abort.signal });
  const rows = j.experiments.map((x) => el('tr', { 'data-experiment': x.name },
    el('td', {}, el('a', { href: '#/runs?experiment=' + enc(x.name) }, x.name)),
    el('td', { class: 'num' }, x.runs), el('td', { class: 'num' }, x.active), el('td', { class: 'num' }, x.completed),
    el('td', { class: 'num' }, x.failed), el('td', { class: 'num' }, x.canceled), el('td', {}, x.last_run || '')));
  show(el('h1', {}, 'Experiments'),
    rows.length ? el('table', { id: 'experiments' },
      el('thead', {}, el('tr', {}, ['experiment', 'runs', 'active', 'completed', 'failed', 'canceled', 'last activity'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows))
      : el('p', { class: 'muted' }, 'No experiments yet: submit a run with `kusari run submit`.'));
}

// ---- runs table ------------------------------------------------------------------------
const SORT_KEYS = { id: 'id', status: 'status', started: 'started', duration: 'duration' };

async function runsPage(params) {
  const exp = params.get('experiment') || '';
  const cols = (params.get('cols') || '').split(',').filter(Boolean);
  const pcols = (params.get('pcols') || '').split(',').filter(Boolean);  // param columns
  const order = params.get('order') || '';
  const filter = params.get('filter') || '';
  // pages: the server's opaque next_page_token (page) and, for the numbers
  // shown, the index of the page's first run (start); going back is the
  // browser's history (a token only leads forward)
  const pageToken = params.get('page') || '';
  const offset = parseInt(params.get('start') || '0', 10) || 0;
  const parent = params.get('parent') || '';
  const go = (changes) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) { if (v === '' || v === null) p.delete(k); else p.set(k, v); }
    setHash('runs', p);
  };
  const detail = exp ? await api('experiments/' + enc(exp), { signal: page.abort.signal }) : null;
  const q = new URLSearchParams();
  if (exp) q.set('experiment', exp);
  if (parent) q.set('parent', parent);
  const size = Math.min(Math.max(parseInt(params.get('size') || PAGE_SIZE, 10) || PAGE_SIZE, 1), 1000);
  q.set('max_results', size);
  if (pageToken) q.set('page_token', pageToken);
  if (cols.length) q.set('metrics', cols.join(','));
  if (order) q.set('order_by', order);
  if (filter) q.set('filter', filter);
  let list = null, listError = null;
  try { list = await api('runs?' + q.toString(), { signal: page.abort.signal }); } catch (e) {
    if (e.status === 400) listError = e; else throw e;
  }
  // metric columns to choose from
  const chips = el('div', { class: 'controls', id: 'metric-chips' }, el('span', { class: 'muted' }, 'Metric columns:'),
    (detail ? detail.metrics : []).map((m) => el('span', {
      class: 'chip' + (cols.includes(m.name) ? ' on' : ''), 'data-metric': m.name,
      onclick: () => go({ cols: (cols.includes(m.name) ? cols.filter((c) => c !== m.name) : cols.concat([m.name])).join(','), page: '', start: '' }),
    }, m.name)));
  // param columns to choose from: the params of the runs listed (the run list
  // gives each run's params) and those already chosen
  const paramNames = [...new Set((list ? list.runs : []).flatMap((r) => Object.keys(r.params || {})).concat(pcols))].sort();
  const pchips = el('div', { class: 'controls', id: 'param-chips' }, el('span', { class: 'muted' }, 'Param columns:'),
    paramNames.length ? paramNames.map((k) => el('span', {
      class: 'chip' + (pcols.includes(k) ? ' on' : ''), 'data-param': k,
      onclick: () => go({ pcols: (pcols.includes(k) ? pcols.filter((c) => c !== k) : pcols.concat([k])).join(','), page: '', start: '' }),
    }, k)) : el('span', { class: 'muted' }, 'none on this page'));
  const filterInput = el('input', { type: 'text', class: 'wide', id: 'filter', value: filter,
    placeholder: "metrics.loss < 0.5 and status = 'Completed'" });
  const filterForm = el('form', { class: 'controls', id: 'filter-form' }, el('label', { for: 'filter' }, 'Filter'), filterInput,
    el('button', { type: 'submit' }, 'Apply'), filter ? el('button', { type: 'button', onclick: () => go({ filter: '', page: '', start: '' }) }, 'Clear') : null);
  filterForm.addEventListener('submit', (ev) => { ev.preventDefault(); go({ filter: filterInput.value.trim(), page: '', start: '' }); });
  const selected = new Set();
  const compareBtn = el('button', { type: 'button', id: 'compare', disabled: true, onclick: () => {
    const p = new URLSearchParams({ runs: [...selected].join(',') });
    if (cols[0]) p.set('metric', cols[0]);
    setHash('compare', p);
  } }, 'Compare selected');
  const head = [];
  const sortable = (label, key) => {
    const [cur, dir] = order.split(' ');
    const mark = cur === key ? (dir === 'asc' ? ' ▲' : ' ▼') : '';
    return el('th', { class: 'sortable', 'data-sort': key, onclick: () => go({ order: key + (cur === key && dir !== 'asc' ? ' asc' : ' desc'), page: '', start: '' }) }, label + mark);
  };
  head.push(el('th', {}, ''), sortable('run', SORT_KEYS.id), sortable('status', SORT_KEYS.status), sortable('started', SORT_KEYS.started),
    sortable('duration', SORT_KEYS.duration), el('th', {}, 'arguments'), el('th', {}, 'tags'));
  for (const k of pcols) head.push(sortable(k, 'params.' + k));
  for (const c of cols) head.push(sortable(c, 'metrics.' + c));
  const body = (list ? list.runs : []).map((r) => {
    const cb = el('input', { type: 'checkbox', 'data-run': r.id, onchange: () => {
      if (cb.checked) selected.add(r.id); else selected.delete(r.id);
      compareBtn.disabled = selected.size < 2;
    } });
    const tags = Object.entries(r.tags || {}).map(([k, v]) => k + '=' + v).join(' ');
    return el('tr', { 'data-run': r.id },
      el('td', {}, cb), el('td', {}, runLink(r.id)), el('td', {}, statusBadge(r.status)), el('td', {}, r.started || ''),
      el('td', { class: 'num' }, fmtDuration(r.duration_s)), el('td', { class: 'kv' }, (r.arguments || []).join(' ')),
      el('td', { class: 'kv' }, tags),
      pcols.map((k) => el('td', { class: 'kv', 'data-param': k }, r.params && k in r.params ? String(r.params[k]) : '')),
      cols.map((c) => el('td', { class: 'num', 'data-metric': c }, fmtNum(r.metrics ? r.metrics[c] : null))));
  });
  const pager = el('div', { class: 'controls' },
    el('button', { type: 'button', id: 'prev', disabled: !pageToken, onclick: () => history.back() }, '← Previous'),
    el('span', { class: 'muted' }, list ? `runs ${list.runs.length ? offset + 1 : 0}–${offset + list.runs.length}` : ''),
    el('button', { type: 'button', id: 'next', disabled: !(list && list.next_page_token), onclick: () => go({ page: list.next_page_token, start: offset + list.runs.length }) }, 'Next →'),
    compareBtn);
  show(el('h1', {}, parent ? 'Children of run ' + parent : 'Runs of ' + exp),
    detail ? el('p', { class: 'muted' }, `${detail.runs} runs, ${detail.sweeps} sweeps; last activity ${detail.last_activity || '—'}`) : null,
    chips, pchips, filterForm, listError ? errorBox('The server refused the filter: ' + listError.message) : null,
    el('table', { id: 'runs', 'data-order': order, 'data-page': offset }, el('thead', {}, el('tr', {}, head)), el('tbody', {}, body)), pager);
}

// ---- charts ----------------------------------------------------------------------------
function smooth(ys, w) {
  if (!w) return ys;
  const out = [];
  let acc = 0, n = 0;
  for (const y of ys) {
    if (!Number.isFinite(y)) { out.push(y); continue; }
    acc = acc * w + (1 - w) * y;
    n++;
    out.push(acc / (1 - Math.pow(w, n)));  // debiased, as an exponential moving average starting at 0
  }
  return out;
}
const COLORS = ['#2f6fd6', '#d6452f', '#1f8a4c', '#b7791f', '#7b3fbf', '#0f8c8c', '#c2185b', '#5d6d7e'];

// one chart of one or more series: {label, points}; opts: {x: 'step'|'time', log, smoothing}
function drawChart(canvas, series, opts) {
  if (typeof Chart === 'undefined') return null;
  const datasets = series.map((s, i) => {
    const pts = s.points.filter((p) => typeof p.value === 'number');
    const t0 = pts.length ? pts[0].timestamp : 0;
    const xs = pts.map((p) => (opts.x === 'time' ? p.timestamp - t0 : p.step));
    const ys = smooth(pts.map((p) => p.value), opts.smoothing);
    return { label: s.label, data: xs.map((x, k) => ({ x, y: ys[k] })), borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length], borderWidth: 1.5, pointRadius: pts.length > 60 ? 0 : 2, tension: 0 };
  });
  const config = {
    type: 'line', data: { datasets },
    options: { animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
      plugins: { legend: { display: series.length > 1 } },
      scales: { x: { type: 'linear', min: opts.x === 'step' && opts.from !== null ? opts.from : undefined,
        max: opts.x === 'step' && opts.to !== null ? opts.to : undefined, title: { display: true, text: opts.x === 'time' ? 'seconds since the first point' : 'step' } },
        y: { type: opts.log ? 'logarithmic' : 'linear' } } },
  };
  const c = new Chart(canvas, config);
  page.charts.push(c);
  return c;
}

// a card with a metric's chart and its controls; refresh() fetches the series again
function metricCard(runIds, name, labels) {
  const canvas = el('canvas', {});
  // from/to: the step window shown (a zoom), null for the whole series
  const state = { x: 'step', log: false, smoothing: 0, from: null, to: null };
  const info = el('span', { class: 'muted' });
  const card = el('div', { class: 'card', 'data-chart': name, 'data-points': '0' });
  let chart = null, series = [];
  const redraw = () => {
    if (chart) { chart.destroy(); page.charts = page.charts.filter((c) => c !== chart); }
    chart = drawChart(canvas, series, state);
    const n = series.reduce((a, s) => a + s.points.length, 0);
    card.setAttribute('data-points', String(n));
    card.setAttribute('data-total', String(series.reduce((a, s) => a + (s.total || 0), 0)));
    card.setAttribute('data-downsampled', String(series.some((s) => s.downsampled)));
    card.setAttribute('data-from', state.from === null ? '' : String(state.from));
    card.setAttribute('data-to', state.to === null ? '' : String(state.to));
    info.textContent = (state.from === null ? '' : `steps ${state.from}–${state.to}: `) +
      series.map((s) => `${s.points.length} of ${s.total} points` + (s.downsampled ? ' (downsampled, min/max kept)' : '')).join('; ');
    if (!chart) info.textContent += ' — Chart.js is not available (apt-get install libjs-chart.js, or --chartjs FILE)';
  };
  const refresh = async () => {
    series = await Promise.all(runIds.map(async (id, i) => {
      try {
        // a zoomed chart asks for its step window only: at full resolution once it holds SERIES_POINTS or fewer
        const win = state.from === null ? '' : `&from_step=${state.from}&to_step=${state.to}`;
        const j = await api(`runs/${enc(id)}/metrics/${encPath(name)}?max_points=${SERIES_POINTS}${win}`, { signal: page.abort.signal });
        return { label: labels[i], points: j.points, total: j.total_points, downsampled: j.downsampled };
      } catch (e) {
        if (e.status === 404) return { label: labels[i], points: [], total: 0, downsampled: false };
        throw e;
      }
    }));
    if (page.alive) redraw();
  };
  const xSel = el('select', { onchange: () => { state.x = xSel.value; redraw(); } },
    el('option', { value: 'step' }, 'x: step'), el('option', { value: 'time' }, 'x: wall time'));
  const logBox = el('input', { type: 'checkbox', onchange: () => { state.log = logBox.checked; redraw(); } });
  const sm = el('input', { type: 'range', min: '0', max: '0.99', step: '0.01', value: '0', oninput: () => { state.smoothing = +sm.value; redraw(); } });
  // zoom: the buttons halve or double the step window around its middle, a
  // drag across the chart (x: step) picks one; each fetches that window again
  const shown = () => {
    if (state.from !== null) return [state.from, state.to];
    const steps = series.flatMap((s) => (s.points.length ? [s.points[0].step, s.points[s.points.length - 1].step] : []));
    return steps.length ? [Math.min(...steps), Math.max(...steps)] : null;
  };
  const zoomTo = (from, to) => {
    const all = series.flatMap((s) => (s.points.length ? [s.points[0].step, s.points[s.points.length - 1].step] : []));
    if (from === null || (state.from === null && all.length && from <= Math.min(...all) && to >= Math.max(...all))) { state.from = state.to = null; }
    else { state.from = Math.max(0, Math.floor(from)); state.to = Math.max(state.from + 1, Math.ceil(to)); }
    return refresh();
  };
  const zoom = (f) => {
    const r = shown();
    if (!r) return;
    const mid = (r[0] + r[1]) / 2, half = Math.max(1, ((r[1] - r[0]) * f) / 2);
    zoomTo(mid - half, mid + half);
  };
  let dragX = null;
  canvas.addEventListener('mousedown', (e) => { dragX = e.offsetX; });
  canvas.addEventListener('mouseup', (e) => {
    const x0 = dragX;
    dragX = null;
    if (x0 === null || !chart || state.x !== 'step' || Math.abs(e.offsetX - x0) < 8) return;
    const a = chart.scales.x.getValueForPixel(Math.min(x0, e.offsetX)), b = chart.scales.x.getValueForPixel(Math.max(x0, e.offsetX));
    zoomTo(a, b);
  });
  const zoomBtns = el('span', { class: 'zoom' },
    el('button', { type: 'button', class: 'zoom-in', title: 'zoom in (or drag across the chart)', onclick: () => zoom(0.5) }, '+'),
    el('button', { type: 'button', class: 'zoom-out', title: 'zoom out', onclick: () => zoom(2) }, '-'),
    el('button', { type: 'button', class: 'zoom-reset', title: 'the whole series', onclick: () => zoomTo(null, null) }, 'all'));
  card.append(el('h3', {}, name), el('div', { class: 'controls' }, xSel, el('label', {}, logBox, ' log scale'), el('label', {}, 'smoothing ', sm), zoomBtns, info),
    el('div', { style: null }, canvas));
  return { card, refresh };
}

// ---- run page ------------------------------------------------------------------------------
// the run's lifecycle with the time it entered each status (— when it has
// not, or skipped it: a run canceled while queued never ran)
function timeline(run) {
  const steps = [['Queued', run.created], ['Preparing', run.prepared], ['Running', run.started], ['Finalizing', run.finalizing],
    [ended(run.status) ? run.status : 'end', run.ended]];
  return el('div', { class: 'timeline', id: 'timeline' }, steps.map(([s, t]) =>
    el('div', { class: 'step' + (t ? ' done' : ''), 'data-step': s }, s, el('span', { class: 't' }, t || '—'))));
}

async function download(path, name) {
  try {
    const resp = await request(path);
    const url = URL.createObjectURL(await resp.blob());
    const a = el('a', { href: url, download: name.split('/').pop() });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { banner('Download failed: ' + e.message); }
}

function kvTable(id, obj) {
  const rows = Object.entries(obj || {});
  if (!rows.length) return el('p', { class: 'muted' }, 'none');
  return el('table', { id }, el('tbody', {}, rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', { class: 'kv' }, v)))));
}

async function runPage(id) {
  const sig = { signal: page.abort.signal };
  let run = await api('runs/' + enc(id), sig);
  const header = el('div', {});
  const renderHeader = () => {
    header.replaceChildren(...[
      el('h1', {}, 'Run ', el('span', { id: 'run-id' }, run.id), ' ', statusBadge(run.status)),
      el('p', { class: 'muted' }, 'experiment ', el('a', { href: '#/runs?experiment=' + enc(run.experiment) }, run.experiment),
        ` · compute ${run.compute} · entry ${run.entry} · duration ${fmtDuration(run.duration_s)}`,
        run.exit_code !== null ? ` · exit code ${run.exit_code}` : '',
        run.parent ? [' · child of ', el('a', { href: '#/sweep/' + enc(run.parent) }, run.parent)] : ''),
      timeline(run),
      run.error ? el('div', { class: 'error', id: 'run-error' }, run.error) : null].filter(Boolean));
  };
  renderHeader();
  const cards = el('div', { class: 'grid', id: 'charts' });
  const logPre = el('pre', { class: 'log', id: 'log' });
  const files = el('div', {});
  const models = el('div', {});
  show(header, el('h2', {}, 'Arguments'), el('p', { class: 'kv', id: 'arguments' }, (run.arguments || []).join(' ') || '(none)'),
    el('h2', {}, 'Params'), kvTable('params', run.params),
    el('h2', {}, 'Tags'), kvTable('tags', run.tags),
    el('h2', {}, 'Metrics'), cards, el('h2', {}, 'Log'), logPre, el('h2', {}, 'Files'), files, el('h2', {}, 'Models registered from this run'), models);
  const charts = new Map();
  const refreshMetrics = async () => {
    const latest = await api(`runs/${enc(id)}/metrics`, sig);
    const names = (latest.metrics || []).map((m) => m.name);
    for (const n of names) {
      if (!charts.has(n)) { const mc = metricCard([id], n, [id]); charts.set(n, mc); cards.appendChild(mc.card); }
    }
    await Promise.all([...charts.values()].map((mc) => mc.refresh()));
    if (!charts.size) cards.replaceChildren(el('p', { class: 'muted' }, 'No metrics logged (yet).'));
  };
  const refreshFiles = async () => {
    const j = await api(`runs/${enc(id)}/files`, sig);
    const list = j.files || j;
    files.replaceChildren(list.length ? el('table', { id: 'files' }, el('thead', {}, el('tr', {}, el('th', {}, 'path'), el('th', {}, 'size'), el('th', {}, ''))),
      el('tbody', {}, list.map((f) => el('tr', {}, el('td', { class: 'kv' }, f.path), el('td', { class: 'num' }, f.size),
        el('td', {}, el('button', { type: 'button', onclick: () => download(`runs/${enc(id)}/files/${encPath(f.path)}`, f.path) }, 'Download'))))))
      : el('p', { class: 'muted' }, 'none'));
  };
  const refreshModels = async () => {
    const j = await api('models', sig);
    const mine = (j.models || j).filter((m) => m.run === id);
    models.replaceChildren(mine.length ? el('ul', {}, mine.map((m) => el('li', {}, el('a', { href: '#/models' }, `${m.name} v${m.version}`), ' ', m.path)))
      : el('p', { class: 'muted' }, 'none'));
  };
  await Promise.all([refreshMetrics(), refreshFiles(), refreshModels()]);
  // the log's tail now, from offset 0 (the server gives at most its tail)
  let logNext = 0;
  const appendLog = (text) => {
    if (!text) return;
    logPre.textContent = (logPre.textContent + text).slice(-200000);
    logPre.scrollTop = logPre.scrollHeight;
  };
  const readLog = async () => {
    try {
      const resp = await request(`runs/${enc(id)}/logs?offset=${logNext}`, sig);
      const text = await resp.text();
      logNext = parseInt(resp.headers.get('X-Kusari-Next-Offset') || String(logNext + text.length), 10);
      appendLog(text);
    } catch (e) {
      if (e.status === 404) { if (!logPre.textContent) logPre.textContent = '(no log yet)'; return; }
      throw e;
    }
  };
  const afterEnd = async () => {
    run = await api('runs/' + enc(id), sig);
    renderHeader();
    await Promise.all([refreshMetrics(), refreshFiles(), refreshModels(), readLog()]);
  };
  if (ended(run.status)) { await readLog(); return; }
  // live while the run is active: ONE server-sent event stream (GET
  // /runs/{id}/events, read with fetch since EventSource cannot send the
  // token): log lines appended as they come, status changes redraw the
  // header, new metric points refetch the series at most every 2 s
  (async () => {
    let resp;
    try { resp = await request(`runs/${enc(id)}/events?from=now`, sig); } catch (e) { failed(e); return; }
    await readLog();  // after the stream opened: lines before it come from here, later ones from the stream
    let dirty = false, busy = false;
    const tick = setInterval(async () => {
      if (!page.alive) { clearInterval(tick); return; }
      if (!dirty || busy) return;
      dirty = false;
      busy = true;
      try { await refreshMetrics(); } catch (e) { failed(e); } finally { busy = false; }
    }, 2000);
    const onEvent = async (type, data) => {
      let d;
      try { d = JSON.parse(data); } catch (_) { return; }
      if (type === 'metric') dirty = true;
      else if (type === 'log') {
        if (d.offset < logNext) return;  // already read
        appendLog(d.line.endsWith('\n') ? d.line : d.line + '\n');
        logNext = d.offset + new TextEncoder().encode(d.line).length + (d.line.endsWith('\n') ? 0 : 1);
      } else if (type === 'status' && d.status !== run.status) {
        run = await api('runs/' + enc(id), sig);
        renderHeader();
      } else if (type === 'error') banner('The run\'s event stream stopped: ' + d.message);
    };
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !page.alive) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) type = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (data) await onEvent(type, data);
        }
      }
    } catch (e) { if (e.name !== 'AbortError') failed(e); return; } finally { clearInterval(tick); }
    if (page.alive) await afterEnd();
  })();
}

// ---- compare -----------------------------------------------------------------------------------
async function comparePage(params) {
  const ids = (params.get('runs') || '').split(',').filter(Boolean);
  if (ids.length < 1) { show(errorBox('Choose runs to compare in a runs table.')); return; }
  const sig = { signal: page.abort.signal };
  const runs = await Promise.all(ids.map((id) => api('runs/' + enc(id), sig)));
  const metricNames = [...new Set(runs.flatMap((r) => Object.keys(r.metrics || {})))].sort();
  const metric = params.get('metric') && metricNames.includes(params.get('metric')) ? params.get('metric') : metricNames[0];
  const sel = el('select', { id: 'compare-metric', onchange: () => { const p = new URLSearchParams(params); p.set('metric', sel.value); setHash('compare', p); } },
    metricNames.map((n) => el('option', { value: n, selected: n === metric }, n)));
  // the table: rows of fields, a column per run; differing cells marked
  const rows = [['status', (r) => r.status], ['started', (r) => r.started || ''], ['duration', (r) => fmtDuration(r.duration_s)],
    ['arguments', (r) => (r.arguments || []).join(' ')]];
  const tagKeys = [...new Set(runs.flatMap((r) => Object.keys(r.tags || {})))].sort();
  for (const k of tagKeys) rows.push(['tag ' + k, (r) => (r.tags && k in r.tags ? r.tags[k] : '')]);
  for (const m of metricNames) rows.push(['final ' + m, (r) => fmtNum(r.metrics ? r.metrics[m] : null)]);
  const table = el('table', { id: 'compare-table' },
    el('thead', {}, el('tr', {}, el('th', {}, ''), runs.map((r) => el('th', {}, runLink(r.id))))),
    el('tbody', {}, rows.map(([label, f]) => {
      const vals = runs.map(f);
      const differ = new Set(vals.map(String)).size > 1;
      return el('tr', { 'data-row': label }, el('th', {}, label), vals.map((v) => el('td', { class: differ ? 'diff' : '' }, v)));
    })));
  const grid = el('div', { class: 'grid' });
  show(el('h1', {}, `Compare ${runs.length} runs`), el('div', { class: 'controls' }, el('label', {}, 'Metric '), sel), grid,
    el('h2', {}, 'Arguments, tags and final metrics'), el('p', { class: 'muted' }, 'Cells that differ between runs are marked.'), table);
  if (metric) {
    const mc = metricCard(ids, metric, ids);
    grid.appendChild(mc.card);
    await mc.refresh();
  }
}

// ---- sweep ---------------------------------------------------------------------------------------
// parallel coordinates: one vertical axis per parameter and one for the
// primary metric, one line per child (colored by its metric: best dark)
function parallelCoords(children, metric, goal) {
  const names = [...new Set(children.flatMap((c) => Object.keys(c.parameters || {})))].sort();
  const rows = children.filter((c) => c.parameters);
  const canvas = el('canvas', { id: 'parallel', width: '900', height: '320', 'data-axes': String(names.length + 1), 'data-lines': '0' });
  if (!names.length || !rows.length) return canvas;
  const axes = names.map((n) => {
    const vals = rows.map((c) => (c.parameters || {})[n]);
    const nums = vals.map(Number);
    const numeric = nums.every((v, i) => vals[i] !== undefined && Number.isFinite(v));
    const cats = numeric ? [] : [...new Set(vals.map(String))].sort();
    const lo = numeric ? Math.min(...nums) : 0, hi = numeric ? Math.max(...nums) : Math.max(cats.length - 1, 1);
    return { name: n, pos: (c) => { const v = (c.parameters || {})[n]; const x = numeric ? Number(v) : cats.indexOf(String(v)); return hi > lo ? (x - lo) / (hi - lo) : 0.5; },
      ticks: numeric ? [String(lo), String(hi)] : cats };
  });
  const ms = rows.map((c) => c.best).filter((v) => typeof v === 'number');
  const mlo = ms.length ? Math.min(...ms) : 0, mhi = ms.length ? Math.max(...ms) : 1;
  axes.push({ name: metric + ' (best)', pos: (c) => (typeof c.best === 'number' ? (mhi > mlo ? (c.best - mlo) / (mhi - mlo) : 0.5) : null), ticks: [fmtNum(mlo), fmtNum(mhi)] });
  const ctx = canvas.getContext('2d');
  const W = 900, H = 320, top = 30, bottom = 40, left = 60, right = 60;
  const x = (i) => left + (axes.length > 1 ? (i * (W - left - right)) / (axes.length - 1) : 0);
  const y = (p) => H - bottom - p * (H - top - bottom);
  ctx.font = '12px sans-serif';
  ctx.fillStyle = '#333';
  axes.forEach((a, i) => {
    ctx.strokeStyle = '#999';
    ctx.beginPath(); ctx.moveTo(x(i), y(0)); ctx.lineTo(x(i), y(1)); ctx.stroke();
    ctx.textAlign = 'center';
    ctx.fillText(a.name, x(i), top - 12);
    ctx.fillText(a.ticks[0] || '', x(i), H - bottom + 16);
    ctx.fillText(a.ticks[a.ticks.length - 1] || '', x(i), top + 2);
  });
  let lines = 0;
  for (const c of rows) {
    const m = axes[axes.length - 1].pos(c);
    const good = m === null ? 0 : goal === 'minimize' ? 1 - m : m;
    ctx.strokeStyle = m === null ? 'rgba(150,150,150,0.6)' : `hsl(${210 - 190 * good}, 70%, 45%)`;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    axes.forEach((a, i) => { const p = a.pos(c); const yy = y(p === null ? 0 : p); if (i) ctx.lineTo(x(i), yy); else ctx.moveTo(x(i), yy); });
    ctx.stroke();
    lines++;
  }
  canvas.setAttribute('data-lines', String(lines));
  return canvas;
}

function sweepSettings(sw) {
  const space = Object.entries(sw.search_space || {}).map(([name, expr]) => el('tr', {}, el('th', {}, name), el('td', { class: 'kv' }, JSON.stringify(expr))));
  const pol = Object.entries(sw.policy_settings || {}).map(([k, v]) => `${k} ${v}`).join(', ');
  return [el('h2', {}, 'Search space and policy'),
    el('table', { id: 'sweep-space' }, el('tbody', {}, space)),
    el('p', { id: 'sweep-policy' }, `sampling ${sw.sampling}` + (sw.seed !== undefined && sw.seed !== null ? ` (seed ${sw.seed})` : '') +
      ` · primary metric ${sw.primary_metric} (${sw.goal}) · policy ${sw.policy}` + (pol ? ` (${pol})` : '') +
      ` · at most ${sw.max_total_runs} runs, ${sw.max_concurrent_runs} at once` + (sw.stop_reason ? ` · stopped: ${sw.stop_reason}` : ''))];
}

async function sweepPage(id) {
  const sig = { signal: page.abort.signal };
  const run = await api('runs/' + enc(id), sig);
  const sw = await api('sweeps/' + enc(id), sig);
  const kids = await api(`runs?parent=${enc(id)}&max_results=1000&order_by=created asc`, sig);
  const best = run.tags ? run.tags.best_child_run_id : null;
  const grid = el('div', { class: 'grid', id: 'sweep-chart' });
  const rows = kids.runs.map((r) => el('tr', { 'data-run': r.id, class: r.id === best ? 'best' : '' },
    el('td', { class: 'num' }, r.tags && r.tags.sweep_index !== undefined ? r.tags.sweep_index : ''),
    el('td', {}, runLink(r.id), r.id === best ? ' ★ best' : ''), el('td', {}, statusBadge(r.status)),
    el('td', { class: 'kv' }, (r.arguments || []).join(' ')), el('td', { class: 'num' }, fmtDuration(r.duration_s)),
    el('td', { class: 'decision' }, r.status === 'Canceled' ? (r.error || 'canceled') : '')));
  show(el('h1', {}, 'Sweep ', run.id, ' ', statusBadge(run.status)),
    el('p', { class: 'muted' }, `experiment ${run.experiment} · ${kids.runs.length} children`,
      best ? [' · best child ', runLink(best), ` (${fmtNum(parseFloat(run.tags.best_metric_value))})`] : ''),
    sweepSettings(sw),
    el('h2', {}, 'Parameters against ' + sw.primary_metric), parallelCoords(sw.children || [], sw.primary_metric, sw.goal),
    el('table', { id: 'sweep-children' }, el('thead', {}, el('tr', {}, ['#', 'child', 'status', 'arguments', 'duration', 'decision (early termination)'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
    el('p', {}, el('a', { href: '#/runs?parent=' + enc(run.id) }, 'These children in a runs table (metric columns, compare)')),
    el('h2', {}, 'Every child\'s metric in one chart'), grid);
  // the children's metric (the first name; kusari sweep show names the primary one)
  const ids = kids.runs.map((r) => r.id);
  const details = await Promise.all(ids.slice(0, 50).map((k) => api('runs/' + enc(k), sig)));
  const names = [...new Set(details.flatMap((r) => Object.keys(r.metrics || {})))].sort();
  if (names.length && page.alive) {
    const mc = metricCard(ids.slice(0, 50), names[0], ids.slice(0, 50));
    grid.appendChild(mc.card);
    await mc.refresh();
  }
}

// ---- models, services ------------------------------------------------------------------------------
async function modelsPage() {
  const j = await api('models', { signal: page.abort.signal });
  const list = j.models || j;
  show(el('h1', {}, 'Models'), list.length ? el('table', { id: 'models' },
    el('thead', {}, el('tr', {}, ['model', 'version', 'path', 'source run', 'tags', 'description', ''].map((h) => el('th', {}, h)))),
    el('tbody', {}, list.map((m) => el('tr', {},
      el('td', {}, m.name), el('td', { class: 'num' }, m.version), el('td', { class: 'kv' }, m.path),
      el('td', {}, m.run ? runLink(m.run) : ''), el('td', { class: 'kv' }, Object.entries(m.tags || {}).map(([k, v]) => k + '=' + v).join(' ')),
      el('td', {}, m.description || ''),
      el('td', {}, (m.files || []).map((f) => el('button', { type: 'button', title: f.path,
        onclick: () => download(`models/${enc(m.name)}/versions/${m.version}/files/${encPath(f.path)}`, f.path) }, 'Download ' + f.path)))))))
    : el('p', { class: 'muted' }, 'No models registered (kusari model register).'));
}

// each service with its counters (GET /services/{name}/metrics); the API never
// gives a key, so the page only says whether scoring needs one
async function servicesPage() {
  const sig = { signal: page.abort.signal };
  const j = await api('services', sig);
  const list = j.services || [];
  const stats = await Promise.all(list.map((v) => api(`services/${enc(v.name)}/metrics`, sig).catch(() => null)));
  const ms = (x) => (typeof x === 'number' ? (x * 1000).toFixed(1) + ' ms' : '—');
  show(el('h1', {}, 'Services'), list.length ? el('table', { id: 'services' },
    el('thead', {}, el('tr', {}, ['service', 'state', 'model', 'scoring URI', 'key', 'requests', 'by code', 'latency mean / p50 / p99'].map((h) => el('th', {}, h)))),
    el('tbody', {}, list.map((v, i) => {
      const m = stats[i] || {};
      const lat = m.latency_seconds || {};
      return el('tr', { 'data-service': v.name },
        el('td', {}, v.name), el('td', {}, statusBadge(v.state)), el('td', {}, v.model), el('td', { class: 'kv' }, v.scoring_uri),
        el('td', { class: 'key' }, v.auth ? 'required (••••••••, never shown)' : 'none'),
        el('td', { class: 'num', 'data-requests': String(m.requests_total ?? '') }, m.requests_total ?? '—'),
        el('td', { class: 'kv' }, Object.entries(m.requests_by_code || {}).map(([k, n]) => `${k}: ${n}`).join(' ')),
        el('td', { class: 'num' }, `${ms(lat.mean)} / ${ms(lat.p50)} / ${ms(lat.p99)}`));
    })))
    : el('p', { class: 'muted' }, 'No services (kusari model deploy).'));
}

// ---- start ---------------------------------------------------------------------------------------------
document.getElementById('logout').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); location.hash = '#/login'; });
window.addEventListener('hashchange', route);
route();
