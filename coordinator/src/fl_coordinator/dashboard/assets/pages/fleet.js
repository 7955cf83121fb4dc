// #/fleet: counts by state and the device table (server-side sort, filter and pages), live.

import { api } from '../api.js';
import { DEVICE_STATES, stateBadge, stateIcon } from '../badges.js';
import { accelerator, archModel, cpuModel, powerMode, rememberName, speedOf } from '../devices.js';
import {
  DASH,
  Poller,
  alertBox,
  debounce,
  errorText,
  fmtAge,
  fmtDateTime,
  fmtSpeed,
  fmtTemp,
  fmtTime,
  h,
  isNum,
  labelChips,
  parseTime,
  showAlert,
  syncRows,
} from '../dom.js';

const LIMIT = 50;
const POLL_MS = 3000;
const SORT_KEYS = ['name', 'last_heartbeat', 'arch', 'speed', 'registered'];
const LABELS = {
  online: 'Online',
  stale: 'Stale',
  offline: 'Offline',
  drained: 'Drained',
  revoked: 'Revoked',
  total: 'Total',
};

function validSort(raw) {
  if (!raw) return 'registered';
  const key = raw.replace(/^-/, '');
  return SORT_KEYS.includes(key) ? raw : 'registered';
}

export function mount(main, ctx) {
  ctx.setTitle('Fleet');
  const p = ctx.params;
  const view = {
    status: DEVICE_STATES.includes(p.get('status')) ? p.get('status') : '',
    q: (p.get('q') || '').slice(0, 128),
    sort: validSort(p.get('sort')),
    offset: Math.max(0, Number.parseInt(p.get('offset') || '0', 10) || 0),
  };
  let alive = true;
  let skewMs = 0; // server clock minus ours, from the summary's server_time
  let seq = 0;

  // ---- counts -----------------------------------------------------------------------------
  const counts = {};
  const cards = [...DEVICE_STATES, 'total'].map((st) => {
    const value = h('span', { class: 'count-value', testid: `count-${st}` }, '–');
    counts[st] = value;
    return h(
      'li',
      null,
      h(
        'button',
        {
          type: 'button',
          class: ['count-card', `count-${st}`],
          'data-state': st,
          title: st === 'total' ? 'Show every device' : `Show ${st} devices only`,
          onclick: () => setStatus(st === 'total' ? '' : st),
        },
        h('span', { class: 'count-label' }, st === 'total' ? null : stateIcon(st), LABELS[st]),
        value,
      ),
    );
  });
  const countList = h('ul', { class: 'counts' }, cards);

  // ---- filters ----------------------------------------------------------------------------
  const statusSelect = h(
    'select',
    { id: 'filter-status', name: 'status', class: 'input', testid: 'filter-status' },
    h('option', { value: '' }, 'All states'),
    DEVICE_STATES.map((st) => h('option', { value: st }, st)),
  );
  statusSelect.value = view.status;
  statusSelect.addEventListener('change', () => setStatus(statusSelect.value));
  const search = h('input', {
    id: 'filter-search',
    name: 'q',
    type: 'search',
    class: 'input',
    testid: 'filter-search',
    placeholder: 'name, hostname or id',
    maxlength: 128,
    autocomplete: 'off',
    spellcheck: 'false',
  });
  search.value = view.q;
  const onSearch = debounce(() => {
    const q = search.value.trim();
    if (q === view.q) return;
    view.q = q;
    view.offset = 0;
    changed();
  }, 300);
  search.addEventListener('input', onSearch);
  const updated = h('p', { class: 'last-updated muted', testid: 'last-updated' }, 'Loading…');
  const error = alertBox('fleet-error');

  // ---- table ------------------------------------------------------------------------------
  const sortHeads = new Map();
  const sortable = (key, label, cls) => {
    const indicator = h('span', { class: 'sort-ind', 'aria-hidden': 'true' });
    const button = h(
      'button',
      { type: 'button', class: 'sort-btn', 'data-sort': key, onclick: () => toggleSort(key) },
      label,
      indicator,
    );
    const th = h('th', { scope: 'col', class: ['sortable', cls], 'aria-sort': 'none' }, button);
    sortHeads.set(key, { th, indicator });
    return th;
  };
  const plain = (label, cls) => h('th', { scope: 'col', class: cls }, label);
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'table devices', testid: 'device-table' },
    h('caption', { class: 'visually-hidden' }, 'Devices, one page of the fleet'),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        sortable('name', 'Name'),
        plain('State'),
        sortable('last_heartbeat', 'Last heartbeat'),
        sortable('arch', 'Arch / model'),
        plain('Accelerator'),
        sortable('speed', 'Speed', 'num'),
        plain('Power mode'),
        plain('Temp.', 'num'),
        plain('SuperNode'),
        plain('Activity'),
        plain('Labels'),
        sortable('registered', 'Enrolled'),
      ),
    ),
    tbody,
  );
  const empty = h('p', { class: 'empty', hidden: true, testid: 'fleet-empty' });
  const prev = h(
    'button',
    { type: 'button', class: 'btn', testid: 'page-prev', disabled: true, onclick: () => page(-1) },
    '‹ Previous',
  );
  const next = h(
    'button',
    { type: 'button', class: 'btn', testid: 'page-next', disabled: true, onclick: () => page(1) },
    'Next ›',
  );
  const info = h('span', { class: 'page-info', testid: 'page-info' }, '…');

  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Fleet'), updated),
    h(
      'section',
      { class: 'counts-section', 'aria-labelledby': 'counts-title' },
      h('h2', { id: 'counts-title', class: 'visually-hidden' }, 'Devices by state'),
      h('div', { 'aria-live': 'polite' }, countList),
    ),
    h(
      'div',
      { class: 'filters', role: 'search', 'aria-label': 'Filter devices' },
      h('div', { class: 'field' }, h('label', { for: 'filter-status' }, 'State'), statusSelect),
      h('div', { class: 'field field-grow' }, h('label', { for: 'filter-search' }, 'Search'), search),
    ),
    error,
    h(
      'div',
      { class: 'table-wrap', role: 'region', 'aria-label': 'Device table', tabindex: '0' },
      table,
    ),
    empty,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, info, next),
  );

  // ---- behaviour --------------------------------------------------------------------------
  function syncUrl() {
    ctx.setQuery({
      status: view.status,
      q: view.q,
      sort: view.sort === 'registered' ? '' : view.sort,
      offset: view.offset || '',
    });
  }

  function changed() {
    syncUrl();
    markSort();
    markCards();
    poller.now();
  }

  function setStatus(st) {
    view.status = st;
    statusSelect.value = st;
    view.offset = 0;
    changed();
  }

  function toggleSort(key) {
    view.sort = view.sort === key ? `-${key}` : key;
    view.offset = 0;
    changed();
  }

  function page(direction) {
    view.offset = Math.max(0, view.offset + direction * LIMIT);
    changed();
  }

  function markSort() {
    const key = view.sort.replace(/^-/, '');
    const desc = view.sort.startsWith('-');
    for (const [k, { th, indicator }] of sortHeads) {
      if (k === key) {
        th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
        indicator.textContent = desc ? ' ▼' : ' ▲';
      } else {
        th.setAttribute('aria-sort', 'none');
        indicator.textContent = '';
      }
    }
  }

  function markCards() {
    for (const card of countList.querySelectorAll('button[data-state]')) {
      const st = card.dataset.state;
      const on = st === 'total' ? view.status === '' : view.status === st;
      card.setAttribute('aria-pressed', String(on));
    }
  }

  const ageOf = (device) => {
    const t = parseTime(device.last_heartbeat_at);
    return t === null ? null : (Date.now() + skewMs - t) / 1000;
  };

  const columns = [
    {
      sig: (d) => `${d.name}|${d.hostname}`,
      render: (d) => [
        h('a', { href: `#/devices/${encodeURIComponent(d.device_id)}`, class: 'device-link' }, d.name),
        d.hostname && d.hostname !== d.name ? h('span', { class: 'sub' }, d.hostname) : null,
      ],
    },
    {
      sig: (d) => `${d.status}|${d.status_reason}`,
      render: (d) => stateBadge(d.status, 'state', d.status_reason || null),
    },
    {
      sig: (d) => `${fmtAge(ageOf(d))}|${d.last_heartbeat_at}`,
      render: (d) =>
        d.last_heartbeat_at
          ? h('time', { datetime: d.last_heartbeat_at, title: fmtDateTime(d.last_heartbeat_at) }, fmtAge(ageOf(d)))
          : h('span', { class: 'muted' }, 'never'),
    },
    {
      sig: (d) => `${archModel(d)}|${cpuModel(d)}`,
      render: (d) => [archModel(d), cpuModel(d) ? h('span', { class: 'sub' }, cpuModel(d)) : null],
    },
    {
      sig: (d) => JSON.stringify(accelerator(d)),
      render: (d) => {
        const acc = accelerator(d);
        return [
          acc.kind,
          acc.cuda === true ? h('span', { class: 'tag tag-ok' }, 'CUDA ok') : null,
          acc.cuda === false ? h('span', { class: 'tag tag-warn' }, 'no CUDA') : null,
        ];
      },
    },
    { cls: 'num', sig: (d) => String(speedOf(d)), render: (d) => fmtSpeed(speedOf(d)) },
    { sig: (d) => powerMode(d), render: (d) => powerMode(d) },
    {
      cls: 'num',
      sig: (d) => String(d.last_status ? d.last_status.max_temp_c : null),
      render: (d) => {
        const t = d.last_status ? d.last_status.max_temp_c : null;
        return h('span', { class: isNum(t) && t >= 80 ? 'hot' : null }, fmtTemp(t));
      },
    },
    {
      sig: (d) => `${d.supernode_state}|${d.last_status ? d.last_status.supernode_restarts : 0}`,
      render: (d) => {
        const restarts = d.last_status ? d.last_status.supernode_restarts : 0;
        return [
          d.supernode_state || DASH,
          restarts ? h('span', { class: 'sub' }, `${restarts} restart${restarts === 1 ? '' : 's'}`) : null,
        ];
      },
    },
    {
      sig: (d) => `${d.last_status ? d.last_status.activity : ''}|${d.status}`,
      render: (d) => {
        const activity = d.last_status ? d.last_status.activity : '';
        if (!activity) return h('span', { class: 'muted' }, DASH);
        const live = d.status === 'online' || d.status === 'stale';
        return h('span', { class: live ? null : 'muted', title: live ? null : 'last reported' }, activity);
      },
    },
    { sig: (d) => JSON.stringify(d.labels || {}), render: (d) => labelChips(d.labels) },
    {
      sig: (d) => d.registered_at,
      render: (d) => h('time', { datetime: d.registered_at }, fmtDateTime(d.registered_at)),
    },
  ];

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  async function refresh() {
    const mine = ++seq;
    const query = {
      envelope: 'true',
      limit: LIMIT,
      offset: view.offset,
      sort: view.sort,
      q: view.q,
      status: view.status,
    };
    const [summary, listing] = await Promise.allSettled([
      api.get('fleet/summary'),
      api.get('devices', { query }),
    ]);
    if (!alive || mine !== seq) return;
    const problems = [];
    if (summary.status === 'fulfilled') {
      const sum = summary.value;
      const server = parseTime(sum.server_time);
      if (server !== null) skewMs = server - Date.now();
      for (const st of [...DEVICE_STATES, 'total']) {
        setText(counts[st], isNum(sum[st]) ? String(sum[st]) : '–');
      }
    } else {
      problems.push(`Counts: ${errorText(summary.reason)}`);
    }
    if (listing.status === 'fulfilled') {
      const pageData = listing.value;
      const items = Array.isArray(pageData) ? pageData : pageData.items;
      const total = Array.isArray(pageData) ? items.length : pageData.total;
      if (items.length === 0 && total > 0 && view.offset > 0) {
        // The page emptied (devices left the filter): go to the last one.
        view.offset = Math.max(0, Math.floor((total - 1) / LIMIT) * LIMIT);
        syncUrl();
        poller.now();
        return;
      }
      items.forEach((d) => rememberName(d.device_id, d.name));
      syncRows(tbody, items, (d) => d.device_id, columns, (d) => ({ 'data-device-id': d.device_id }));
      setText(
        info,
        total === 0 ? '0 of 0' : `${view.offset + 1}–${view.offset + items.length} of ${total}`,
      );
      prev.disabled = view.offset === 0;
      next.disabled = view.offset + items.length >= total;
      empty.hidden = items.length > 0;
      empty.textContent =
        view.q || view.status ? 'No devices match these filters.' : 'No device has enrolled yet.';
    } else {
      problems.push(`Devices: ${errorText(listing.reason)}`);
    }
    showAlert(error, problems.join(' · '));
    if (problems.length === 0) updated.textContent = `Updated ${fmtTime()}`;
  }

  const poller = new Poller(refresh, POLL_MS);
  markSort();
  markCards();
  poller.start();

  return {
    unmount() {
      alive = false;
      onSearch.cancel();
      poller.stop();
    },
  };
}
