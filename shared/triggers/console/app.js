// The console's entry point: routes (#/requests, #/request/{id}, #/targets, #/poison, #/activity) and the key.
import { ApiError, hasKey, initKey, setKey } from './api.js';
import { renderActivity } from './chart.js';
import { el, replace, showError } from './dom.js';
import { renderPoison, renderTargets } from './ops.js';
import { RequestDetail, renderList } from './requests.js';

const main = document.getElementById('main');
let generation = 0;

function parseHash() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [path, search] = hash.split('?');
  const params = Object.fromEntries(new URLSearchParams(search || ''));
  const [view, id] = path.split('/');
  return { view: view || 'requests', id: id ? decodeURIComponent(id) : '', params };
}

export function navigate(view, params = {}) {
  const search = new URLSearchParams(params).toString();
  window.location.hash = `#/${view}${search ? `?${search}` : ''}`;
}

function markNav(view) {
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    const current = link.dataset.view === view || (view === 'request' && link.dataset.view === 'requests');
    if (current) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
}

function keyForm(show) {
  document.getElementById('key-form').hidden = !show;
  document.getElementById('key-forget').hidden = !hasKey();
}

async function route() {
  generation += 1;
  const mine = generation;
  const isCurrent = () => mine === generation;
  const { view, id, params } = parseHash();
  markNav(view);
  showError('');
  replace(main, el('p', { class: 'muted', text: 'Loading…' }));
  try {
    if (view === 'request' && id) await new RequestDetail(main, id, isCurrent).open();
    else if (view === 'targets') await renderTargets(main);
    else if (view === 'poison') await renderPoison(main);
    else if (view === 'activity') await renderActivity(main, params.hours);
    else await renderList(main, params, navigate);
    document.title = `${view === 'request' ? `Request ${id}` : view[0].toUpperCase() + view.slice(1)} · Provisioning console`;
  } catch (error) {
    if (!isCurrent()) return;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      keyForm(true);
      showError(error.status === 401
        ? 'The API needs a key (or a signed-in session). Enter a function key that opens the operator routes.'
        : 'Your identity lacks the Provisioning.Operate role.');
      // Under App Service Authentication a browser signs in here and comes back with a session cookie.
      replace(main, el('p', { text: 'Not authorised. ' },
        el('a', { href: '/.auth/login/aad?post_login_redirect_uri=%2Fapi%2Fconsole', text: 'Sign in with Microsoft Entra ID' }),
        ' (when the app uses App Service Authentication), or enter a function key above.'));
      if (error.status === 401) document.getElementById('key-input').focus();
    } else {
      showError(error.message || String(error));
      replace(main, el('p', { text: 'Could not load this view.' }));
    }
  }
}

function start() {
  initKey();
  keyForm(false);
  document.getElementById('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = document.getElementById('key-input');
    setKey(input.value.trim());
    input.value = '';
    keyForm(false);
    route();
  });
  document.getElementById('key-forget').addEventListener('click', () => {
    setKey(null);
    keyForm(true);
  });
  window.addEventListener('hashchange', () => { route(); main.focus(); });
  route();
}

start();
