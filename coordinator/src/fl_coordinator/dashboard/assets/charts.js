// Hand-written SVG charts: a line chart with axes (two y scales) and a sparkline.

import { isNum, nextId, s } from './dom.js';

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!isNum(min) || !isNum(max)) return [];
  if (max === min) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** A maximum rounded up to a tick, for an axis that starts at 0. */
function niceMax(max) {
  if (!isNum(max) || max <= 0) return 1;
  const ticks = niceTicks(0, max, 4);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : max;
  return Number((Math.ceil(max / step - 1e-9) * step).toPrecision(12));
}

function pathOf(points, x, y) {
  let d = '';
  let pen = false;
  for (const p of points) {
    if (!isNum(p.y)) {
      pen = false;
      continue;
    }
    d += `${pen ? 'L' : 'M'}${x(p.x).toFixed(2)} ${y(p.y).toFixed(2)} `;
    pen = true;
  }
  return d.trim();
}

/**
 * A line chart of one or two y scales over a numeric x.
 * options: {testid, title, width, height, x: {label, min, max, integer, format},
 *   left: {label, min, max, format}, right: {label, min, max (or 'auto'), format} | null,
 *   series: [{name, axis: 'left'|'right', cls, points: [{x, y}], pointTestId, dashed,
 *   describe(point) -> string}], empty: text when no series has a point}
 */
export function lineChart(options) {
  const W = options.width || 720;
  const H = options.height || 320;
  const M = { top: 16, right: options.right ? 64 : 20, bottom: 48, left: 64 };
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const series = options.series || [];
  const xs = series.flatMap((sr) => sr.points.filter((p) => isNum(p.y)).map((p) => p.x));
  const xMin = isNum(options.x.min) ? options.x.min : Math.min(0, ...xs);
  const xMax = Math.max(isNum(options.x.max) ? options.x.max : 1, ...xs, xMin + 1);
  const scaleX = (v) => M.left + ((v - xMin) / (xMax - xMin)) * plotW;

  const axisRange = (axis, which) => {
    if (!axis) return null;
    let max = axis.max;
    if (!isNum(max)) {
      const ys = series
        .filter((sr) => sr.axis === which)
        .flatMap((sr) => sr.points.map((p) => p.y))
        .filter(isNum);
      max = niceMax(ys.length ? Math.max(...ys) : 1);
    }
    const min = isNum(axis.min) ? axis.min : 0;
    return { min, max: max > min ? max : min + 1 };
  };
  const ranges = { left: axisRange(options.left, 'left'), right: axisRange(options.right, 'right') };
  const scaleY = (which) => {
    const r = ranges[which];
    return (v) => M.top + plotH - ((v - r.min) / (r.max - r.min)) * plotH;
  };

  const titleId = nextId('chart-title');
  const svg = s('svg', {
    class: 'chart',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-labelledby': titleId,
    testid: options.testid,
  });
  svg.append(s('title', { id: titleId }, options.title || ''));

  // grid and the left axis
  const left = ranges.left;
  const yl = scaleY('left');
  const fmtL = options.left.format || ((v) => String(v));
  const gridG = s('g', { class: 'chart-grid' });
  const axisG = s('g', { class: 'chart-axis' });
  for (const t of niceTicks(left.min, left.max, 5)) {
    const y = yl(t);
    gridG.append(s('line', { x1: M.left, x2: M.left + plotW, y1: y, y2: y }));
    axisG.append(
      s('text', { x: M.left - 8, y: y + 4, 'text-anchor': 'end', class: 'tick' }, fmtL(t)),
    );
  }
  if (options.right) {
    const yr = scaleY('right');
    const fmtR = options.right.format || ((v) => String(v));
    for (const t of niceTicks(ranges.right.min, ranges.right.max, 5)) {
      axisG.append(
        s(
          'text',
          { x: M.left + plotW + 8, y: yr(t) + 4, 'text-anchor': 'start', class: 'tick' },
          fmtR(t),
        ),
      );
    }
  }
  // x ticks
  const span = xMax - xMin;
  let xTicks = niceTicks(xMin, xMax, Math.min(10, Math.max(1, Math.floor(plotW / 60))));
  if (options.x.integer) xTicks = [...new Set(xTicks.map(Math.round))].filter((v) => v >= xMin);
  if (span <= 12 && options.x.integer) {
    xTicks = Array.from({ length: span + 1 }, (_, i) => xMin + i);
  }
  const fmtX = options.x.format || ((v) => String(v));
  for (const t of xTicks) {
    const x = scaleX(t);
    axisG.append(s('line', { x1: x, x2: x, y1: M.top + plotH, y2: M.top + plotH + 5 }));
    axisG.append(
      s('text', { x, y: M.top + plotH + 20, 'text-anchor': 'middle', class: 'tick' }, fmtX(t)),
    );
  }
  // axis lines and titles
  axisG.append(s('line', { x1: M.left, x2: M.left + plotW, y1: M.top + plotH, y2: M.top + plotH }));
  axisG.append(s('line', { x1: M.left, x2: M.left, y1: M.top, y2: M.top + plotH }));
  axisG.append(
    s(
      'text',
      { x: M.left + plotW / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis-title' },
      options.x.label,
    ),
  );
  axisG.append(
    s(
      'text',
      {
        x: 0,
        y: 0,
        transform: `translate(16 ${M.top + plotH / 2}) rotate(-90)`,
        'text-anchor': 'middle',
        class: 'axis-title',
      },
      options.left.label,
    ),
  );
  if (options.right) {
    axisG.append(s('line', { x1: M.left + plotW, x2: M.left + plotW, y1: M.top, y2: M.top + plotH }));
    axisG.append(
      s(
        'text',
        {
          x: 0,
          y: 0,
          transform: `translate(${W - 12} ${M.top + plotH / 2}) rotate(90)`,
          'text-anchor': 'middle',
          class: 'axis-title',
        },
        options.right.label,
      ),
    );
  }
  svg.append(gridG, axisG);

  // series
  let anyPoint = false;
  for (const sr of series) {
    const y = scaleY(sr.axis === 'right' && ranges.right ? 'right' : 'left');
    const pts = sr.points.slice().sort((a, b) => a.x - b.x);
    const g = s('g', { class: ['chart-series', sr.cls] });
    const d = pathOf(pts, scaleX, y);
    if (d) g.append(s('path', { d, class: ['chart-line', sr.dashed ? 'dashed' : ''] }));
    for (const p of pts) {
      if (!isNum(p.y)) continue;
      anyPoint = true;
      g.append(
        s(
          'circle',
          {
            cx: scaleX(p.x).toFixed(2),
            cy: y(p.y).toFixed(2),
            r: sr.pointRadius || 4,
            class: 'chart-point',
            testid: sr.pointTestId,
          },
          s('title', null, sr.describe ? sr.describe(p) : `${sr.name}: ${p.y}`),
        ),
      );
    }
    svg.append(g);
  }
  if (!anyPoint && options.empty) {
    svg.append(
      s(
        'text',
        { x: M.left + plotW / 2, y: M.top + plotH / 2, 'text-anchor': 'middle', class: 'chart-empty' },
        options.empty,
      ),
    );
  }
  return svg;
}

/**
 * A small trend line: points [{t (ms), v}], fixed domain {min, max} or the data's.
 * options: {testid, label (accessible name), min, max, width, height}
 */
export function sparkline(points, options) {
  const W = options.width || 240;
  const H = options.height || 48;
  const pad = 3;
  const svg = s('svg', {
    class: 'sparkline',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': options.label,
    testid: options.testid,
  });
  const valid = points.filter((p) => isNum(p.v) && isNum(p.t));
  svg.append(s('line', { x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, class: 'spark-base' }));
  if (valid.length === 0) return svg;
  const vs = valid.map((p) => p.v);
  let lo = isNum(options.min) ? options.min : Math.min(...vs);
  let hi = isNum(options.max) ? options.max : Math.max(...vs);
  lo = Math.min(lo, ...vs);
  hi = Math.max(hi, ...vs);
  if (hi - lo < 1e-9) {
    hi += 1;
    lo -= 1;
  }
  const t0 = valid[0].t;
  const t1 = valid[valid.length - 1].t;
  const x = (t) => (t1 === t0 ? W / 2 : pad + ((t - t0) / (t1 - t0)) * (W - 2 * pad));
  const y = (v) => pad + (1 - (v - lo) / (hi - lo)) * (H - 2 * pad);
  const line = valid.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)} ${y(p.v).toFixed(1)}`);
  const area = `${line.join(' ')} L${x(t1).toFixed(1)} ${H} L${x(t0).toFixed(1)} ${H} Z`;
  svg.append(s('path', { d: area, class: 'spark-area' }));
  svg.append(
    s('path', { d: line.join(' '), class: 'spark-line', 'vector-effect': 'non-scaling-stroke' }),
  );
  const last = valid[valid.length - 1];
  svg.append(
    s('circle', {
      cx: x(last.t).toFixed(1),
      cy: y(last.v).toFixed(1),
      r: 2.5,
      class: 'spark-last',
    }),
  );
  return svg;
}
