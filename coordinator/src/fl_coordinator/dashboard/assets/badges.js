// State badges: the word, a shape and a colour, so that colour is never the only cue.

import { h, s } from './dom.js';

const SHAPES = {
  // device states
  online: () => s('circle', { cx: 6, cy: 6, r: 4.5, class: 'icon-fill' }),
  stale: () => s('path', { d: 'M6 1.2 L11 10.5 H1 Z', class: 'icon-fill' }),
  offline: () => s('circle', { cx: 6, cy: 6, r: 4, class: 'icon-stroke' }),
  drained: () => [
    s('rect', { x: 2, y: 1.5, width: 3, height: 9, class: 'icon-fill' }),
    s('rect', { x: 7, y: 1.5, width: 3, height: 9, class: 'icon-fill' }),
  ],
  revoked: () => s('path', { d: 'M2 2 L10 10 M10 2 L2 10', class: 'icon-stroke icon-bold' }),
  // run states
  pending: () => [
    s('circle', { cx: 6, cy: 6, r: 4.5, class: 'icon-stroke' }),
    s('path', { d: 'M6 3.5 V6 H8', class: 'icon-stroke' }),
  ],
  starting: () => s('path', { d: 'M3 1.5 L10.5 6 L3 10.5 Z', class: 'icon-stroke' }),
  running: () => s('path', { d: 'M3 1.5 L10.5 6 L3 10.5 Z', class: 'icon-fill' }),
  completed: () => s('path', { d: 'M1.5 6.5 L4.8 9.5 L10.5 2.5', class: 'icon-stroke icon-bold' }),
  failed: () => s('path', { d: 'M2 2 L10 10 M10 2 L2 10', class: 'icon-stroke icon-bold' }),
  stopped: () => s('rect', { x: 2, y: 2, width: 8, height: 8, class: 'icon-fill' }),
  // selection decisions
  yes: () => s('path', { d: 'M1.5 6.5 L4.8 9.5 L10.5 2.5', class: 'icon-stroke icon-bold' }),
  no: () => s('path', { d: 'M2.5 6 H9.5', class: 'icon-stroke icon-bold' }),
};

/** A 12 px shape for a state; aria-hidden (the word next to it carries the meaning). */
export function stateIcon(state) {
  const shape = SHAPES[state] || SHAPES.offline;
  return s(
    'svg',
    {
      class: 'icon',
      viewBox: '0 0 12 12',
      width: 12,
      height: 12,
      'aria-hidden': 'true',
      focusable: 'false',
    },
    shape(),
  );
}

/**
 * <span class="badge badge-online" data-testid=...><svg/>online</span>: its text is exactly the
 * state word (the shape is an SVG without text).
 */
export function stateBadge(state, testid, title) {
  const word = state || 'unknown';
  return h(
    'span',
    { class: ['badge', `badge-${word}`], testid, title },
    stateIcon(word),
    word,
  );
}

export const DEVICE_STATES = ['online', 'stale', 'offline', 'drained', 'revoked'];
export const TERMINAL_RUN_STATES = new Set(['completed', 'failed', 'stopped']);
