// DOM building and formatting helpers. Text from the API only ever becomes text nodes or
// attribute values: nothing here parses HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.append(child);
  } else {
    parent.append(document.createTextNode(String(child)));
  }
}

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'testid') {
      el.setAttribute('data-testid', value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

/** An HTML element: h('a', {href: '#/x', class: 'link'}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, as h(). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replace the children of el (without touching el itself). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A document-unique id for label/aria links. */
export function nextId(prefix = 'id') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** Call fn once the calls stop for ms milliseconds. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/**
 * Run task now and then every intervalMs after it finishes; pauses while the tab is hidden and
 * runs at once when it shows again. task gets no arguments; its errors are its own business.
 */
export class Poller {
  constructor(task, intervalMs) {
    this.task = task;
    this.intervalMs = intervalMs;
    this.timer = null;
    this.running = false;
    this.stopped = true;
    this.again = false;
    this.onVisibility = () => {
      if (document.hidden) {
        clearTimeout(this.timer);
        this.timer = null;
      } else if (!this.stopped) {
        this.now();
      }
    };
  }

  start() {
    this.stopped = false;
    document.addEventListener('visibilitychange', this.onVisibility);
    this.now();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener('visibilitychange', this.onVisibility);
  }

  /** Run the task now (once the one in flight ends), then resume the interval. */
  async now() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      await this.task();
    } catch {
      // The task reports its own errors; a poll must never stop on one.
    } finally {
      this.running = false;
    }
    if (this.again) {
      this.again = false;
      this.now();
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.stopped || document.hidden) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.now(), this.intervalMs);
  }
}

// ---- formatting ----------------------------------------------------------------------------

const EN = 'en-US';
const integer = new Intl.NumberFormat(EN, { maximumFractionDigits: 0 });

export const DASH = '—';

export function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

/** 1234.5 -> "1,235"; digits: fixed fraction digits. */
export function fmtNumber(v, digits = 0) {
  if (!isNum(v)) return DASH;
  if (digits === 0) return integer.format(v);
  return new Intl.NumberFormat(EN, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(v);
}

/** 0.9123 -> "91.2 %". */
export function fmtPercentOf1(v, digits = 1) {
  return isNum(v) ? `${fmtNumber(v * 100, digits)} %` : DASH;
}

/** 35.2 -> "35 %". */
export function fmtPercent(v, digits = 0) {
  return isNum(v) ? `${fmtNumber(v, digits)} %` : DASH;
}

export function fmtTemp(v) {
  return isNum(v) ? `${fmtNumber(v, 1)} °C` : DASH;
}

export function fmtSpeed(v) {
  return isNum(v) ? `${fmtNumber(v)} samples/s` : DASH;
}

export function fmtBytes(v) {
  if (!isNum(v)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = v;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${fmtNumber(n, i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Seconds as "0.8 s", "12.3 s", "4 min 05 s", "2 h 03 min". */
export function fmtDuration(sec) {
  if (!isNum(sec)) return DASH;
  if (sec < 60) return `${fmtNumber(sec, sec < 10 ? 2 : 1)} s`;
  const total = Math.round(sec);
  if (total < 3600) {
    return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, '0')} s`;
  }
  const hours = Math.floor(total / 3600);
  const mins = Math.floor((total % 3600) / 60);
  if (hours < 48) return `${hours} h ${String(mins).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** An age in seconds as "12 s ago", "5 min ago", "3 h ago", "4 d ago". */
export function fmtAge(sec) {
  if (!isNum(sec)) return 'never';
  const v = Math.max(0, sec);
  if (v < 60) return `${Math.floor(v)} s ago`;
  if (v < 3600) return `${Math.floor(v / 60)} min ago`;
  if (v < 48 * 3600) return `${Math.floor(v / 3600)} h ago`;
  return `${Math.floor(v / 86400)} d ago`;
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
}

/** A timestamp in the reader's locale: "2026-01-01 12:34:56"-like. */
export function fmtDateTime(iso) {
  const t = parseTime(iso);
  if (t === null) return DASH;
  return new Date(t).toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

export function fmtTime(date = new Date()) {
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A <time> element with the exact time as its title. */
export function timeEl(iso, text) {
  if (!iso) return document.createTextNode(text ?? DASH);
  return h('time', { datetime: iso, title: fmtDateTime(iso) }, text ?? fmtDateTime(iso));
}

// ---- shared widgets ------------------------------------------------------------------------

/** A small key=value chip list of labels. */
export function labelChips(labels) {
  const entries = Object.entries(labels || {});
  if (entries.length === 0) return h('span', { class: 'muted' }, DASH);
  return h(
    'ul',
    { class: 'chips', 'aria-label': 'labels' },
    entries.map(([k, v]) => h('li', { class: 'chip' }, `${k}=${v}`)),
  );
}

/** A chip list of plain strings. */
export function chips(items, attrs = {}) {
  return h(
    'ul',
    { class: 'chips', ...attrs },
    items.map((t) => h('li', { class: 'chip' }, t)),
  );
}

/** A <dl> of [term, value] pairs; values that are null/undefined are left out. */
export function defList(pairs, attrs = {}) {
  const dl = h('dl', { class: 'deflist', ...attrs });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined) continue;
    dl.append(h('div', { class: 'deflist-row' }, h('dt', null, term), h('dd', null, value)));
  }
  return dl;
}

/**
 * A scrollable, labelled table: head is a list of [text, numeric?] column headings, rows the
 * <tr> elements of its body.
 */
export function dataTable({ label, testid, head, rows }) {
  return h(
    'div',
    { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' },
    h(
      'table',
      { class: 'table', testid },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          head.map(([text, numeric]) => h('th', { scope: 'col', class: numeric ? 'num' : null }, text)),
        ),
      ),
      h('tbody', null, rows),
    ),
  );
}

/** An alert box (role=alert) that shows an error's message; hidden when message is empty. */
export function alertBox(testid) {
  return h('div', { class: 'alert', role: 'alert', hidden: true, testid });
}

export function showAlert(box, message) {
  if (message) {
    box.textContent = message;
    box.hidden = false;
  } else {
    box.textContent = '';
    box.hidden = true;
  }
}

/** The message of an error from the API (or anything thrown). */
export function errorText(err) {
  if (err && typeof err.detail === 'string' && err.detail) return err.detail;
  if (err && err.message) return err.message;
  return String(err);
}

/**
 * Keep a <tbody>'s rows in step with items without rebuilding rows that did not change (a
 * focused link or button in a row keeps its focus across polls).
 * columns: [{sig(item) -> string, render(item) -> node(s), cls?}], key(item) -> string,
 * rowAttrs(item) -> attributes for the <tr>.
 */
export function syncRows(tbody, items, key, columns, rowAttrs) {
  const old = new Map();
  for (const tr of tbody.children) old.set(tr.dataset.rowKey, tr);
  const rows = items.map((item) => {
    const k = key(item);
    let tr = old.get(k);
    if (!tr) {
      tr = h('tr', rowAttrs ? rowAttrs(item) : null);
      tr.dataset.rowKey = k;
      for (const col of columns) tr.append(h(col.head ? 'th' : 'td', col.head ? { scope: 'row', class: col.cls } : { class: col.cls }));
      tr.sigs = [];
    } else if (rowAttrs) {
      applyAttrs(tr, rowAttrs(item));
    }
    columns.forEach((col, i) => {
      const sig = col.sig(item);
      if (tr.sigs[i] !== sig) {
        fill(tr.children[i], col.render(item));
        tr.sigs[i] = sig;
      }
    });
    return tr;
  });
  const current = Array.from(tbody.children);
  const same = current.length === rows.length && current.every((tr, i) => tr === rows[i]);
  if (!same) tbody.replaceChildren(...rows);
}
