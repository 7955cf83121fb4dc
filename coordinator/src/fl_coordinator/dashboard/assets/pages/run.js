// #/runs/<id>: one run: status and progress, accuracy and loss per round, the devices of each
// round, the final model's downloads; live while it runs.

import { api, download } from '../api.js';
import { TERMINAL_RUN_STATES, stateBadge, stateIcon } from '../badges.js';
import { lineChart } from '../charts.js';
import { nameOf, resolveNames } from '../devices.js';
import {
  DASH,
  Poller,
  alertBox,
  defList,
  errorText,
  fill,
  fmtBytes,
  fmtDuration,
  fmtNumber,
  fmtPercentOf1,
  fmtTime,
  h,
  isNum,
  labelChips,
  showAlert,
  syncRows,
  timeEl,
} from '../dom.js';
import { roundsDone, runDuration } from './runs.js';

const POLL_MS = 2000;

function chartOf(run) {
  const rounds = (run.rounds || []).slice().sort((a, b) => a.round - b.round);
  const pct = (v) => `${fmtNumber(v * 100)} %`;
  return lineChart({
    testid: 'accuracy-chart',
    title: `Run ${run.run_id}: test accuracy and loss per round`,
    x: { label: 'Round', min: 0, max: run.request.num_rounds, integer: true },
    left: { label: 'Test accuracy', min: 0, max: 1, format: pct },
    right: { label: 'Loss', min: 0, format: (v) => fmtNumber(v, v < 10 ? 2 : 0) },
    empty: 'No evaluated round yet',
    series: [
      {
        name: 'Test accuracy',
        axis: 'left',
        cls: 'series-accuracy',
        pointTestId: 'chart-point',
        points: rounds.map((r) => ({ x: r.round, y: r.eval_accuracy })),
        describe: (p) => `Round ${p.x}: test accuracy ${fmtPercentOf1(p.y)}`,
      },
      {
        name: 'Test loss',
        axis: 'right',
        cls: 'series-loss',
        pointRadius: 3,
        points: rounds.map((r) => ({ x: r.round, y: r.eval_loss })),
        describe: (p) => `Round ${p.x}: test loss ${fmtNumber(p.y, 4)}`,
      },
      {
        name: 'Train loss',
        axis: 'right',
        cls: 'series-train',
        dashed: true,
        pointRadius: 3,
        points: rounds.map((r) => ({ x: r.round, y: r.train_loss })),
        describe: (p) => `Round ${p.x}: train loss ${fmtNumber(p.y, 4)}`,
      },
    ],
  });
}

function legend() {
  const item = (cls, label) =>
    h('li', null, h('span', { class: ['swatch', cls], 'aria-hidden': 'true' }), label);
  return h(
    'ul',
    { class: 'legend' },
    item('series-accuracy', 'Test accuracy (left axis)'),
    item('series-loss', 'Test loss (right axis)'),
    item('series-train', 'Train loss, dashed (right axis)'),
  );
}

function deviceList(round) {
  const devices = round.devices || [];
  if (devices.length === 0) return h('span', { class: 'muted' }, round.round === 0 ? 'initial model' : DASH);
  return h(
    'ul',
    { class: 'round-devices' },
    devices.map((d) =>
      h(
        'li',
        null,
        h('a', { href: `#/devices/${encodeURIComponent(d.device_id)}` }, nameOf(d.device_id) || d.device_id),
        h('span', { class: 'sub-inline' }, ` ${fmtDuration(d.train_seconds)}, ${fmtNumber(d.num_examples)} examples`),
      ),
    ),
  );
}

function selectionCell(round) {
  const sel = round.selection || [];
  const rejected = round.rejected_updates || [];
  if (sel.length === 0 && rejected.length === 0) return h('span', { class: 'muted' }, DASH);
  const chosen = sel.filter((d) => d.selected).length;
  return h(
    'details',
    { class: 'selection-details' },
    h(
      'summary',
      null,
      sel.length ? `${chosen} of ${sel.length} selected` : '',
      rejected.length ? `${sel.length ? '; ' : ''}${rejected.length} update${rejected.length === 1 ? '' : 's'} rejected` : '',
    ),
    h(
      'ul',
      { class: 'plain-list' },
      sel.map((d) =>
        h(
          'li',
          null,
          h('span', { class: ['decision', d.selected ? 'decision-yes' : 'decision-no'] }, stateIcon(d.selected ? 'yes' : 'no'), d.selected ? 'selected' : 'not selected'),
          ' ',
          nameOf(d.device_id) || d.device_id,
          d.reason ? `: ${d.reason}` : '',
          isNum(d.predicted_s) ? ` (predicted ${fmtDuration(d.predicted_s)})` : '',
        ),
      ),
      rejected.map((u) =>
        h('li', null, h('strong', null, 'rejected '), `${nameOf(u.device_id) || u.device_id}: ${u.reason}${u.detail ? ` (${u.detail})` : ''}`),
      ),
    ),
  );
}

export function mount(main, ctx) {
  const runId = Number(ctx.match[1]);
  ctx.setTitle(`Run ${runId}`);
  let alive = true;
  let lastChartSig = null;
  let lastSummarySig = null;

  const statusBox = h('span', { class: 'title-badge' });
  const detail = h('p', { class: 'run-detail' });
  const updated = h('p', { class: 'last-updated muted', testid: 'last-updated' }, 'Loading…');
  const error = alertBox('run-error');
  const progress = h('progress', { id: 'run-progress', testid: 'run-progress', value: 0, max: 1 });
  const progressText = h('span', { class: 'progress-text' });
  const stopBox = h('div', { class: 'button-row' });
  const actionStatus = h('p', { class: 'action-status', role: 'status' });
  const summary = h('div');
  const chartBox = h('div', { class: 'chart-box' });
  const downloads = h('div', { class: 'downloads' });
  const downloadStatus = h('p', { class: 'action-status', role: 'status' });
  const downloadError = alertBox('download-error');
  const tbody = h('tbody');
  const privacyHead = h('th', { scope: 'col', class: 'num', hidden: true }, 'ε spent');

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/runs' }, '‹ Runs')),
    h('div', { class: 'page-head' }, h('div', { class: 'title-row' }, h('h1', null, `Run ${runId}`), statusBox), updated),
    detail,
    error,
    h(
      'div',
      { class: 'progress-row' },
      h('label', { for: 'run-progress' }, 'Rounds'),
      progress,
      progressText,
    ),
    ctx.isAdmin ? stopBox : null,
    ctx.isAdmin ? actionStatus : null,
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'chart-title' },
      h('h2', { id: 'chart-title' }, 'Accuracy and loss'),
      chartBox,
      legend(),
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'dl-title' },
      h('h2', { id: 'dl-title' }, 'Model'),
      downloads,
      downloadStatus,
      downloadError,
    ),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'rounds-title' },
      h('h2', { id: 'rounds-title' }, 'Rounds'),
      h(
        'div',
        { class: 'table-wrap', role: 'region', 'aria-label': 'Rounds', tabindex: '0' },
        h(
          'table',
          { class: 'table', testid: 'rounds-table' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              h('th', { scope: 'col', class: 'num' }, 'Round'),
              h('th', { scope: 'col', class: 'num' }, 'Test accuracy'),
              h('th', { scope: 'col', class: 'num' }, 'Test loss'),
              h('th', { scope: 'col', class: 'num' }, 'Train loss'),
              h('th', { scope: 'col', class: 'num' }, 'Duration'),
              h('th', { scope: 'col' }, 'Devices (training time)'),
              h('th', { scope: 'col' }, 'Selection'),
              privacyHead,
            ),
          ),
          tbody,
        ),
      ),
    ),
    h('section', { class: 'panel', 'aria-labelledby': 'req-title' }, h('h2', { id: 'req-title' }, 'Settings'), summary),
  );

  async function fetchFile(kind, button) {
    const suffix = kind === 'onnx' ? 'onnx' : 'pt';
    button.disabled = true;
    showAlert(downloadError, '');
    downloadStatus.textContent =
      kind === 'onnx'
        ? 'Preparing the ONNX export (the first one is validated on the test set: this can take a minute)…'
        : 'Downloading the checkpoint…';
    try {
      const got = await download(`models/${runId}/rounds/latest/${kind}`, `run-${runId}-latest.${suffix}`);
      downloadStatus.textContent = `Downloaded ${got.name} (${fmtBytes(got.size)}).`;
    } catch (err) {
      downloadStatus.textContent = '';
      showAlert(downloadError, `Download failed: ${errorText(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  let downloadsShown = null;
  function renderDownloads(run) {
    const stored = Boolean(run.checkpoint) || (run.rounds || []).some((r) => r.checkpoint);
    if (stored === downloadsShown) return;
    downloadsShown = stored;
    if (!stored) {
      fill(downloads, h('p', { class: 'muted' }, 'No checkpoint is stored for this run yet.'));
      return;
    }
    const pt = h('button', { type: 'button', class: 'btn', testid: 'download-checkpoint' }, 'Download checkpoint (.pt)');
    const onnx = h('button', { type: 'button', class: 'btn', testid: 'download-onnx' }, 'Download ONNX model');
    pt.addEventListener('click', () => fetchFile('checkpoint', pt));
    onnx.addEventListener('click', () => fetchFile('onnx', onnx));
    fill(
      downloads,
      h('p', null, 'The latest stored round (the final model once the run has completed). Every stored version is on the ', h('a', { href: '#/models' }, 'Models'), ' page.'),
      h('div', { class: 'button-row' }, pt, onnx),
    );
  }

  function renderStop(run) {
    if (!ctx.isAdmin) return;
    if (TERMINAL_RUN_STATES.has(run.status)) {
      stopBox.replaceChildren();
      return;
    }
    let button = stopBox.querySelector('[data-testid=action-stop-run]');
    if (!button) {
      button = h('button', { type: 'button', class: 'btn btn-danger', testid: 'action-stop-run' }, 'Stop run');
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          await api.post(`runs/${runId}/stop`);
          actionStatus.textContent = 'Stop requested.';
          showAlert(error, '');
        } catch (err) {
          showAlert(error, `Could not stop the run: ${errorText(err)}`);
          button.disabled = false;
        }
        poller.now();
      });
      stopBox.replaceChildren(button);
    }
    if (run.stop_requested) {
      button.disabled = true;
      button.textContent = 'Stop requested';
    }
  }

  function renderSummary(run) {
    const q = run.request;
    const sig = JSON.stringify([q, run.target_labels, run.app_source, run.created_at, run.finished_at, run.final_accuracy, run.attempt, run.resumed_from_round, run.selection_policy]);
    if (sig === lastSummarySig) return;
    lastSummarySig = sig;
    fill(
      summary,
      defList([
        ['Model', run.app_source && run.app_source !== 'builtin' ? `own app (${run.app_source})` : q.model],
        ['Dataset', q.dataset],
        ['Partitioner', q.partitioner === 'dirichlet' ? `dirichlet (α = ${q.dirichlet_alpha})` : q.partitioner],
        ['Rounds', String(q.num_rounds)],
        ['Minimum devices', String(q.min_devices)],
        ['Local epochs', String(q.local_epochs)],
        ['Max train samples', q.max_train_samples ? fmtNumber(q.max_train_samples) : 'whole partition'],
        ['Selection', run.selection_policy || q.selection],
        ['Devices per round', q.devices_per_round ? String(q.devices_per_round) : 'every eligible device'],
        ['Target labels', labelChips(run.target_labels || q.target_labels)],
        ['Aggregation', q.aggregation],
        ['Privacy', q.privacy],
        ['Final accuracy', fmtPercentOf1(run.final_accuracy)],
        ['Attempt', run.attempt > 1 ? `${run.attempt} (resumed from round ${run.resumed_from_round})` : null],
        ['Started', timeEl(run.created_at)],
        ['Finished', run.finished_at ? timeEl(run.finished_at) : 'not yet'],
        ['Duration', fmtDuration(runDuration(run))],
      ]),
    );
  }

  async function refresh() {
    let run;
    try {
      run = await api.get(`runs/${runId}`);
    } catch (err) {
      if (!alive) return;
      showAlert(error, err.status === 404 ? `There is no run ${runId}.` : errorText(err));
      if (err.status === 404) poller.stop();
      return;
    }
    if (!alive) return;
    const rounds = (run.rounds || []).slice().sort((a, b) => a.round - b.round);
    const ids = rounds.flatMap((r) => [
      ...(r.devices || []).map((d) => d.device_id),
      ...(r.selection || []).map((d) => d.device_id),
    ]);
    await resolveNames(ids);
    if (!alive) return;
    showAlert(error, '');
    fill(statusBox, stateBadge(run.status, 'run-status'));
    detail.textContent = run.detail || '';
    detail.hidden = !run.detail;
    const done = roundsDone(run);
    progress.setAttribute('max', String(run.request.num_rounds));
    progress.setAttribute('value', String(done));
    progressText.textContent = `${done} of ${run.request.num_rounds} rounds`;
    renderStop(run);
    const chartSig = JSON.stringify(rounds.map((r) => [r.round, r.eval_accuracy, r.eval_loss, r.train_loss]));
    if (chartSig !== lastChartSig) {
      lastChartSig = chartSig;
      fill(chartBox, chartOf(run));
    }
    renderDownloads(run);
    const privacy = rounds.some((r) => r.privacy);
    privacyHead.hidden = !privacy;
    const columns = [
      { cls: 'num', sig: (r) => String(r.round), render: (r) => (r.round === 0 ? '0 (initial)' : String(r.round)) },
      { cls: 'num', sig: (r) => String(r.eval_accuracy), render: (r) => fmtPercentOf1(r.eval_accuracy, 2) },
      { cls: 'num', sig: (r) => String(r.eval_loss), render: (r) => (isNum(r.eval_loss) ? fmtNumber(r.eval_loss, 4) : DASH) },
      { cls: 'num', sig: (r) => String(r.train_loss), render: (r) => (isNum(r.train_loss) ? fmtNumber(r.train_loss, 4) : DASH) },
      { cls: 'num', sig: (r) => String(r.seconds), render: (r) => (r.round === 0 && !r.seconds ? DASH : fmtDuration(r.seconds)) },
      {
        sig: (r) => JSON.stringify((r.devices || []).map((d) => [d.device_id, nameOf(d.device_id), d.train_seconds, d.num_examples])),
        render: deviceList,
      },
      {
        sig: (r) => JSON.stringify([r.selection, r.rejected_updates, (r.selection || []).map((d) => nameOf(d.device_id))]),
        render: selectionCell,
      },
      {
        cls: 'num',
        sig: (r) => `${privacy}|${r.privacy ? r.privacy.epsilon : ''}`,
        render: (r) => (r.privacy && isNum(r.privacy.epsilon) ? `ε ${fmtNumber(r.privacy.epsilon, 2)}` : DASH),
      },
    ];
    syncRows(tbody, rounds, (r) => String(r.round), columns, (r) => ({ 'data-round': r.round }));
    for (const tr of tbody.children) tr.lastElementChild.hidden = !privacy;
    renderSummary(run);
    updated.textContent = TERMINAL_RUN_STATES.has(run.status)
      ? `Run ${run.status}; checked ${fmtTime()}`
      : `Updated ${fmtTime()} (every 2 s while it runs)`;
    if (TERMINAL_RUN_STATES.has(run.status)) poller.stop();
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
