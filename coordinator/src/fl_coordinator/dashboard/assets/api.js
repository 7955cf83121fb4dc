// The coordinator's REST API, with the bearer token kept in this tab's sessionStorage.

const TOKEN_KEY = 'fl-token';

// The page is served at <prefix>/ui/; the API lives at <prefix>/api/v1/.
export const API_BASE = new URL('../api/v1/', document.baseURI);

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: nothing was kept
  }
}

/** An answer of the API other than 2xx, with the `detail` of its JSON body. */
export class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

let unauthorizedHandler = null;

/** Called with the ApiError when a call made with the stored token gets a 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

async function errorOf(res) {
  let detail = '';
  let error = '';
  try {
    const body = await res.json();
    error = typeof body.error === 'string' ? body.error : '';
    if (typeof body.detail === 'string') detail = body.detail;
    else if (body.detail !== undefined) detail = JSON.stringify(body.detail);
  } catch {
    // not JSON (a proxy's page): the status line says enough
  }
  if (!detail) detail = `the coordinator answered ${res.status} ${res.statusText}`.trim();
  return new ApiError(res.status, error, detail);
}

function urlOf(path, query) {
  const url = new URL(path.replace(/^\/+/, ''), API_BASE);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === null || value === undefined || value === '') continue;
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(key, String(v)));
    else url.searchParams.set(key, String(value));
  }
  return url;
}

/**
 * One call. options: body (sent as JSON), query, token (undefined: the stored one; null:
 * none), raw (return the Response), accept.
 */
export async function request(method, path, options = {}) {
  const { body, query, raw = false, accept = 'application/json' } = options;
  const explicit = Object.prototype.hasOwnProperty.call(options, 'token');
  const token = explicit ? options.token : getToken();
  const headers = { Accept: accept };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(urlOf(path, query), init);
  } catch (exc) {
    throw new ApiError(0, 'network', `cannot reach the coordinator (${exc.message || exc})`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !explicit && token && unauthorizedHandler) unauthorizedHandler(err);
    throw err;
  }
  if (raw) return res;
  if (res.status === 204) return null;
  try {
    return await res.json();
  } catch {
    throw new ApiError(res.status, 'invalid_json', 'the coordinator sent an answer that is not JSON');
  }
}

export const api = {
  get: (path, options) => request('GET', path, options),
  post: (path, body, options = {}) => request('POST', path, { ...options, body }),
};

function filenameOf(disposition) {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      // fall through to the plain name
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1].trim() : null;
}

/**
 * Fetch a file with the token and hand it to the browser as a download (a blob: URL).
 * Returns {name, size}.
 */
export async function download(path, fallbackName) {
  const res = await request('GET', path, { raw: true, accept: 'application/octet-stream, */*' });
  const blob = await res.blob();
  const name = (filenameOf(res.headers.get('Content-Disposition')) || fallbackName).replace(
    /[\\/]/g,
    '_',
  );
  const href = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = href;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
  return { name, size: blob.size };
}
