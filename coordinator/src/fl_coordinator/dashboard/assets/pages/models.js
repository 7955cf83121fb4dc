// #/models: every stored model version with its metrics, and its downloads.

import { api, download } from '../api.js';
import {
  DASH,
  alertBox,
  errorText,
  fmtBytes,
  fmtDateTime,
  fmtNumber,
  fmtPercentOf1,
  fmtTime,
  h,
  isNum,
  showAlert,
  syncRows,
} from '../dom.js';

export function mount(main, ctx) {
  ctx.setTitle('Models');
  let alive = true;
  const updated = h('p', { class: 'last-updated muted', testid: 'last-updated' }, 'Loading…');
  const error = alertBox('models-error');
  const status = h('p', { class: 'action-status', role: 'status' });
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true }, 'No model is stored yet: runs store a checkpoint per round.');
  const refreshButton = h('button', { type: 'button', class: 'btn', onclick: () => refresh() }, 'Refresh');
  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Models'), refreshButton, updated),
    error,
    status,
    h(
      'div',
      { class: 'table-wrap', role: 'region', 'aria-label': 'Model versions', tabindex: '0' },
      h(
        'table',
        { class: 'table', testid: 'models-table' },
        h('caption', { class: 'visually-hidden' }, 'Stored model versions, newest run first'),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { scope: 'col' }, 'Run'),
            h('th', { scope: 'col', class: 'num' }, 'Round'),
            h('th', { scope: 'col' }, 'Tags'),
            h('th', { scope: 'col' }, 'Architecture'),
            h('th', { scope: 'col' }, 'Dataset'),
            h('th', { scope: 'col', class: 'num' }, 'Test accuracy'),
            h('th', { scope: 'col', class: 'num' }, 'Test loss'),
            h('th', { scope: 'col', class: 'num' }, 'Size'),
            h('th', { scope: 'col' }, 'SHA-256'),
            h('th', { scope: 'col' }, 'Stored'),
            h('th', { scope: 'col' }, 'ONNX export'),
            h('th', { scope: 'col' }, 'Download'),
          ),
        ),
        tbody,
      ),
    ),
    empty,
  );

  async function fetchFile(version, kind, button) {
    const suffix = kind === 'onnx' ? 'onnx' : 'pt';
    button.disabled = true;
    showAlert(error, '');
    status.textContent =
      kind === 'onnx'
        ? `Preparing the ONNX export of run ${version.run_id} round ${version.round} (can take a minute)…`
        : `Downloading run ${version.run_id} round ${version.round}…`;
    try {
      const got = await download(
        `models/${version.run_id}/rounds/${version.round}/${kind}`,
        `run-${version.run_id}-round-${version.round}.${suffix}`,
      );
      status.textContent = `Downloaded ${got.name} (${fmtBytes(got.size)}).`;
      if (kind === 'onnx') refresh();
    } catch (err) {
      status.textContent = '';
      showAlert(error, `Download failed: ${errorText(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  const columns = [
    { sig: (v) => String(v.run_id), render: (v) => h('a', { href: `#/runs/${v.run_id}` }, `Run ${v.run_id}`) },
    { cls: 'num', sig: (v) => String(v.round), render: (v) => String(v.round) },
    {
      sig: (v) => `${v.best}|${v.latest}`,
      render: (v) => [
        v.best ? h('span', { class: 'tag tag-ok' }, 'best') : null,
        v.latest ? h('span', { class: 'tag' }, 'latest') : null,
      ],
    },
    { sig: (v) => `${v.architecture}|${v.num_classes}`, render: (v) => `${v.architecture} (${v.num_classes} classes)` },
    { sig: (v) => v.dataset || '', render: (v) => v.dataset || DASH },
    { cls: 'num', sig: (v) => String(v.eval_accuracy), render: (v) => fmtPercentOf1(v.eval_accuracy, 2) },
    { cls: 'num', sig: (v) => String(v.eval_loss), render: (v) => (isNum(v.eval_loss) ? fmtNumber(v.eval_loss, 4) : DASH) },
    { cls: 'num', sig: (v) => String(v.size_bytes), render: (v) => fmtBytes(v.size_bytes) },
    { sig: (v) => v.sha256, render: (v) => h('code', { title: v.sha256 }, `${v.sha256.slice(0, 12)}…`) },
    { sig: (v) => v.created_at, render: (v) => h('time', { datetime: v.created_at }, fmtDateTime(v.created_at)) },
    {
      sig: (v) => JSON.stringify(v.onnx),
      render: (v) =>
        v.onnx
          ? h(
              'span',
              { title: `opset ${v.onnx.opset}, ${v.onnx.samples} test samples, sha256 ${v.onnx.sha256}` },
              `validated: ${fmtPercentOf1(v.onnx.onnx_accuracy, 2)} (torch ${fmtPercentOf1(v.onnx.torch_accuracy, 2)})`,
            )
          : h('span', { class: 'muted' }, 'on first download'),
    },
    {
      sig: (v) => `${v.run_id}/${v.round}`,
      render: (v) => {
        const pt = h('button', { type: 'button', class: 'btn btn-small', testid: 'model-download-checkpoint', 'aria-label': `Download run ${v.run_id} round ${v.round} checkpoint` }, '.pt');
        const onnx = h('button', { type: 'button', class: 'btn btn-small', testid: 'model-download-onnx', 'aria-label': `Download run ${v.run_id} round ${v.round} as ONNX` }, '.onnx');
        pt.addEventListener('click', () => fetchFile(v, 'checkpoint', pt));
        onnx.addEventListener('click', () => fetchFile(v, 'onnx', onnx));
        return h('div', { class: 'button-row nowrap' }, pt, onnx);
      },
    },
  ];

  async function refresh() {
    let versions;
    try {
      versions = await api.get('models');
    } catch (err) {
      if (alive) showAlert(error, errorText(err));
      return;
    }
    if (!alive) return;
    showAlert(error, '');
    versions.sort((a, b) => b.run_id - a.run_id || b.round - a.round);
    syncRows(tbody, versions, (v) => `${v.run_id}/${v.round}`, columns, (v) => ({
      'data-run-id': v.run_id,
      'data-round': v.round,
    }));
    empty.hidden = versions.length > 0;
    updated.textContent = `Updated ${fmtTime()}`;
  }

  refresh();
  return {
    unmount() {
      alive = false;
    },
  };
}
