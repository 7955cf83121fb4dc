// #/runs: every training run, newest first, live.

import { api } from '../api.js';
import { stateBadge } from '../badges.js';
import {
  DASH,
  Poller,
  alertBox,
  errorText,
  fmtDateTime,
  fmtDuration,
  fmtPercentOf1,
  fmtTime,
  h,
  parseTime,
  showAlert,
  syncRows,
} from '../dom.js';

const POLL_MS = 3000;

/** Rounds a run has finished (round 0 is the initial model). */
export function roundsDone(run) {
  const done = (run.rounds || []).reduce((m, r) => Math.max(m, r.round), 0);
  return Math.min(done, run.request.num_rounds);
}

export function runDuration(run) {
  const start = parseTime(run.created_at);
  const end = parseTime(run.finished_at);
  if (start === null) return null;
  return ((end === null ? Date.now() : end) - start) / 1000;
}

export function mount(main, ctx) {
  ctx.setTitle('Runs');
  let alive = true;
  const updated = h('p', { class: 'last-updated muted', testid: 'last-updated' }, 'Loading…');
  const error = alertBox('runs-error');
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true }, 'No training run yet.');
  const table = h(
    'table',
    { class: 'table', testid: 'runs-table' },
    h('caption', { class: 'visually-hidden' }, 'Training runs, newest first'),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', { scope: 'col' }, 'Run'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col' }, 'Progress'),
        h('th', { scope: 'col' }, 'Model'),
        h('th', { scope: 'col' }, 'Dataset'),
        h('th', { scope: 'col' }, 'Selection'),
        h('th', { scope: 'col', class: 'num' }, 'Final accuracy'),
        h('th', { scope: 'col' }, 'Started'),
        h('th', { scope: 'col', class: 'num' }, 'Duration'),
        h('th', { scope: 'col' }, 'Detail'),
      ),
    ),
    tbody,
  );
  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Runs'),
      ctx.isAdmin ? h('a', { href: '#/start', class: 'btn btn-primary' }, 'Start training') : null,
      updated,
    ),
    error,
    h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Runs', tabindex: '0' }, table),
    empty,
  );

  const columns = [
    {
      sig: (r) => String(r.run_id),
      render: (r) => h('a', { href: `#/runs/${r.run_id}` }, `Run ${r.run_id}`),
    },
    {
      sig: (r) => `${r.status}|${r.stop_requested}`,
      render: (r) => [
        stateBadge(r.status, 'run-status'),
        r.stop_requested && !['completed', 'failed', 'stopped'].includes(r.status)
          ? h('span', { class: 'sub' }, 'stop requested')
          : null,
      ],
    },
    {
      sig: (r) => `${roundsDone(r)}/${r.request.num_rounds}`,
      render: (r) => [
        h('progress', {
          value: roundsDone(r),
          max: r.request.num_rounds,
          class: 'mini-progress',
          'aria-label': `Run ${r.run_id} progress`,
        }),
        h('span', { class: 'sub' }, `${roundsDone(r)} of ${r.request.num_rounds} rounds`),
      ],
    },
    {
      sig: (r) => `${r.request.model}|${r.app_source}`,
      render: (r) => (r.app_source && r.app_source !== 'builtin' ? `own app (${r.app_source})` : r.request.model),
    },
    { sig: (r) => r.request.dataset, render: (r) => r.request.dataset },
    { sig: (r) => r.selection_policy || '', render: (r) => r.selection_policy || DASH },
    { cls: 'num', sig: (r) => String(r.final_accuracy), render: (r) => fmtPercentOf1(r.final_accuracy) },
    {
      sig: (r) => r.created_at,
      render: (r) => h('time', { datetime: r.created_at }, fmtDateTime(r.created_at)),
    },
    {
      cls: 'num',
      sig: (r) => fmtDuration(runDuration(r)),
      render: (r) => fmtDuration(runDuration(r)),
    },
    { cls: 'detail-cell', sig: (r) => r.detail || '', render: (r) => r.detail || DASH },
  ];

  async function refresh() {
    let runs;
    try {
      runs = await api.get('runs');
    } catch (err) {
      if (alive) showAlert(error, errorText(err));
      return;
    }
    if (!alive) return;
    showAlert(error, '');
    syncRows(tbody, runs, (r) => String(r.run_id), columns, (r) => ({ 'data-run-id': r.run_id }));
    empty.hidden = runs.length > 0;
    updated.textContent = `Updated ${fmtTime()}`;
  }

  const poller = new Poller(refresh, POLL_MS);
  poller.start();
  return {
    unmount() {
      alive = false;
      poller.stop();
    },
  };
}
