/* Requests: JSON GETs and POSTs with the 401 "signed out" notice, time parameters, polls that never overlap. */


const FETCH_TIMEOUT_MS = 120000; // a request the server never answers does not stop the polls

export function secondsParam(value) {
  return String(Math.round(value * 1000) / 1000);
}

export async function fetchJson(url, signal) {
  return request(url, {
    signal: signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { Accept: 'application/json' },
  });
}

/** POST body as JSON; return the answer's JSON, or throw an Error of its `error` text. */
export async function postJson(url, body) {
  return request(url, {
    method: 'POST',
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function request(url, init) {
  const response = await fetch(url, init);
  // 401: the sign-in this page was opened with is no longer accepted (password changed).
  document.getElementById('auth-alert').hidden = response.status !== 401;
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const reason = body && typeof body.error === 'string' ? body.error : `HTTP ${response.status}`;
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return body;
}

/** Return fn wrapped so that a call made while the last one still runs is skipped, not piled. */
export function oneAtATime(fn) {
  let running = false;
  return async () => {
    if (running) return;
    running = true;
    try {
      await fn();
    } finally {
      running = false;
    }
  };
}
