// #/login: paste an access token; it is checked with GET /api/v1/whoami, then kept in
// sessionStorage for this tab only.

import { errorText, h, showAlert } from '../dom.js';

export function mount(main, ctx) {
  ctx.setTitle('Sign in');
  const error = h('p', { class: 'alert', role: 'alert', testid: 'login-error', hidden: true });
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    autocapitalize: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-hint',
    class: 'input',
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'login-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'login-form', novalidate: true, 'aria-labelledby': 'login-title' },
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Access token'), input),
    h(
      'p',
      { id: 'token-hint', class: 'hint' },
      'An admin token (fla_…) or a read-only token (flr_…). It is kept in this browser tab ' +
        'only and sent to the coordinator as a bearer token.',
    ),
    h('div', { class: 'form-actions' }, submit),
    error,
  );
  const here = ctx.session;
  main.append(
    h(
      'section',
      { class: 'login-card' },
      h('h1', { id: 'login-title' }, 'Sign in'),
      here
        ? h(
            'p',
            { class: 'notice' },
            here.role === 'public'
              ? 'This coordinator shows its fleet read-only to everyone. Sign in to act on it.'
              : 'You can already see the dashboard without a token. Sign in to use another identity.',
            ' ',
            h('a', { href: '#/fleet' }, 'Go to the fleet'),
          )
        : null,
      form,
    ),
  );
  if (ctx.login.message) showAlert(error, ctx.login.message);
  input.focus();

  let busy = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    const token = input.value.trim();
    if (!token) {
      showAlert(error, 'Paste an access token first.');
      input.focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    showAlert(error, '');
    try {
      await ctx.login.signIn(token);
    } catch (err) {
      const why =
        err.status === 403
          ? `This credential cannot read the dashboard: ${errorText(err)}`
          : errorText(err);
      showAlert(error, why);
      input.focus();
      input.select();
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });
  return { unmount() {} };
}
