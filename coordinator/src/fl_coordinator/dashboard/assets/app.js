// The dashboard: session (whoami), header and navigation, and a hash router over the pages.

import { api, clearToken, getToken, onUnauthorized, setToken } from './api.js';
import { errorText, fill, h } from './dom.js';
import * as devicePage from './pages/device.js';
import * as fleetPage from './pages/fleet.js';
import * as loginPage from './pages/login.js';
import * as modelsPage from './pages/models.js';
import * as runPage from './pages/run.js';
import * as runsPage from './pages/runs.js';
import * as startPage from './pages/start.js';

const ROUTES = [
  { re: /^\/fleet$/, page: fleetPage, nav: 'fleet' },
  { re: /^\/devices\/(.+)$/, page: devicePage, nav: 'fleet' },
  { re: /^\/runs$/, page: runsPage, nav: 'runs' },
  { re: /^\/runs\/(\d+)$/, page: runPage, nav: 'runs' },
  { re: /^\/models$/, page: modelsPage, nav: 'models' },
  { re: /^\/start$/, page: startPage, nav: 'start' },
  { re: /^\/login$/, page: loginPage, nav: null, public: true },
];

const ROLE_TEXT = { admin: 'admin', read: 'read-only', public: 'public read-only' };

const state = {
  session: null, // the whoami answer, or null when signed out
  loginMessage: '',
  next: '#/fleet', // where to go after signing in
  current: null, // {path, page instance}
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const sessionBox = document.getElementById('session');

function parseHash() {
  let raw = location.hash.replace(/^#/, '');
  if (!raw || raw === '/') raw = '/fleet';
  const cut = raw.indexOf('?');
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const params = new URLSearchParams(cut < 0 ? '' : raw.slice(cut + 1));
  return { path, params };
}

/** Replace the query part of the current route without a new history entry or re-render. */
function setQuery(params) {
  const { path } = parseHash();
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') qs.set(k, String(v));
  }
  const query = qs.toString();
  history.replaceState(history.state, '', `#${path}${query ? `?${query}` : ''}`);
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function isAdmin() {
  return Boolean(state.session && state.session.role === 'admin');
}

async function loadSession() {
  const token = getToken();
  try {
    state.session = await api.get('whoami', { token: token || null });
    return null;
  } catch (err) {
    state.session = null;
    if (err.status === 401 || err.status === 403) {
      if (token) {
        clearToken();
        state.loginMessage = `The stored token was refused: ${errorText(err)}`;
      }
      return null;
    }
    return err;
  }
}

let headerKey = null;

function renderHeader(activeNav) {
  // Rebuilt only when the session changes, so a focused nav link keeps its focus.
  const s = state.session;
  const key = s ? `${s.role}|${s.name}|${s.development}|${Boolean(getToken())}` : '';
  if (key !== headerKey) {
    headerKey = key;
    buildHeader();
  }
  for (const link of nav.querySelectorAll('a[data-nav]')) {
    if (link.dataset.nav === activeNav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function buildHeader() {
  const links = [];
  if (state.session) {
    const item = (key, label) =>
      h('a', { href: `#/${key}`, testid: `nav-${key}`, class: 'nav-link', 'data-nav': key }, label);
    links.push(item('fleet', 'Fleet'), item('runs', 'Runs'), item('models', 'Models'));
    if (isAdmin()) links.push(item('start', 'Start training'));
  }
  fill(nav, links.length ? h('ul', { class: 'nav-list' }, links.map((l) => h('li', null, l))) : null);

  const parts = [];
  if (state.session) {
    const s = state.session;
    parts.push(
      h(
        'span',
        { class: 'who', title: s.token_id ? `token ${s.token_id}` : null },
        h('span', { class: 'visually-hidden' }, 'Signed in as '),
        h('span', { class: ['role', `role-${s.role}`], testid: 'whoami' }, ROLE_TEXT[s.role] || s.role),
        s.name && !s.development ? h('span', { class: 'who-name' }, s.name) : null,
        s.development
          ? h('span', { class: 'dev-tag', title: 'fl-coordinator serve --insecure-dev' }, 'development mode')
          : null,
      ),
    );
    if (getToken()) {
      parts.push(
        h('button', { type: 'button', class: 'btn btn-header', testid: 'logout', onclick: signOut }, 'Sign out'),
      );
    } else {
      parts.push(h('a', { href: '#/login', class: 'btn btn-header', testid: 'login-link' }, 'Sign in'));
    }
  }
  fill(sessionBox, parts);
}

async function signOut() {
  clearToken();
  state.loginMessage = '';
  const problem = await loadSession();
  if (problem) {
    showFatal(problem);
    return;
  }
  navigate('#/login');
}

function unmountCurrent() {
  if (state.current && state.current.instance && state.current.instance.unmount) {
    try {
      state.current.instance.unmount();
    } catch {
      // a page that fails to clean up must not block the next one
    }
  }
  state.current = null;
}

function keepFocusReachable() {
  // A re-rendered page removes the focused element: start the next Tab at the top (skip link).
  const active = document.activeElement;
  if (!active || active === document.body || !document.contains(active)) {
    document.getElementById('top').focus({ preventScroll: true });
  }
}

function route() {
  const { path, params } = parseHash();
  let match = null;
  let entry = ROUTES.find((r) => (match = r.re.exec(path)));
  if (!entry) {
    entry = null;
  }
  if (!state.session && !(entry && entry.public)) {
    state.next = entry ? location.hash || '#/fleet' : '#/fleet';
    history.replaceState(history.state, '', '#/login');
    entry = ROUTES.find((r) => r.page === loginPage);
    match = ['/login'];
  }
  const samePath = state.current && state.current.path === path;
  unmountCurrent();
  renderHeader(entry ? entry.nav : null);
  main.replaceChildren();
  main.setAttribute('aria-busy', 'false');
  if (!entry) {
    document.title = 'Not found · FL fleet';
    main.append(
      h('h1', null, 'Page not found'),
      h('p', null, 'There is no page at this address. ', h('a', { href: '#/fleet' }, 'Go to the fleet'), '.'),
    );
    keepFocusReachable();
    return;
  }
  const ctx = {
    session: state.session,
    isAdmin: isAdmin(),
    params,
    match,
    setQuery,
    navigate,
    setTitle: (title) => {
      document.title = `${title} · FL fleet`;
    },
    login: {
      message: state.loginMessage,
      signIn,
    },
  };
  let instance = null;
  try {
    instance = entry.page.mount(main, ctx) || null;
  } catch (err) {
    main.append(h('div', { class: 'alert', role: 'alert' }, `This page failed: ${errorText(err)}`));
  }
  state.current = { path, instance };
  if (!samePath) window.scrollTo(0, 0);
  keepFocusReachable();
}

/** Try a token: 200 stores it and goes on; otherwise throws the API's error. */
async function signIn(token) {
  const who = await api.get('whoami', { token });
  setToken(token);
  state.session = who;
  state.loginMessage = '';
  const next = state.next && state.next !== '#/login' ? state.next : '#/fleet';
  state.next = '#/fleet';
  navigate(next);
}

function showFatal(err) {
  unmountCurrent();
  renderHeader(null);
  document.title = 'Unavailable · FL fleet';
  fill(
    main,
    h('h1', null, 'The coordinator cannot be reached'),
    h('div', { class: 'alert', role: 'alert' }, errorText(err)),
    h(
      'p',
      null,
      h('button', { type: 'button', class: 'btn', onclick: () => start() }, 'Try again'),
    ),
  );
}

onUnauthorized((err) => {
  // The stored token stopped working mid-session (revoked or expired).
  clearToken();
  state.session = null;
  state.loginMessage = `Signed out: ${errorText(err)}`;
  state.next = location.hash || '#/fleet';
  // Let the page's own handler finish first.
  setTimeout(() => {
    loadSession().then((problem) => (problem ? showFatal(problem) : route()));
  }, 0);
});

async function start() {
  const problem = await loadSession();
  if (problem) {
    showFatal(problem);
    return;
  }
  route();
}

document.querySelector('[data-skip]').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
  main.scrollIntoView();
});
window.addEventListener('hashchange', () => route());
start();
