// The live websocket as both views open it: at ws beside the page (wss: under https:), and
// reopened after a backoff that doubles from half a second to 15 s, with jitter so that many
// browsers do not reconnect in step after a restart of the web process.

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const MAX_ATTEMPTS = 30;

// Open the live websocket; the handlers get the socket they belong to, so that a caller can
// ignore an old one, and message() gets each message as a parsed object (one that is not JSON,
// or not an object, is dropped here). Returns the socket, or null when the browser refused to
// open it (failed() is then called: try again later).
export function openLiveSocket({ open, message, close, failed }) {
  const url = new URL('ws', document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  url.hash = '';
  let socket;
  try {
    socket = new WebSocket(url.href);
  } catch (error) {
    failed();
    return null;
  }
  socket.addEventListener('open', () => open(socket));
  socket.addEventListener('message', (event) => {
    let parsed;
    try {
      parsed = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (parsed && typeof parsed === 'object') message(socket, parsed);
  });
  socket.addEventListener('close', () => close(socket));
  return socket;
}

// How long to wait before the next try after `attempts` failed ones, and the new count.
export function nextReconnect(attempts) {
  const baseMs = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempts);
  return { delayMs: baseMs / 2 + Math.random() * (baseMs / 2), attempts: Math.min(attempts + 1, MAX_ATTEMPTS) };
}
