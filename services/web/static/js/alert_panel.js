/* The alerts section's "now" part: the alerts firing and pending, the silences in force with
 * their End buttons, the notifications' delivery counts and the test-notification button. */

import { postJson } from './api.js';
import { AlertList, timeText } from './alert_items.js';
import { buildEndButton } from './alert_silence.js';
import { plural, whereText, worstFirst } from './alert_text.js';
import { element, isNumber, putText } from './format.js';
import { state } from './state.js';

const DELIVERY_COUNTS = [
  ['sent', 'sent', 'notifications a target took'],
  ['retried', 'retried', 'of those sent, sent after a retry'],
  ['queued', 'queued', 'waiting to be sent (a target down is retried)'],
  ['given_up', 'given up', 'not sent: their target stayed down too long'],
  ['silenced', 'silenced', 'not sent: a silence covered their alert'],
];

const SILENCE_HELP = 'Silence 1 h, 4 h or 24 h: a silenced alert stays listed; its notifications are not sent.';

let activeList = null;
let silencesSignature = '';

/** Return what a silence covers, in words: an alert's message, or its rule, host and GPU. */
function coversText(silence) {
  const parts = [];
  if (typeof silence.key === 'string') {
    const alert = state.alerts.active.find((item) => item.key === silence.key);
    parts.push(alert ? alert.message : silence.key);
  }
  if (typeof silence.rule === 'string') parts.push(`rule ${silence.rule}`);
  if (typeof silence.host === 'string') parts.push(`host ${silence.host}`);
  if (typeof silence.gpu_uuid === 'string') {
    const gpu = state.gpus.get(silence.gpu_uuid);
    parts.push(gpu ? whereText({ host: gpu.host, gpu_uuid: gpu.uuid }) : silence.gpu_uuid);
  }
  return parts.length ? parts.join(', ') : 'every alert';
}

function silenceItem(silence) {
  const item = element('li', 'alert-silence-item d-flex flex-wrap align-items-center gap-2');
  item.dataset.silenceId = String(silence.silence_id);
  if (typeof silence.key === 'string') item.dataset.key = silence.key;
  const note = element('span', 'small text-danger-emphasis');
  note.hidden = true;
  // the exact end in words beside the short one: no tooltip, which no keyboard or touch shows
  const until = element('span', 'small text-body-secondary alert-silence-until',
    `until ${timeText(silence.until_ts)}`);
  const extra = [silence.created_by ? `by ${silence.created_by}` : '', silence.comment || '']
    .filter(Boolean).join(' · ');
  item.append(element('span', 'alert-silence-covers', coversText(silence)), until);
  if (extra) item.append(element('span', 'small text-body-secondary', extra));
  item.append(buildEndButton(silence.silence_id, note), note);
  return item;
}

function showSilences() {
  const silences = state.alerts.silences;
  const signature = JSON.stringify(silences.map((s) => [s.silence_id, s.until_ts, coversText(s)]));
  if (signature === silencesSignature) return;
  silencesSignature = signature;
  document.getElementById('alert-silences').replaceChildren(...silences.map(silenceItem));
  document.getElementById('alert-silences-none').hidden = silences.length > 0;
}

function showDeliveries() {
  const deliveries = state.alerts.deliveries;
  const targets = deliveries && isNumber(deliveries.targets) ? deliveries.targets : null;
  putText(document.getElementById('alert-targets'), targets === null ? 'Notification targets: unknown.'
    : targets === 0 ? 'No notification target is set (PCW_NOTIFY_URLS, PCW_NOTIFY_CONFIG).'
      : `Notifications go to ${plural(targets, 'target')}.`);
  document.getElementById('alert-targets').dataset.targets = String(targets ?? '');
  const list = document.getElementById('alert-deliveries');
  if (!list.children.length) {
    for (const [name, label, help] of DELIVERY_COUNTS) {
      const value = element('dd', 'alert-delivery', 'n/a');
      value.dataset.delivery = name;
      // what each count means, in words beside it rather than in a tooltip
      list.append(element('dt', '', label), value, element('dd', 'alert-delivery-help', help));
    }
  }
  for (const value of list.querySelectorAll('[data-delivery]')) {
    const count = deliveries ? deliveries[value.dataset.delivery] : null;
    putText(value, isNumber(count) ? String(count) : 'n/a');
  }
}

/** Say once, under the alerts, what their Silence buttons do (no tooltip on each button). */
function showSilenceHelp(shown) {
  let help = document.getElementById('alert-silence-help');
  if (!help) {
    help = element('p', 'small text-body-secondary mt-1 mb-0', SILENCE_HELP);
    help.id = 'alert-silence-help';
    document.getElementById('alerts-active').after(help);
  }
  help.hidden = !shown;
}

/** Show what the newest alerts message says in the alerts section. */
export function renderAlertPanel() {
  if (activeList === null) activeList = new AlertList(document.getElementById('alerts-active'), true);
  const active = [...state.alerts.active].sort((a, b) => (a.state === b.state ? 0 : a.state === 'firing' ? -1 : 1)
    || worstFirst(a, b));
  activeList.show(active);
  document.getElementById('alerts-active-none').hidden = active.length > 0;
  showSilenceHelp(active.length > 0);
  showSilences();
  showDeliveries();
}

async function sendTest(button) {
  const result = document.getElementById('alert-test-result');
  button.disabled = true;
  result.className = 'small mb-0 text-body-secondary';
  result.textContent = 'sending…';
  try {
    const answer = await postJson('api/v1/notifications/test', {});
    const targets = answer && isNumber(answer.targets) ? answer.targets : null;
    result.className = 'small mb-0 text-success-emphasis';
    result.textContent = `Test notification ${answer && isNumber(answer.notification_id) ? `#${answer.notification_id} ` : ''}`
      + `queued for ${targets === null ? 'every target' : plural(targets, 'target')}; the counts above show its delivery.`;
  } catch (error) {
    result.className = 'small mb-0 text-danger-emphasis';
    result.textContent = `Not sent: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

function bindToggle() {
  const toggle = document.getElementById('alerts-toggle');
  const body = document.getElementById('alerts-body');
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? 'Hide' : 'Show';
    body.hidden = !open;
  });
}

export function bindAlertPanel() {
  const button = document.getElementById('alert-test-button');
  button.addEventListener('click', () => sendTest(button));
  bindToggle();
}
