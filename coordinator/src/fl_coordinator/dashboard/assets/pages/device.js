// #/devices/<id>: one device: state and actions, live status, heartbeat sparklines,
// capabilities in full, the rounds it trained in and why it was (not) selected.

import { api } from '../api.js';
import { stateBadge, stateIcon } from '../badges.js';
import { sparkline } from '../charts.js';
import { accelerator, archModel, powerMode, rememberName, speedOf } from '../devices.js';
import {
  DASH,
  Poller,
  alertBox,
  chips,
  dataTable,
  defList,
  errorText,
  fill,
  fmtAge,
  fmtBytes,
  fmtDateTime,
  fmtDuration,
  fmtNumber,
  fmtPercent,
  fmtSpeed,
  fmtTemp,
  fmtTime,
  h,
  isNum,
  labelChips,
  parseTime,
  showAlert,
  timeEl,
} from '../dom.js';

const POLL_MS = 5000;
const WINDOWS = { '1h': 'last hour', '24h': 'last 24 hours', '7d': 'last 7 days' };

/** A section re-rendered only when its signature changes (focus inside it survives polls). */
function region(attrs) {
  const el = h('section', attrs);
  let sig = null;
  return {
    el,
    update(nextSig, render) {
      if (nextSig === sig) return;
      sig = nextSig;
      fill(el, render());
    },
  };
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

function capabilityCards(caps) {
  const cards = [];
  const card = (title, ...body) => h('div', { class: 'cap-card' }, h('h3', null, title), ...body);
  const id = caps.identity || {};
  cards.push(
    card(
      'System',
      defList([
        ['OS', id.os_pretty_name || [id.os_name, id.os_version].filter(Boolean).join(' ') || DASH],
        ['Kernel', id.kernel || DASH],
        ['Architecture', id.arch || DASH],
        ['Python', id.python || DASH],
        ['Agent', id.agent_version || DASH],
        ['Flower', id.flwr_version || DASH],
      ]),
    ),
  );
  const cpu = caps.cpu || {};
  const mem = caps.memory || {};
  const disk = caps.disk || {};
  cards.push(
    card(
      'CPU and memory',
      defList([
        ['CPU', cpu.model || DASH],
        ['Cores', cpu.cores ? String(cpu.cores) : DASH],
        ['Max clock', isNum(cpu.max_freq_mhz) ? `${fmtNumber(cpu.max_freq_mhz)} MHz` : DASH],
        ['Memory', fmtBytes(mem.total_bytes)],
        ['Available', fmtBytes(mem.available_bytes)],
        ['Disk', disk.path ? `${fmtBytes(disk.free_bytes)} free of ${fmtBytes(disk.total_bytes)} (${disk.path})` : DASH],
      ]),
    ),
  );
  const gpus = caps.nvidia_gpus || [];
  const jetson = caps.jetson;
  const cuda = caps.cuda || {};
  const accel = [];
  gpus.forEach((g, i) =>
    accel.push([
      gpus.length > 1 ? `GPU ${i}` : 'GPU',
      `${g.name || 'NVIDIA GPU'}${isNum(g.memory_total_mib) ? `, ${fmtNumber(g.memory_total_mib)} MiB` : ''}${g.driver_version ? `, driver ${g.driver_version}` : ''}`,
    ]),
  );
  if (jetson) {
    accel.push(['Jetson', jetson.model || 'Jetson']);
    if (jetson.soc) accel.push(['SoC', jetson.soc]);
    if (jetson.module_part_number) accel.push(['Module', jetson.module_part_number]);
    if (jetson.l4t_release) accel.push(['L4T', jetson.l4t_release]);
    if (jetson.jetpack) accel.push(['JetPack', jetson.jetpack]);
    if (jetson.power_mode_name || isNum(jetson.power_mode_id)) {
      accel.push(['Power mode', `${jetson.power_mode_name || ''}${isNum(jetson.power_mode_id) ? ` (${jetson.power_mode_id})` : ''}`.trim()]);
    }
    const f = jetson.gpu_freq_hz;
    if (f && (isNum(f.max) || isNum(f.cur))) {
      const mhz = (v) => (isNum(v) ? `${fmtNumber(v / 1e6)} MHz` : DASH);
      accel.push(['GPU clock', `${mhz(f.cur)} (${mhz(f.min)}–${mhz(f.max)})`]);
    }
  }
  if (!gpus.length && !jetson) accel.push(['Accelerator', 'none (CPU only)']);
  accel.push(['CUDA', cuda.cuda || DASH], ['cuDNN', cuda.cudnn || DASH], ['TensorRT', cuda.tensorrt || DASH]);
  accel.push(['PyTorch', cuda.torch || DASH]);
  accel.push(['Torch can use CUDA', cuda.torch_cuda_ok ? 'yes' : 'no']);
  cards.push(card('Accelerators', defList(accel)));

  const ort = caps.onnxruntime || {};
  const verified = ort.verified_providers || [];
  const failed = Object.entries(ort.failed_providers || {});
  cards.push(
    card(
      'ONNX Runtime',
      defList([
        ['Version', ort.version || DASH],
        [
          'Verified providers',
          h(
            'div',
            { testid: 'onnx-providers' },
            verified.length ? chips(verified, { class: 'chips chips-ok' }) : h('span', { class: 'muted' }, 'none verified'),
          ),
        ],
        ['Compiled in', (ort.compiled_providers || []).length ? chips(ort.compiled_providers) : DASH],
        [
          'Failed',
          failed.length
            ? h('ul', { class: 'plain-list' }, failed.map(([p, why]) => h('li', null, h('strong', null, p), `: ${why}`)))
            : DASH,
        ],
      ]),
    ),
  );
  const sp = caps.speed || {};
  cards.push(
    card(
      'Speed score',
      defList([
        ['Training', `${fmtSpeed(sp.torch_train_samples_per_s)}${sp.torch_model ? ` (${sp.torch_model})` : ''}`],
        ['ONNX inference', `${fmtSpeed(sp.onnx_infer_samples_per_s)}${sp.onnx_provider ? ` (${sp.onnx_provider})` : ''}`],
        ['Round trip to coordinator', isNum(sp.coordinator_rtt_ms) ? `${fmtNumber(sp.coordinator_rtt_ms, 1)} ms` : DASH],
        ['Benchmark time', isNum(sp.seconds) ? `${fmtNumber(sp.seconds, 1)} s of ${fmtNumber(sp.budget_s, 0)} s budget` : DASH],
      ]),
    ),
  );
  const zones = caps.thermal_zones || [];
  cards.push(
    card(
      'Thermal zones',
      zones.length
        ? h('ul', { class: 'plain-list' }, zones.map((z) => h('li', null, `${z.type || z.name}: ${fmtTemp(z.temp_c)}`)))
        : h('p', { class: 'muted' }, 'none readable'),
    ),
  );
  const errors = caps.probe_errors || [];
  cards.push(
    card(
      'Probe',
      defList([
        ['Probed', caps.probed_at ? timeEl(caps.probed_at) : DASH],
        ['Probe time', isNum(caps.probe_seconds) ? `${fmtNumber(caps.probe_seconds, 1)} s` : DASH],
        ['Schema', caps.schema_version || DASH],
      ]),
      errors.length
        ? h(
            'div',
            null,
            h('h4', null, 'Could not read'),
            h('ul', { class: 'plain-list' }, errors.map((e) => h('li', null, h('strong', null, e.what), `: ${e.error}`))),
          )
        : null,
    ),
  );
  return h('div', { class: 'cap-grid' }, cards);
}

function sparkCard(title, testid, history, key, opts) {
  const points = history.map((p) => ({ t: parseTime(p.at), v: p[key] }));
  const values = points.map((p) => p.v).filter(isNum);
  const last = values.length ? values[values.length - 1] : null;
  const lo = values.length ? Math.min(...values) : null;
  const hi = values.length ? Math.max(...values) : null;
  const label = values.length
    ? `${title}: latest ${opts.format(last)}, lowest ${opts.format(lo)}, highest ${opts.format(hi)}`
    : `${title}: no data`;
  return h(
    'figure',
    { class: 'spark-card' },
    h(
      'figcaption',
      null,
      h('span', { class: 'spark-title' }, title),
      h('span', { class: 'spark-value' }, values.length ? opts.format(last) : 'no data'),
    ),
    sparkline(points, { testid, label, min: opts.min, max: opts.max }),
    h(
      'div',
      { class: 'spark-range muted' },
      values.length ? `min ${opts.format(lo)} · max ${opts.format(hi)} · ${values.length} points` : ' ',
    ),
  );
}

export function mount(main, ctx) {
  let deviceId;
  try {
    deviceId = decodeURIComponent(ctx.match[1]);
  } catch {
    deviceId = ctx.match[1];
  }
  ctx.setTitle(`Device ${deviceId}`);
  let alive = true;
  let windowKey = WINDOWS[ctx.params.get('history')] ? ctx.params.get('history') : '1h';
  let skewMs = 0;

  const title = h('h1', { class: 'device-title', testid: 'device-name' }, deviceId);
  const badgeBox = h('span', { class: 'title-badge' });
  const reason = h('p', { class: 'status-reason', hidden: true });
  const updated = h('p', { class: 'last-updated muted', testid: 'last-updated' }, 'Loading…');
  const error = alertBox('device-error');
  const actionStatus = h('p', { class: 'action-status', role: 'status' });
  const actions = region({ class: 'actions', 'aria-label': 'Actions' });
  const now = region({ class: 'panel', 'aria-labelledby': 'now-title' });
  const sparks = h('div', { class: 'spark-grid' });
  const windowSelect = h(
    'select',
    { id: 'history-window', class: 'input', testid: 'history-window' },
    Object.entries(WINDOWS).map(([k, label]) => h('option', { value: k }, label)),
  );
  windowSelect.value = windowKey;
  windowSelect.addEventListener('change', () => {
    windowKey = windowSelect.value;
    ctx.setQuery({ history: windowKey === '1h' ? '' : windowKey });
    poller.now();
  });
  const caps = region({ class: 'panel', 'aria-labelledby': 'caps-title', testid: 'device-capabilities' });
  const participation = region({ class: 'panel', 'aria-labelledby': 'part-title' });
  const selection = region({ class: 'panel', 'aria-labelledby': 'sel-title' });

  // The revoke confirmation: a real modal <dialog>.
  const revokeReason = h('input', { id: 'revoke-reason', class: 'input', maxlength: 500, autocomplete: 'off' });
  const dialog = h(
    'dialog',
    { class: 'dialog', 'aria-labelledby': 'revoke-title', testid: 'confirm-dialog' },
    h('h2', { id: 'revoke-title' }, 'Revoke this device?'),
    h(
      'p',
      null,
      'Its credential stops working at once, its heartbeats are refused and its SuperNode leaves ' +
        'the fleet. An administrator can accept it again later (unrevoke).',
    ),
    h('div', { class: 'field' }, h('label', { for: 'revoke-reason' }, 'Reason (optional)'), revokeReason),
    h(
      'div',
      { class: 'form-actions' },
      h('button', { type: 'button', class: 'btn', testid: 'confirm-cancel', onclick: () => dialog.close('cancel') }, 'Cancel'),
      h(
        'button',
        {
          type: 'button',
          class: 'btn btn-danger',
          testid: 'confirm-ok',
          onclick: () => {
            dialog.close('ok');
            act('revoke', { reason: revokeReason.value.trim() });
          },
        },
        'Revoke',
      ),
    ),
  );

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/fleet' }, '‹ Fleet')),
    h('div', { class: 'page-head' }, h('div', { class: 'title-row' }, title, badgeBox), updated),
    reason,
    error,
    ctx.isAdmin ? actions.el : null,
    ctx.isAdmin ? actionStatus : null,
    now.el,
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'hist-title' },
      h(
        'div',
        { class: 'panel-head' },
        h('h2', { id: 'hist-title' }, 'Heartbeat history'),
        h('div', { class: 'field field-inline' }, h('label', { for: 'history-window' }, 'Window'), windowSelect),
      ),
      sparks,
    ),
    caps.el,
    participation.el,
    selection.el,
    dialog,
  );

  async function act(action, body) {
    const buttons = actions.el.querySelectorAll('button');
    buttons.forEach((b) => {
      b.disabled = true;
    });
    actionStatus.textContent = '';
    try {
      const answer = await api.post(`devices/${encodeURIComponent(deviceId)}/${action}`, body);
      const done = { drain: 'Drained', undrain: 'Undrained', revoke: 'Revoked', unrevoke: 'Accepted again' }[action];
      actionStatus.textContent = `${done}: the device is now ${answer.status}.`;
      showAlert(error, '');
    } catch (err) {
      showAlert(error, `Could not ${action} the device: ${errorText(err)}`);
    } finally {
      buttons.forEach((b) => {
        b.disabled = false;
      });
    }
    poller.now();
  }

  function renderActions(d) {
    const list = [];
    if (d.status !== 'revoked') {
      if (d.status === 'drained') {
        list.push(h('button', { type: 'button', class: 'btn', testid: 'action-undrain', onclick: () => act('undrain') }, 'Undrain'));
      } else {
        list.push(
          h(
            'button',
            { type: 'button', class: 'btn', testid: 'action-drain', onclick: () => act('drain', { reason: '' }) },
            'Drain',
          ),
        );
      }
      list.push(
        h(
          'button',
          {
            type: 'button',
            class: 'btn btn-danger',
            testid: 'action-revoke',
            onclick: () => {
              revokeReason.value = '';
              dialog.showModal();
            },
          },
          'Revoke…',
        ),
      );
    } else {
      list.push(h('button', { type: 'button', class: 'btn', testid: 'action-unrevoke', onclick: () => act('unrevoke') }, 'Unrevoke'));
    }
    return [h('h2', { class: 'visually-hidden' }, 'Actions'), h('div', { class: 'button-row' }, list)];
  }

  function renderNow(d) {
    const st = d.last_status || {};
    const age = (() => {
      const t = parseTime(d.last_heartbeat_at);
      return t === null ? null : (Date.now() + skewMs - t) / 1000;
    })();
    const acc = accelerator(d);
    return [
      h('h2', { id: 'now-title' }, 'Now'),
      h(
        'div',
        { class: 'stats' },
        stat('Last heartbeat', d.last_heartbeat_at ? h('time', { datetime: d.last_heartbeat_at, title: fmtDateTime(d.last_heartbeat_at) }, fmtAge(age)) : 'never'),
        stat('Activity', st.activity || DASH),
        stat('CPU', fmtPercent(st.cpu_percent)),
        stat('Memory', fmtPercent(st.memory_percent)),
        stat('Temperature', fmtTemp(st.max_temp_c)),
        stat('Power mode', powerMode(d)),
        stat('SuperNode', `${d.supernode_state || DASH}${st.supernode_restarts ? ` (${st.supernode_restarts} restarts)` : ''}`),
        stat('Speed', fmtSpeed(speedOf(d))),
      ),
      defList([
        ['Device id', h('code', null, d.device_id)],
        ['Hostname', d.hostname || DASH],
        ['Platform', d.platform || DASH],
        ['Hardware', archModel(d)],
        ['Accelerator', `${acc.kind}${acc.cuda === true ? ' (CUDA ok)' : acc.cuda === false ? ' (no CUDA)' : ''}`],
        ['Agent', d.agent_version || DASH],
        [
          'ClientApp runtime',
          st.clientapp_runtime
            ? `${st.clientapp_runtime}${st.runtime_state ? `, ${st.runtime_state}` : ''}${st.runtime_restarts ? ` (${st.runtime_restarts} restarts)` : ''}`
            : DASH,
        ],
        ['Uptime', isNum(st.uptime_s) && st.uptime_s > 0 ? fmtDuration(st.uptime_s) : DASH],
        ['Disk free', fmtBytes(st.disk_free_bytes)],
        ['Enrolled', timeEl(d.registered_at)],
        ['Drained', d.drained_at ? timeEl(d.drained_at) : null],
        ['Revoked', d.revoked_at ? timeEl(d.revoked_at) : null],
        ['Labels', labelChips(d.labels)],
      ]),
    ];
  }

  function renderCaps(d) {
    return [
      h('h2', { id: 'caps-title' }, 'Capabilities'),
      d.capabilities ? capabilityCards(d.capabilities) : h('p', { class: 'muted' }, 'This device has not reported its capabilities yet.'),
    ];
  }

  function renderParticipation(d) {
    const rows = d.participation || [];
    const runs = new Set(rows.map((r) => r.run_id));
    const seconds = rows.reduce((acc, r) => acc + (isNum(r.train_seconds) ? r.train_seconds : 0), 0);
    return [
      h('h2', { id: 'part-title' }, 'Participation'),
      h(
        'p',
        { class: 'muted' },
        rows.length
          ? `${rows.length} round${rows.length === 1 ? '' : 's'} in ${runs.size} run${runs.size === 1 ? '' : 's'}, ${fmtDuration(seconds)} of training.`
          : 'This device has not trained in any round yet.',
      ),
      dataTable({
        label: 'Participation',
        testid: 'participation-table',
        head: [['Run'], ['Round', true], ['Examples', true], ['Training time', true], ['Train loss', true]],
        rows: rows.map((r) =>
          h(
            'tr',
            { 'data-run-id': r.run_id, 'data-round': r.round },
            h('td', null, h('a', { href: `#/runs/${r.run_id}` }, `Run ${r.run_id}`)),
            h('td', { class: 'num' }, String(r.round)),
            h('td', { class: 'num' }, fmtNumber(r.num_examples)),
            h('td', { class: 'num' }, fmtDuration(r.train_seconds)),
            h('td', { class: 'num' }, isNum(r.train_loss) ? fmtNumber(r.train_loss, 4) : DASH),
          ),
        ),
      }),
    ];
  }

  function renderSelection(d) {
    const rows = d.selection_history || [];
    return [
      h('h2', { id: 'sel-title' }, 'Selection history'),
      h(
        'p',
        { class: 'muted' },
        rows.length
          ? 'Why the device was or was not picked for each round (newest first, at most 100).'
          : 'No selection decision about this device has been recorded yet.',
      ),
      dataTable({
        label: 'Selection history',
        testid: 'selection-table',
        head: [['Run'], ['Round', true], ['Decision'], ['Reason'], ['Score', true], ['Predicted time', true]],
        rows: rows.map((r) =>
          h(
            'tr',
            { 'data-run-id': r.run_id, 'data-round': r.round },
            h('td', null, h('a', { href: `#/runs/${r.run_id}` }, `Run ${r.run_id}`)),
            h('td', { class: 'num' }, String(r.round)),
            h(
              'td',
              null,
              h(
                'span',
                { class: ['decision', r.selected ? 'decision-yes' : 'decision-no'] },
                stateIcon(r.selected ? 'yes' : 'no'),
                r.selected ? 'selected' : 'not selected',
              ),
            ),
            h('td', null, r.reason || DASH),
            h('td', { class: 'num' }, isNum(r.score) ? fmtNumber(r.score, 3) : DASH),
            h('td', { class: 'num' }, isNum(r.predicted_s) ? fmtDuration(r.predicted_s) : DASH),
          ),
        ),
      }),
    ];
  }

  function renderSparks(history) {
    const pct = { min: 0, max: 100, format: (v) => fmtPercent(v) };
    fill(
      sparks,
      sparkCard('CPU', 'spark-cpu', history, 'cpu_percent', pct),
      sparkCard('Memory', 'spark-memory', history, 'memory_percent', pct),
      sparkCard('Temperature', 'spark-temp', history, 'max_temp_c', { format: fmtTemp }),
    );
  }

  async function refresh() {
    const requested = windowKey;
    let d;
    try {
      d = await api.get(`devices/${encodeURIComponent(deviceId)}`, { query: { history: requested } });
    } catch (err) {
      if (!alive) return;
      showAlert(error, err.status === 404 ? `No device ${deviceId} is registered.` : errorText(err));
      return;
    }
    if (!alive || requested !== windowKey) return;
    rememberName(d.device_id, d.name);
    showAlert(error, '');
    ctx.setTitle(d.name);
    if (title.textContent !== d.name) title.textContent = d.name;
    fill(badgeBox, stateBadge(d.status, 'device-state'));
    reason.hidden = !d.status_reason;
    reason.textContent = d.status_reason ? `Reason: ${d.status_reason}` : '';
    const history = d.heartbeat_history || [];
    // No server time here: a beat "from the future" means our clock is behind.
    const beat = parseTime(d.last_heartbeat_at);
    skewMs = beat === null ? 0 : Math.max(0, beat - Date.now());
    if (ctx.isAdmin) actions.update(d.status, () => renderActions(d));
    now.update(JSON.stringify([d, Math.floor(Date.now() / 1000)]), () => renderNow(d));
    renderSparks(history);
    caps.update(JSON.stringify(d.capabilities), () => renderCaps(d));
    participation.update(JSON.stringify(d.participation), () => renderParticipation(d));
    selection.update(JSON.stringify(d.selection_history || []), () => renderSelection(d));
    updated.textContent = `Updated ${fmtTime()}`;
  }

  const poller = new Poller(refresh, POLL_MS);
  poller.start();
  return {
    unmount() {
      alive = false;
      poller.stop();
      if (dialog.open) dialog.close();
    },
  };
}
