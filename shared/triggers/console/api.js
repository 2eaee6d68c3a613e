// The operator HTTP API of this same app. A function key (when the app uses keys) comes from the URL the page
// was opened with (?code=, then removed from the address bar) or from the key field; it is kept in this tab's
// sessionStorage only and sent as x-functions-key. Under App Service Authentication the browser's own session
// cookie does the work (same origin), and no key is needed.

const KEY_STORE = 'provisioning-console.key';

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && (problem.detail || problem.title);
    super(detail ? `${status}: ${detail}` : `The API answered ${status}.`);
    this.status = status;
    this.problem = problem;
  }
}

let key = null;

export function initKey() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('code');
  if (fromUrl) {
    setKey(fromUrl);
    url.searchParams.delete('code');
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
  } else {
    try { key = window.sessionStorage.getItem(KEY_STORE); } catch { key = null; }
  }
}

export function setKey(value) {
  key = value || null;
  try {
    if (key) window.sessionStorage.setItem(KEY_STORE, key);
    else window.sessionStorage.removeItem(KEY_STORE);
  } catch { /* storage refused: the key lives in memory for this page only */ }
}

export function hasKey() { return Boolean(key); }

/** A link the API gave (absolute, on PUBLIC_BASE_URL) as a path on this origin: the page never calls elsewhere. */
export function sameOrigin(link) {
  const url = new URL(link, window.location.origin);
  url.searchParams.delete('code');
  return url.pathname + url.search;
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (key) headers['x-functions-key'] = key;
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data, location: response.headers.get('Location') };
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : '';
}

export const api = {
  list: (filters) => call('GET', `/api/provision${query(filters)}`),
  page: (nextLink) => call('GET', sameOrigin(nextLink)),
  request: (id, include) => call('GET', `/api/provision/${encodeURIComponent(id)}${query({ include })}`),
  poll: (location) => call('GET', sameOrigin(location)),
  retry: (id) => call('POST', `/api/provision/${encodeURIComponent(id)}/retry`, {}),
  cancel: (id) => call('POST', `/api/provision/${encodeURIComponent(id)}/cancel`, {}),
  targets: () => call('GET', '/api/targets'),
  poison: () => call('GET', '/api/poison'),
  requeue: (queue, messageIds) => call('POST', '/api/poison/requeue', messageIds ? { queue, messageIds } : { queue }),
};
