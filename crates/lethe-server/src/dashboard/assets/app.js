// Lethe dashboard: a thin page over the JSON API. Every figure and every
// change goes through /v1 with the session cookie; changes carry the
// session's CSRF token. Text is only ever set with textContent (no HTML
// from data), so nothing stored can script the page.
'use strict';

const S = { me: null, tenants: [], tenant: null, page: 'overview', gen: 0 };

// ---------- HTTP ----------

class ApiError extends Error {
  constructor(status, data) {
    super((data && data.detail) || (data && data.title) || ('HTTP ' + status));
    this.status = status;
    this.field = data && data.field;
    this.data = data;
  }
}

// A page load the user navigated away from: its answers are dropped, so
// a slow page never paints over the page that replaced it.
class Superseded extends Error {}

// Turns a failed load into `fallback`, except when the page is superseded.
const soft = (fallback) => (e) => { if (e instanceof Superseded) throw e; return typeof fallback === 'function' ? fallback(e) : fallback; };

async function api(method, path, body) {
  const gen = S.gen;
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && S.me) headers['X-CSRF-Token'] = S.me.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (method === 'GET' && gen !== S.gen) throw new Superseded();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (r.status === 401 && path !== '/ui/session') {
    S.me = null;
    location.hash = '#/signin';
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return { data, status: r.status, headers: r.headers };
}

const get = (p) => api('GET', p).then((r) => r.data);
const T = () => encodeURIComponent(S.tenant);

// ---------- DOM ----------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

const view = () => document.getElementById('view');

// Replaces a node's children, leaving out absent parts (null, false).
function put(node, ...kids) {
  node.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

function show(...nodes) {
  const v = view();
  put(v, ...nodes.flat().filter(Boolean));
}

function note(kind, ...text) { return el('div', { class: 'note ' + kind, role: kind === 'bad' ? 'alert' : 'status' }, ...text); }

function errorNote(e) {
  if (e.status === 403) return note('bad', 'Not allowed: this key may not see or do this (403). ', e.message);
  if (e.status === 404) return note('bad', 'Not found (404). ', e.message);
  return note('bad', e.message || String(e));
}

// A labelled form field with its error line; `input` gets id `f-<name>`.
function field(label, name, input, hint) {
  input.id = 'f-' + name;
  input.name = name;
  const err = el('p', { class: 'err', id: 'err-' + name, 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', 'err-' + name);
  return el('div', { class: 'field' }, el('label', { for: input.id, text: label }), input,
    hint ? el('div', { class: 'hint', text: hint }) : null, err);
}

function clearErrors(form) { form.querySelectorAll('.err').forEach((e) => { e.textContent = ''; }); }

// Puts an API error next to the field it names, else in `general`.
function fieldError(form, e, general, names) {
  const map = names || {};
  const name = e.field && (map[e.field] || e.field);
  const slot = name && form.querySelector('#err-' + CSS.escape(name));
  if (slot) { slot.textContent = e.message; return; }
  put(general, errorNote(e));
}

// ---------- formatting ----------

function bytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i += 1; }
  return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + ' ' + u[i];
}

function count(n, unit) {
  if (n === null || n === undefined) return '–';
  let s;
  if (n >= 1e9) s = (n / 1e9).toFixed(1) + 'B';
  else if (n >= 1e6) s = (n / 1e6).toFixed(1) + 'M';
  else if (n >= 1e4) s = (n / 1e3).toFixed(1) + 'k';
  else s = n.toLocaleString('en');
  return unit ? s + ' ' + unit : s;
}

function ago(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  let d = (Date.now() - t) / 1000;
  const future = d < 0; d = Math.abs(d);
  const [n, u] = d < 90 ? [d, 's'] : d < 5400 ? [d / 60, 'min'] : d < 129600 ? [d / 3600, 'h'] : [d / 86400, 'd'];
  const s = Math.round(n) + ' ' + u;
  return future ? 'in ' + s : s + ' ago';
}

function when(iso) {
  if (!iso) return '–';
  const s = String(iso).replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC');
  return s + ' (' + ago(iso) + ')';
}

function canAdmin() { return S.me && (S.me.role === 'admin' || S.me.role === 'super_admin'); }
function isSuper() { return S.me && S.me.role === 'super_admin'; }

function table(headers, rows, numeric) {
  const num = new Set(numeric || []);
  return el('table', {},
    el('thead', {}, el('tr', {}, headers.map((h, i) => el('th', { scope: 'col', class: num.has(i) ? 'num' : null, text: h })))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => el('td', { class: num.has(i) ? 'num' : null }, c))))));
}

function download(name, obj) {
  const blob = new Blob([JSON.stringify(obj, null, 2)], { type: 'application/json' });
  return el('a', { href: URL.createObjectURL(blob), download: name, text: 'Download ' + name });
}

// ---------- charts (inline SVG, no library) ----------

function barChart(title, items) {
  const w = 520; const h = 220; const pad = 40;
  const max = Math.max(1, ...items.map((i) => i.value));
  const bw = (w - pad * 2) / Math.max(1, items.length);
  const g = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': title });
  g.append(svg('line', { class: 'axis', x1: pad, y1: h - pad, x2: w - pad / 2, y2: h - pad }));
  items.forEach((it, i) => {
    const bh = ((h - pad * 2) * it.value) / max;
    const x = pad + i * bw + 4; const y = h - pad - bh;
    g.append(svg('rect', { class: 'bar' + (it.past ? ' past' : ''), x, y, width: Math.max(1, bw - 8), height: Math.max(0, bh) },
      svg('title', {}, `${it.label}: ${it.text}`)));
    g.append(svg('text', { x: x + (bw - 8) / 2, y: h - pad + 14, 'text-anchor': 'middle' }, it.label));
    g.append(svg('text', { x: x + (bw - 8) / 2, y: Math.max(12, y - 4), 'text-anchor': 'middle' }, it.text));
  });
  return el('figure', { class: 'chart' }, el('figcaption', { text: title }), g);
}

function lineChart(title, points, empty) {
  if (points.length === 0) return el('figure', { class: 'chart' }, el('figcaption', { text: title }), el('p', { class: 'muted', text: empty }));
  const w = 520; const h = 220; const pad = 44;
  const max = Math.max(1, ...points.map((p) => p.value));
  const step = points.length > 1 ? (w - pad * 2) / (points.length - 1) : 0;
  const xy = points.map((p, i) => [pad + i * step, h - pad - ((h - pad * 2) * p.value) / max]);
  const g = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': title });
  g.append(svg('line', { class: 'axis', x1: pad, y1: h - pad, x2: w - pad / 2, y2: h - pad }));
  g.append(svg('polyline', { class: 'line', points: xy.map((p) => p.join(',')).join(' ') }));
  xy.forEach(([x, y], i) => g.append(svg('circle', { class: 'dot', cx: x, cy: y, r: 3 }, svg('title', {}, `${points[i].label}: ${points[i].text}`))));
  g.append(svg('text', { x: 4, y: pad - 6 }, points.length ? count(max) : ''));
  g.append(svg('text', { x: pad, y: h - pad + 16 }, points[0].label));
  if (points.length > 1) g.append(svg('text', { x: w - pad, y: h - pad + 16, 'text-anchor': 'end' }, points[points.length - 1].label));
  return el('figure', { class: 'chart' }, el('figcaption', { text: title }), g);
}

// ---------- pages ----------

const PAGES = [
  ['overview', 'Overview', () => true],
  ['retention', 'Retention', () => true],
  ['erasure', 'Erasure', () => canAdmin()],
  ['records', 'Records', () => canAdmin()],
  ['holds', 'Legal holds', () => true],
  ['evidence', 'Evidence', () => true],
  ['archive', 'Archive', () => true],
  ['keys', 'API keys', () => isSuper()],
];

async function overviewPage() {
  const o = await get(`/v1/tenants/${T()}/overview`);
  const r = o.retention;
  const sw = o.sweep || {};
  const last = sw.last;
  const cards = el('div', { class: 'cards' },
    card('Records', count(o.records), bytes(o.bytes)),
    card('Past their window', count(o.past_window), 'removed by the next sweep'),
    card('Under legal hold', count(o.held), 'past the window, kept'),
    card('Retention', r.enabled ? (r.retention_days === null ? 'forever' : r.retention_days + ' days') : 'off', r.action),
    card('Last sweep', last ? when(last.at || last.finished_at) : 'never', last ? (last.result || '') : ''),
    card('Next sweep', sw.next_at ? when(sw.next_at) : 'not scheduled', sw.schedule || ''));
  const rows = o.streams.map((s) => [s.stream, s.scope, count(s.records), bytes(s.bytes), when(s.oldest), when(s.newest),
    (s.window || '–') + ' · ' + (s.action || '–'), count(s.past_window), count(s.held)]);
  const ages = o.ages.map((a) => ({ label: a.bucket, value: a.records, text: count(a.records), past: false }));
  const hist = o.history.map((p) => ({ label: p.at.slice(0, 10), value: p.records, text: count(p.records) + ' · ' + bytes(p.bytes) }));
  const lastReceipt = last && last.receipt ? el('p', {}, 'Last sweep receipt: ', el('a', { href: `#/evidence/${T()}?receipt=${last.receipt}`, text: '#' + last.receipt })) : null;
  show(el('h1', { text: 'Overview — ' + o.tenant }),
    el('p', { class: 'lead', text: 'Evaluated ' + when(o.evaluated_at) }),
    cards, lastReceipt,
    el('h2', { text: 'Per stream and scope' }),
    rows.length ? table(['Stream', 'Scope', 'Records', 'Bytes', 'Oldest', 'Newest', 'Window · action', 'Past window', 'Held'], rows, [2, 3, 7, 8])
      : el('p', { class: 'muted', text: 'This tenant stores no records.' }),
    el('div', { class: 'charts' },
      barChart('Records by age (days since their event time; as of ' + o.ages_at.slice(11, 16) + ' UTC)', ages),
      lineChart('Records stored after each sweep', hist, 'No sweep has covered this tenant yet.')));
}

function card(k, v, s) { return el('div', { class: 'card' }, el('div', { class: 'k', text: k }), el('div', { class: 'v', text: v }), el('div', { class: 's', text: s || '' })); }

// Retention settings with a preview before saving, and "purge now".
async function retentionPage() {
  const r = await get(`/v1/tenants/${T()}/retention`);
  const policies = table(['Rule', 'Selects', 'Window', 'Action', 'Source', 'In force'],
    r.policies.map((p) => [p.name, JSON.stringify(p.selects), p.enabled ? p.window : 'off', p.action, p.source, p.in_force ? 'yes' : 'no']));
  const parts = [el('h1', { text: 'Retention — ' + r.tenant }),
    el('p', { class: 'lead' }, 'The next sweep applies these rules. Last sweep that covered this tenant: ', when(r.last_purge_at),
      '; removed by sweeps so far: ', count(r.purged_total, 'records'), '.'),
    policies];
  if (!canAdmin()) {
    parts.push(note('', 'Your key is read-only (', S.me.role, '): changing settings and purging need an admin key.'));
    return show(parts);
  }
  const cur = r.setting || {};
  const enabled = el('input', { type: 'checkbox' }); enabled.checked = r.setting ? !!cur.enabled : r.enabled;
  const win = el('select', {}, ['30', '60', '90', '180', '365', 'custom', 'forever'].map((d) => el('option', { value: d, text: d === 'custom' ? 'custom…' : d === 'forever' ? 'forever' : d + ' days' })));
  const custom = el('input', { type: 'number', min: '1', max: '36500', inputmode: 'numeric' });
  const days = r.retention_days;
  if (days === null) win.value = 'forever';
  else if (['30', '60', '90', '180', '365'].includes(String(days))) win.value = String(days);
  else { win.value = 'custom'; custom.value = days; }
  const action = el('select', {}, ['delete', 'anonymize', 'archive_then_delete'].map((a) => el('option', { value: a, text: a.replace(/_/g, ' ') })));
  action.value = cur.action || r.action || 'delete';
  const archiveWindow = el('input', { type: 'text', placeholder: '365d' });
  if (cur.archive_window) archiveWindow.value = cur.archive_window;
  // Per stream/scope/classification overrides within the tenant's setting.
  const overrides = el('tbody', { id: 'overrides' });
  let nth = 0;
  const addOverride = (o) => {
    nth += 1;
    const i = nth;
    const cls = el('select', { 'aria-label': `Override ${i}: classification` }, ['', 'public', 'internal', 'confidential', 'restricted'].map((c) => el('option', { value: c, text: c || 'any' })));
    cls.value = (o && o.classification) || '';
    const act = el('select', { 'aria-label': `Override ${i}: action` }, ['delete', 'anonymize', 'archive_then_delete'].map((a) => el('option', { value: a, text: a.replace(/_/g, ' ') })));
    act.value = (o && o.action) || 'delete';
    const cells = {
      stream: el('input', { type: 'text', class: 'o-stream', 'aria-label': `Override ${i}: stream`, placeholder: 'requests', value: (o && o.stream) || '' }),
      scope: el('input', { type: 'text', class: 'o-scope', 'aria-label': `Override ${i}: scope`, placeholder: 'any', value: (o && o.scope) || '' }),
      window: el('input', { type: 'text', class: 'o-window', 'aria-label': `Override ${i}: window`, placeholder: '7d', value: (o && o.window) || '' }),
    };
    const row = el('tr', { class: 'override' }, el('td', {}, cells.stream), el('td', {}, cells.scope), el('td', {}, cls), el('td', {}, cells.window), el('td', {}, act),
      el('td', {}, el('button', { type: 'button', class: 'secondary', text: 'Remove', 'aria-label': `Remove override ${i}`, onclick: () => row.remove() })));
    row.read = () => ({ stream: cells.stream.value.trim() || null, scope: cells.scope.value.trim() || null, classification: cls.value || null,
      window: cells.window.value.trim() || null, action: act.value });
    overrides.append(row);
    cells.stream.focus();
  };
  (cur.overrides || []).forEach(addOverride);
  const general = el('div');
  const previewOut = el('div', { id: 'preview' });
  const save = el('button', { type: 'button', id: 'save', disabled: true, text: 'Save setting' });
  const form = el('form', { class: 'panel', id: 'retention-form', novalidate: true },
    el('h2', { text: 'Change this tenant\'s setting' }),
    el('div', { class: 'field inline' }, enabled, el('label', { for: 'f-enabled', text: 'Auto-purge (the sweep removes records past the window)' })),
    field('Window', 'window', win),
    field('Custom window (days)', 'retention_days', custom, 'Used when the window is "custom…" (1–36,500).'),
    field('Action after the window', 'action', action),
    field('Archive window', 'archive_window', archiveWindow, 'With archive then delete: how long the archived copy is kept (365d, forever).'),
    el('fieldset', { class: 'overrides' }, el('legend', { text: 'Overrides for some streams, scopes or classifications (the most specific that matches a record governs it)' }),
      el('table', {}, el('thead', {}, el('tr', {}, ['Stream', 'Scope', 'Classification', 'Window (7d, 90d, forever)', 'Action', ''].map((h) => el('th', { scope: 'col', text: h })))), overrides),
      el('p', { class: 'err', id: 'err-overrides', 'aria-live': 'polite' }),
      el('button', { type: 'button', class: 'secondary', id: 'add-override', text: 'Add override', onclick: () => addOverride(null) })),
    el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'preview-btn', text: 'Preview the change' }), save),
    general, previewOut);
  enabled.id = 'f-enabled';
  const body = () => {
    const b = { enabled: enabled.checked, action: action.value };
    if (win.value === 'forever') b.window = 'forever';
    else if (win.value === 'custom') b.retention_days = Number(custom.value || 0);
    else b.retention_days = Number(win.value);
    if (action.value === 'archive_then_delete') b.archive_window = archiveWindow.value || null;
    b.overrides = [...overrides.querySelectorAll('tr.override')].map((r) => r.read());
    return b;
  };
  const names = new Proxy({ window: 'window', retention_days: 'retention_days' }, {
    get: (t, k) => (typeof k === 'string' && k.startsWith('overrides[') ? 'overrides' : t[k]),
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); put(general, ); save.disabled = true;
    if (win.value === 'custom' && !custom.value) { form.querySelector('#err-retention_days').textContent = 'Give the number of days.'; return; }
    try {
      const p = (await api('POST', `/v1/tenants/${T()}/retention/preview`, body())).data;
      const rows = p.proposed.groups.map((g) => [g.stream, g.scope, g.classification, g.window + ' · ' + g.action, count(g.records), count(g.held), bytes(g.bytes_freed)]);
      put(previewOut, el('h3', { text: 'What the next sweep removes under the proposed setting' }),
        note('warn', `Proposed: ${count(p.proposed.deleted)} deleted, ${count(p.proposed.anonymized)} anonymized, ${count(p.proposed.held)} held${freed(p.proposed)}. `,
          `Under the current settings: ${count(p.current.deleted + p.current.anonymized)} records${freed(p.current)}.`),
        rows.length ? table(['Stream', 'Scope', 'Class', 'Window · action', 'Records', 'Held', 'Bytes'], rows, [4, 5, 6]) : el('p', { class: 'muted', text: 'Nothing is past the proposed window.' }));
      save.disabled = false;
    } catch (e) { fieldError(form, e, general, names); }
  });
  save.addEventListener('click', async () => {
    clearErrors(form);
    try {
      const c = (await api('PUT', `/v1/tenants/${T()}/retention`, body())).data;
      put(general, note('good', `Saved as version ${c.version} (ledger entry ${c.ledger_seq}); in force from ${c.in_force_from}.`));
      save.disabled = true;
    } catch (e) { fieldError(form, e, general, names); }
  });
  parts.push(form, purgeNow(r));
  show(parts);
}

// Bytes a plan frees are known for whole partitions dropped only; say
// nothing rather than "0 B" when only single records go.
function freed(plan) { return plan.bytes_freed > 0 ? `, ${bytes(plan.bytes_freed)} freed in whole partitions` : ''; }

function purgeNow(r) {
  const out = el('div', { id: 'purge-result' });
  const panel = el('section', { class: 'panel', 'aria-labelledby': 'purge-h' }, el('h2', { id: 'purge-h', text: 'Purge now' }));
  if (!r.enabled) {
    panel.append(el('button', { type: 'button', id: 'purge-now', disabled: true, text: 'Purge now' }),
      el('p', { class: 'muted', id: 'purge-why', text: 'Unavailable: retention is off for this tenant — no rule in force removes anything. Turn auto-purge on (or give a window) first.' }));
    return panel;
  }
  const start = el('button', { type: 'button', id: 'purge-now', class: 'danger', text: 'Purge now' });
  start.addEventListener('click', async () => {
    put(out, el('p', { text: 'Working out what a sweep would remove now…' }));
    try {
      const dry = (await api('POST', `/v1/tenants/${T()}/sweep?dry_run=true`)).data;
      const confirm = el('button', { type: 'button', class: 'danger', id: 'purge-confirm', text: `Confirm: remove ${count(dry.deleted + dry.anonymized)} records` });
      const cancel = el('button', { type: 'button', class: 'secondary', text: 'Cancel', onclick: () => put(out, ) });
      put(out, note('warn', `A sweep now deletes ${count(dry.deleted)} and anonymizes ${count(dry.anonymized)} records${freed(dry)}; ${count(dry.held)} held records stay. This cannot be undone.`),
        el('div', { class: 'actions' }, confirm, cancel));
      confirm.focus();
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        try {
          const s = (await api('POST', `/v1/tenants/${T()}/sweep`)).data;
          const rc = s.receipt ? await get(`/v1/tenants/${T()}/receipts/${s.receipt}`).catch(soft(null)) : null;
          put(out, note('good', `Swept: ${count(s.deleted)} deleted, ${count(s.anonymized)} anonymized${freed(s)}; verified: ${s.verified}.`),
            s.receipt ? receiptView(rc || { seq: s.receipt, body: s }) : el('p', { text: 'Nothing was removed; no receipt was written.' }));
        } catch (e) { put(out, errorNote(e)); }
      });
    } catch (e) { put(out, errorNote(e)); }
  });
  panel.append(el('p', { class: 'muted', text: 'Runs this tenant\'s retention now, as the scheduled sweep would, under your key. You confirm after seeing what it removes.' }), start, out);
  return panel;
}

function receiptView(e) {
  return el('section', { class: 'panel receipt', id: 'receipt-' + e.seq },
    el('h3', { text: `Receipt #${e.seq} — ${e.kind || 'receipt'}` }),
    el('p', {}, 'When: ', when(e.ts), ' · who: ', e.actor || '–', ' · ',
      el('a', { href: `#/evidence/${T()}?from=${e.seq}`, text: 'in the ledger' }), ' · ', download(`receipt-${e.seq}.json`, e)),
    el('pre', { class: 'json', text: JSON.stringify(e.body, null, 2) }));
}

// Erasure wizard: selection → exact preview → confirm by the tenant's name → job → receipt.
async function erasurePage() {
  if (!canAdmin()) return show(el('h1', { text: 'Erasure' }), note('', 'Erasures need an admin key.'));
  const steps = (n) => el('ol', { class: 'steps', 'aria-label': 'Steps' },
    ['Select', 'Preview', 'Confirm', 'Progress', 'Receipt'].map((s, i) => el('li', { class: i === n ? 'current' : null, 'aria-current': i === n ? 'step' : null, text: `${i + 1}. ${s}` })));
  const subjects = el('textarea', { placeholder: 'one subject id per line' });
  const since = el('input', { type: 'text', placeholder: '2026-01-01T00:00:00Z' });
  const until = el('input', { type: 'text', placeholder: '2026-12-01T00:00:00Z' });
  const stream = el('input', { type: 'text', placeholder: 'requests:1' });
  const scope = el('input', { type: 'text' });
  const anonymize = el('input', { type: 'checkbox', id: 'f-anonymize' });
  const general = el('div');
  const form = el('form', { class: 'panel', id: 'erasure-form', novalidate: true },
    field('Data subjects', 'subjects', subjects, 'Leave empty to select by time range or scope only.'),
    field('Since (RFC 3339, optional)', 'since', since), field('Until (RFC 3339, optional)', 'until', until),
    field('Stream (optional)', 'stream', stream), field('Scope (optional)', 'scope', scope),
    el('div', { class: 'field inline' }, anonymize, el('label', { for: 'f-anonymize', text: 'Anonymize (keep the events, remove the subject and personal fields)' })),
    el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'erasure-preview', text: 'Preview' })), general);
  show(el('h1', { text: 'Erase data — ' + S.tenant }), steps(0), form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); put(general, );
    const sel = {
      subjects: subjects.value.split('\n').map((s) => s.trim()).filter(Boolean),
      since: since.value.trim() || null, until: until.value.trim() || null,
      stream: stream.value.trim() || null, scope: scope.value.trim() || null, anonymize: anonymize.checked,
    };
    try {
      const p = (await api('POST', `/v1/tenants/${T()}/erasures/preview`, sel)).data;
      erasurePreview(p, steps);
    } catch (e) { fieldError(form, e, general, { subject: 'subjects' }); }
  });
}

function erasurePreview(p, steps) {
  const v = p.preview;
  const rows = v.groups.map((g) => [g.stream, g.scope, count(g.records), count(g.held), bytes(g.bytes), when(g.oldest), when(g.newest)]);
  const held = v.held > 0 ? note('bad', `${count(v.held)} selected record(s) are under legal hold ${v.held_by.map((h) => '#' + h).join(', ')}: the erasure is refused unless you erase the rest and keep those.`) : null;
  const skip = el('input', { type: 'checkbox', id: 'f-skip_held' });
  const reason = el('input', { type: 'text' });
  const ticket = el('input', { type: 'text' });
  const typed = el('input', { type: 'text', autocomplete: 'off' });
  const general = el('div');
  const go = el('button', { type: 'submit', class: 'danger', id: 'erasure-confirm', text: 'Erase' });
  const form = el('form', { class: 'panel', id: 'erasure-confirm-form', novalidate: true },
    field('Reason (the authority)', 'reason', reason), field('Ticket or case reference', 'ticket', ticket),
    v.held > 0 ? el('div', { class: 'field inline' }, skip, el('label', { for: 'f-skip_held', text: 'Erase the rest and keep the held records' })) : null,
    field(`Type the tenant's name (${S.tenant}) to confirm`, 'confirm', typed),
    el('div', { class: 'actions' }, go, el('button', { type: 'button', class: 'secondary', text: 'Back', onclick: () => route() })), general);
  show(el('h1', { text: 'Erase data — ' + S.tenant }), steps(1),
    el('div', { class: 'cards' }, card('Records to remove', count(v.selected), bytes(v.bytes)), card('Held', count(v.held), v.held_by.length ? 'by hold ' + v.held_by.map((h) => '#' + h).join(', ') : ''),
      card('Subjects found', `${v.subjects_found} of ${v.subjects}`, v.action), card('Keys to destroy', count(v.keys_to_destroy), '')),
    el('p', { class: 'muted', text: 'Keys: ' + v.keys }), held,
    rows.length ? table(['Stream', 'Scope', 'Records', 'Held', 'Bytes', 'Oldest', 'Newest'], rows, [2, 3, 4]) : el('p', { class: 'muted', text: 'Nothing matches.' }),
    el('h2', { text: 'Confirm' }), form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); put(general, );
    if (typed.value.trim() !== S.tenant) { form.querySelector('#err-confirm').textContent = `Type ${S.tenant} exactly to confirm.`; typed.focus(); return; }
    go.disabled = true;
    try {
      const r = await api('POST', `/v1/tenants/${T()}/erasures`, { preview_id: p.preview_id, reason: reason.value, ticket: ticket.value, skip_held: skip.checked });
      await erasureProgress(r.headers.get('Location') || `/v1/erasures/${r.data.id}`, steps);
    } catch (e) {
      go.disabled = false;
      if (e.status === 409) {
        const holds = (e.data.extra && e.data.extra.holds) || [];
        put(general, note('bad', e.message, holds.length ? ` (hold ${holds.map((h) => '#' + h).join(', ')})` : ''));
      } else fieldError(form, e, general);
    }
  });
}

async function erasureProgress(location, steps) {
  const status = el('p', { id: 'job-state', role: 'status', text: 'Queued…' });
  show(el('h1', { text: 'Erase data — ' + S.tenant }), steps(3), status);
  for (;;) {
    const j = await get(location);
    status.textContent = `State: ${j.state} — ${j.progress || ''}`;
    if (j.state === 'done' || j.state === 'failed') {
      const rc = j.receipt ? await get(`/v1/tenants/${T()}/receipts/${j.receipt}`) : null;
      show(el('h1', { text: 'Erase data — ' + S.tenant }), steps(4),
        note(j.state === 'done' ? 'good' : 'bad', j.state === 'done'
          ? `Done: ${count(j.report.removed)} records removed, ${j.report.keys_destroyed} key(s) destroyed, verified: ${j.report.verified}.`
          : `Failed: ${j.error || ''}`),
        el('p', {}, 'Job ', el('span', { class: 'mono', text: j.id }), ' by ', j.created_by, ', ticket ', j.ticket),
        rc ? receiptView(rc) : null);
      return;
    }
    await new Promise((res) => setTimeout(res, 400));
  }
}

// The records view (admin): what is stored, optionally one subject's.
async function recordsPage() {
  if (!canAdmin()) return show(el('h1', { text: 'Records' }), note('', 'Reading record bodies needs an admin key.'));
  const subject = el('input', { type: 'text' });
  const out = el('div', { id: 'records' });
  const general = el('div');
  let cursor = null;
  const form = el('form', { class: 'panel', novalidate: true }, field('Subject (optional)', 'subject', subject),
    el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'records-search', text: 'Show records' })), general);
  const load = async (more) => {
    const q = new URLSearchParams({ limit: '50' });
    if (subject.value.trim()) q.set('subject', subject.value.trim());
    if (more && cursor) q.set('cursor', cursor);
    try {
      const r = await get(`/v1/tenants/${T()}/records?${q}`);
      cursor = r.next_cursor || null;
      const rows = r.records.map((x) => [when(x.ts), x.stream, x.scope || '', x.subject || '', el('span', { class: 'mono', text: JSON.stringify(x.fields) })]);
      const next = cursor ? el('button', { type: 'button', class: 'secondary', text: 'Next page', onclick: () => load(true) }) : null;
      put(out, el('p', { id: 'records-count', text: `${r.records.length} record(s) on this page` }),
        rows.length ? table(['Time', 'Stream', 'Scope', 'Subject', 'Fields'], rows) : el('p', { class: 'muted', text: 'No records.' }), next);
    } catch (e) { fieldError(form, e, general); }
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); clearErrors(form); put(general, ); load(false); });
  show(el('h1', { text: 'Records — ' + S.tenant }), form, out);
  load(false);
}

async function holdsPage() {
  const holds = await get(`/v1/tenants/${T()}/holds`);
  const parts = [el('h1', { text: 'Legal holds — ' + S.tenant })];
  const list = el('div', { id: 'holds' });
  const pageSize = 20; let page = 0;
  const render = () => {
    const slice = holds.slice().reverse().slice(page * pageSize, (page + 1) * pageSize);
    const rows = slice.map((h) => [String(h.id), h.status, h.subject ? 'one subject' : 'all', h.scope || 'all', (h.since || '…') + ' – ' + (h.until || '…'), h.reason, h.actor, when(h.created), h.expires ? when(h.expires) : 'never',
      h.status === 'active' && canAdmin() ? releaseForm(h) : (h.release_reason ? 'released: ' + h.release_reason : '')]);
    put(list, rows.length ? table(['#', 'Status', 'Subject', 'Scope', 'Event time', 'Reason', 'Set by', 'Set', 'Expires', ''], rows) : el('p', { class: 'muted', text: 'No holds.' }),
      pager(page, Math.ceil(holds.length / pageSize), (p) => { page = p; render(); }));
  };
  render();
  parts.push(list);
  if (canAdmin()) parts.push(newHoldForm());
  show(parts);
}

function pager(page, pages, go) {
  if (pages <= 1) return null;
  return el('div', { class: 'pager' },
    el('button', { type: 'button', class: 'secondary', disabled: page === 0, text: 'Previous', onclick: () => go(page - 1) }),
    el('span', { text: `Page ${page + 1} of ${pages}` }),
    el('button', { type: 'button', class: 'secondary', disabled: page + 1 >= pages, text: 'Next', onclick: () => go(page + 1) }));
}

function releaseForm(h) {
  const reason = el('input', { type: 'text', 'aria-label': `Reason to release hold ${h.id}`, placeholder: 'reason' });
  const err = el('p', { class: 'err' });
  const f = el('form', { class: 'release' }, reason, el('button', { type: 'submit', class: 'secondary', text: 'Release' }), err);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await api('POST', `/v1/tenants/${T()}/holds/${h.id}/release`, { reason: reason.value }); route(); } catch (e) { err.textContent = e.message; }
  });
  return f;
}

function newHoldForm() {
  const inputs = { reason: el('input', { type: 'text' }), subject: el('input', { type: 'text' }), scope: el('input', { type: 'text' }),
    since: el('input', { type: 'text', placeholder: 'RFC 3339' }), until: el('input', { type: 'text', placeholder: 'RFC 3339' }), expires: el('input', { type: 'text', placeholder: 'RFC 3339' }) };
  const general = el('div');
  const form = el('form', { class: 'panel', id: 'hold-form', novalidate: true }, el('h2', { text: 'New hold' }),
    field('Reason', 'reason', inputs.reason), field('Subject (optional)', 'subject', inputs.subject), field('Scope (optional)', 'scope', inputs.scope),
    field('Event time since (optional)', 'since', inputs.since), field('Event time until (optional)', 'until', inputs.until), field('Expires (optional)', 'expires', inputs.expires),
    el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'hold-create', text: 'Set hold' })), general);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); put(general, );
    const b = {};
    for (const [k, i] of Object.entries(inputs)) if (i.value.trim()) b[k] = i.value.trim();
    if (!b.reason) { form.querySelector('#err-reason').textContent = 'A hold needs a reason.'; return; }
    try { await api('POST', `/v1/tenants/${T()}/holds`, b); route(); } catch (e) { fieldError(form, e, general); }
  });
  return form;
}

async function evidencePage(params) {
  const parts = [el('h1', { text: 'Evidence — ' + S.tenant })];
  const stats = await get(`/v1/tenants/${T()}/stats`);
  const streams = [...new Set(stats.rows.map((s) => s.stream))];
  const [receipts, pub, ...perStream] = await Promise.all([get(`/v1/tenants/${T()}/receipts`), get('/v1/public-key'),
    ...streams.map((st) => get(`/v1/tenants/${T()}/checkpoints?stream=${encodeURIComponent(st)}`).catch(soft([])))]);
  // The newest signed checkpoint of each chain.
  const cps = perStream.map((l) => l[l.length - 1]).filter(Boolean).map((c) => c.checkpoint);
  // Verification status: the tenant's last verify.result entry.
  const verifies = await get(`/v1/tenants/${T()}/ledger?kind=verify.result&limit=1000`).catch(soft({ entries: [] }));
  const lastVerify = verifies.entries[verifies.entries.length - 1];
  const runOut = el('div', { id: 'verify-out' });
  const run = el('button', { type: 'button', id: 'run-verify', text: 'Run verify now' });
  run.addEventListener('click', async () => {
    run.disabled = true; put(runOut, el('p', { role: 'status', text: 'Verifying…' }));
    try {
      const r = await api('POST', '/v1/verify', { tenant: S.tenant });
      const loc = r.headers.get('Location');
      for (;;) {
        const j = await get(loc);
        if (j.state !== 'running' && j.state !== 'pending') {
          put(runOut, note(j.ok ? 'good' : 'bad', j.ok ? `Verified: ${count(j.report.records_checked)} records, ${j.report.gaps_total} gaps; ledger entry ${j.ledger_seq}.`
            : `Verification found problems: ${j.report ? j.report.gaps_total : '?'} gap(s). ${j.error || ''}`),
          j.report && j.report.unexplained_gaps.length ? table(['Stream', 'Seq', 'Problem'], j.report.unexplained_gaps.slice(0, 50).map((g) => [g.stream, String(g.seq), g.problem])) : null);
          break;
        }
        await new Promise((res) => setTimeout(res, 400));
      }
    } catch (e) { put(runOut, errorNote(e)); }
    run.disabled = false;
  });
  const copy = el('button', { type: 'button', class: 'secondary', text: 'Copy', onclick: () => navigator.clipboard && navigator.clipboard.writeText(pub.ed25519) });
  parts.push(el('section', { class: 'panel' }, el('h2', { text: 'Verification' }),
    lastVerify ? el('p', {}, 'Last verify: ', when(lastVerify.ts), ' by ', lastVerify.actor, ' — ',
      el('span', { class: 'badge ' + (lastVerify.body.ok ? 'ok' : 'bad'), text: lastVerify.body.ok ? 'passed' : 'problems' }),
      ` (${(lastVerify.body.gaps_total !== undefined ? lastVerify.body.gaps_total : (lastVerify.body.unexplained_gaps || []).length)} gaps)`) : el('p', { class: 'muted', text: 'No verify run recorded for this tenant yet.' }),
    el('p', {}, 'Public key (Ed25519) that checks checkpoints and proofs: ', el('span', { class: 'mono', id: 'public-key', text: pub.ed25519 }), ' ', copy),
    cps.length ? table(['Chain (stream)', 'Records', 'Root', 'Signed', 'Ledger entry'], cps.map((c) => [c.stream, count(c.size), el('span', { class: 'mono', text: c.root.slice(0, 16) + '…' }), when(new Date(c.ts_us / 1000).toISOString()), '#' + c.ledger_seq]), [1]) : el('p', { class: 'muted', text: 'No signed checkpoint yet.' }),
    el('div', { class: 'actions' }, run), runOut));
  // Receipts (newest first, paginated) and one receipt's detail.
  const detail = el('div', { id: 'receipt-detail' });
  const list = el('div', { id: 'receipts' });
  const size = 20; let page = 0;
  const newest = receipts.slice().reverse();
  const renderList = () => {
    const rows = newest.slice(page * size, (page + 1) * size).map((e) => [
      el('a', { href: `#/evidence/${T()}?receipt=${e.seq}`, text: '#' + e.seq }), e.kind, when(e.ts), e.actor,
      String(e.body.removed !== undefined ? e.body.removed : (e.body.deleted || 0) + (e.body.anonymized || 0)),
      el('span', { class: 'badge ' + (e.body.verified ? 'ok' : 'bad'), text: e.body.verified ? 'verified' : 'not verified' })]);
    put(list, rows.length ? table(['Receipt', 'Kind', 'When', 'Who', 'Removed', 'Check'], rows, [4]) : el('p', { class: 'muted', text: 'No receipts for this tenant.' }),
      pager(page, Math.ceil(newest.length / size), (p) => { page = p; renderList(); }));
  };
  renderList();
  if (params.get('receipt')) {
    const rc = await get(`/v1/tenants/${T()}/receipts/${encodeURIComponent(params.get('receipt'))}`).catch(soft((e) => ({ error: e })));
    put(detail, rc.error ? errorNote(rc.error) : receiptView(rc));
  }
  parts.push(el('h2', { text: 'Receipts' }), detail, list);
  parts.push(await ledgerSection(params));
  show(parts);
}

async function ledgerSection(params) {
  const kind = el('select', {}, ['', 'receipt.', 'receipt.purge', 'receipt.sweep', 'purge.', 'hold.', 'retention.settings', 'verify.result', 'key.', 'archive.'].map((k) => el('option', { value: k, text: k || 'every kind' })));
  kind.value = params.get('kind') || '';
  const from = Number(params.get('from') || 1);
  const q = new URLSearchParams({ from: String(from), limit: '50' });
  if (kind.value) q.set('kind', kind.value);
  const page = await get(`/v1/tenants/${T()}/ledger?${q}`);
  kind.addEventListener('change', () => { location.hash = `#/evidence/${T()}?kind=${encodeURIComponent(kind.value)}`; });
  const rows = page.entries.map((e) => [String(e.seq), when(e.ts), e.actor, e.kind, el('details', {}, el('summary', { text: 'body' }), el('pre', { class: 'json', text: JSON.stringify(e.body, null, 2) }))]);
  const next = page.next_from ? el('a', { href: `#/evidence/${T()}?from=${page.next_from}${kind.value ? '&kind=' + encodeURIComponent(kind.value) : ''}`, text: 'Next page →' }) : null;
  return el('section', { id: 'ledger' }, el('h2', { text: 'Ledger' }), field('Kind', 'kind', kind),
    rows.length ? table(['Seq', 'When', 'Who', 'Kind', 'Body'], rows) : el('p', { class: 'muted', text: 'No entries.' }), el('div', { class: 'pager' }, from > 1 ? el('a', { href: `#/evidence/${T()}`, text: '← First page' }) : null, next));
}

async function archivePage() {
  const a = await get(`/v1/tenants/${T()}/archive`);
  const objects = Array.isArray(a) ? a : (a.objects || []);
  const parts = [el('h1', { text: 'Archive — ' + S.tenant })];
  const rows = objects.map((o) => [o.target || '', o.stream || '', o.date, count(o.records), bytes(o.bytes), el('span', { class: 'mono', text: o.object })]);
  const size = 25; let page = 0;
  const list = el('div', { id: 'archive-objects' });
  const render = () => put(list, 
    rows.length ? table(['Target', 'Stream', 'Date', 'Records', 'Bytes', 'Object'], rows.slice(page * size, (page + 1) * size), [3, 4]) : el('p', { class: 'muted', text: 'Nothing of this tenant is archived yet (archive_then_delete rules archive at the sweep).' }),
    pager(page, Math.ceil(rows.length / size), (p) => { page = p; render(); }));
  render();
  const checks = await get(`/v1/tenants/${T()}/ledger?kind=archive.verify_result&limit=1000`).catch(soft({ entries: [] }));
  const lastCheck = checks.entries[checks.entries.length - 1];
  parts.push(lastCheck
    ? el('p', { id: 'archive-last-check' }, 'Last archive verification: ', when(lastCheck.ts), ' by ', lastCheck.actor, ' — ',
      el('span', { class: 'badge ' + (lastCheck.body.ok ? 'ok' : 'bad'), text: lastCheck.body.ok ? 'passed' : `${lastCheck.body.problems_total} problem(s)` }),
      ` (${count(lastCheck.body.objects_checked)} objects, ${count(lastCheck.body.records_checked)} records read back)`)
    : el('p', { class: 'muted', id: 'archive-last-check', text: 'The archive of this tenant has not been verified through the API yet.' }));
  const out = el('div', { id: 'archive-verify' });
  const verify = el('button', { type: 'button', id: 'archive-verify-btn', text: 'Verify the archive now' });
  verify.addEventListener('click', async () => {
    put(out, el('p', { role: 'status', text: 'Reading back every object…' }));
    try {
      const r = (await api('POST', `/v1/tenants/${T()}/archive/verify`)).data;
      put(out, note(r.problems.length ? 'bad' : 'good', `${count(r.objects_checked)} objects and ${count(r.records_checked)} records read back (${bytes(r.bytes_read)}): `,
        r.problems.length ? `${r.problems.length} problem(s).` : 'every object matches its manifest and the ledger.'),
      r.problems.length ? table(['Target', 'Object', 'Problem'], r.problems.slice(0, 50).map((p) => [p.target, el('span', { class: 'mono', text: p.object }), p.problem])) : null);
    } catch (e) { put(out, errorNote(e)); }
  });
  parts.push(el('div', { class: 'actions' }, verify), out, el('h2', { text: 'Archived objects' }), list);
  if (canAdmin()) {
    const inputs = { reason: el('input', { type: 'text' }), stream: el('input', { type: 'text', placeholder: 'requests:1' }), since: el('input', { type: 'text', placeholder: 'RFC 3339' }), until: el('input', { type: 'text', placeholder: 'RFC 3339' }), window: el('input', { type: 'text', placeholder: '7d' }) };
    const general = el('div');
    const form = el('form', { class: 'panel', id: 'restore-form', novalidate: true }, el('h2', { text: 'Restore into the store' }),
      field('Reason', 'reason', inputs.reason), field('Stream', 'stream', inputs.stream), field('Since', 'since', inputs.since), field('Until', 'until', inputs.until),
      field('Keep restored copies for', 'window', inputs.window), el('div', { class: 'actions' }, el('button', { type: 'submit', text: 'Restore' })), general);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault(); clearErrors(form); put(general, );
      const b = {};
      for (const [k, i] of Object.entries(inputs)) if (i.value.trim()) b[k] = i.value.trim();
      try { const r = (await api('POST', `/v1/tenants/${T()}/archive/restore`, b)).data; put(general, note('good', 'Restored: ' + JSON.stringify(r).slice(0, 300))); } catch (e) { fieldError(form, e, general); }
    });
    parts.push(form);
  }
  show(parts);
}

async function keysPage() {
  if (!isSuper()) return show(el('h1', { text: 'API keys' }), note('bad', 'Only a super_admin key manages API keys.'));
  const keys = await get('/v1/keys');
  const iso = (us) => (us ? new Date(us / 1000).toISOString() : null);
  const rows = keys.map((k) => [el('span', { class: 'mono', text: k.id }), k.name, k.role, Array.isArray(k.tenants) ? k.tenants.join(', ') : '*', k.creator, when(iso(k.created_us)),
    k.last_used_us ? when(iso(k.last_used_us)) : 'never',
    k.revoked_us ? 'revoked ' + iso(k.revoked_us).slice(0, 10) : el('button', { type: 'button', class: 'secondary', text: 'Revoke', 'aria-label': 'Revoke key ' + k.name, onclick: async () => { await api('POST', `/v1/keys/${encodeURIComponent(k.id)}/revoke`); route(); } })]);
  const name = el('input', { type: 'text' });
  const role = el('select', {}, ['ingest', 'auditor', 'admin', 'super_admin'].map((r) => el('option', { value: r, text: r })));
  const tenants = el('input', { type: 'text', placeholder: 'acme, globex (empty: this tenant)' });
  const expires = el('input', { type: 'text', placeholder: '90d (optional)' });
  const general = el('div');
  const form = el('form', { class: 'panel', id: 'key-form', novalidate: true }, el('h2', { text: 'New key' }),
    field('Name', 'name', name), field('Role', 'role', role), field('Tenants', 'tenants', tenants), field('Expires in', 'expires_in', expires),
    el('div', { class: 'actions' }, el('button', { type: 'submit', text: 'Create key' })), general);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); put(general, );
    const b = { name: name.value, role: role.value, tenants: (tenants.value || S.tenant).split(',').map((s) => s.trim()).filter(Boolean) };
    if (expires.value.trim()) b.expires_in = expires.value.trim();
    try {
      const r = (await api('POST', '/v1/keys', b)).data;
      put(general, note('warn', 'The token is shown this once — copy it now: ', el('span', { class: 'mono', id: 'new-token', text: r.token })));
    } catch (e) { fieldError(form, e, general); }
  });
  show(el('h1', { text: 'API keys' }), table(['Id', 'Name', 'Role', 'Tenants', 'Created by', 'Created', 'Last used', ''], rows), form);
}

// ---------- sign-in, navigation ----------

function signinPage() {
  document.getElementById('top').hidden = true;
  const key = el('input', { type: 'password', autocomplete: 'off', spellcheck: 'false' });
  const general = el('div');
  const form = el('form', { class: 'panel signin', id: 'signin-form', novalidate: true }, el('h1', { text: 'Sign in to Lethe' }),
    field('API key', 'key', key, 'An auditor, admin or super_admin key (lethe_…). Ingest keys cannot sign in.'),
    el('div', { class: 'actions' }, el('button', { type: 'submit', id: 'signin', text: 'Sign in' })), general);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault(); clearErrors(form); put(general, );
    try {
      S.me = (await api('POST', '/ui/session', { key: key.value })).data;
      key.value = '';
      await start();
    } catch (e) {
      form.querySelector('#err-key').textContent = e.status === 401 ? 'This key is not valid (unknown, expired or revoked).' : e.message;
    }
  });
  show(form);
  key.focus();
}

function nav() {
  const n = document.getElementById('nav');
  put(n, ...PAGES.filter((p) => p[2]()).map(([id, label]) => el('a', { href: `#/${id}/${T()}`, 'aria-current': S.page === id ? 'page' : null, text: label })));
}

async function start() {
  S.tenants = await get('/v1/tenants');
  const pick = document.getElementById('tenant');
  const names = S.tenants.map((t) => t.tenant);
  put(pick, ...names.map((t) => el('option', { value: t, text: t })));
  if (!S.tenant || !names.includes(S.tenant)) S.tenant = names[0] || null;
  document.getElementById('who').textContent = `${S.me.name} · ${S.me.role}`;
  document.getElementById('top').hidden = false;
  const h = location.hash;
  if (!h || h.startsWith('#/signin')) location.hash = `#/overview/${T()}`;
  else route();
}

async function route() {
  S.gen += 1;
  if (!S.me) {
    try { S.me = await get('/ui/session'); } catch (_) { return signinPage(); }
    return start();
  }
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const [page, tenant] = path.split('/');
  if (page === 'signin') return signinPage();
  S.page = PAGES.some((p) => p[0] === page) ? page : 'overview';
  if (tenant) S.tenant = decodeURIComponent(tenant);
  const pick = document.getElementById('tenant');
  if ([...pick.options].some((o) => o.value === S.tenant)) pick.value = S.tenant;
  nav();
  if (!S.tenant) return show(el('h1', { text: 'No tenant' }), note('', 'This key sees no tenant yet.'));
  const pages = { overview: overviewPage, retention: retentionPage, erasure: erasurePage, records: recordsPage, holds: holdsPage, evidence: evidencePage, archive: archivePage, keys: keysPage };
  show(el('p', { role: 'status', text: 'Loading…' }));
  try {
    await pages[S.page](new URLSearchParams(query || ''));
  } catch (e) {
    if (e instanceof Superseded) return;
    show(el('h1', { text: PAGES.find((p) => p[0] === S.page)[1] }), errorNote(e));
  }
  document.title = `Lethe — ${PAGES.find((p) => p[0] === S.page)[1]} — ${S.tenant}`;
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('tenant').addEventListener('change', (ev) => { location.hash = `#/${S.page}/${encodeURIComponent(ev.target.value)}`; });
  document.getElementById('signout').addEventListener('click', async () => {
    try { await api('DELETE', '/ui/session'); } catch (_) { /* signed out either way */ }
    S.me = null; location.hash = '#/signin';
  });
  window.addEventListener('hashchange', route);
  route();
});
