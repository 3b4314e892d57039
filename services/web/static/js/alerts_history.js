/* The alerts' history: their firing and resolved transitions from api/v1/alerts, by state,
 * range and rule, asked again whenever an alerts message says that an alert changed state. */

import { fetchJson, secondsParam } from './api.js';
import { severityColour, validAlert, whereText } from './alert_text.js';
import {
  element,
  fillSelect,
  formatFull,
  formatWhen,
  isNumber,
  markPressed,
  setNote,
} from './format.js';
import { serverNowS, state } from './state.js';
import { cell } from './tables.js';

export const ALERT_RANGES_S = { '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
const STATES = ['firing', 'resolved'];
const BUILT_IN_RULES = [
  'gpu_error', 'xid', 'temperature', 'throttling', 'ecc', 'pcie_link', 'host_stale',
  'writer_degraded', 'idle_allocated',
];

function badgeCell(text, colour, className) {
  const td = element('td', className);
  td.append(element('span', `badge text-bg-${colour}`, text));
  return td;
}

function eventRow(event) {
  const row = element('tr', 'alert-event');
  row.dataset.state = String(event.state);
  row.dataset.rule = event.rule;
  row.dataset.key = event.key;
  const ms = isNumber(event.ts) ? event.ts * 1000 : null;
  row.append(
    cell(ms === null ? 'n/a' : formatWhen(ms), 'alert-event-time text-nowrap', ms === null ? '' : formatFull(ms)),
    badgeCell(String(event.state), event.state === 'resolved' ? 'success' : 'danger', 'alert-event-state'),
    badgeCell(String(event.severity), severityColour(event.severity), 'alert-event-severity'),
    cell(event.rule, 'alert-event-rule'),
    cell(whereText(event), 'alert-event-where'),
    cell(event.message, 'alert-event-message'),
  );
  return row;
}

/** Offer the rules seen so far (and the built-in ones) in the rule filter, keeping the choice. */
function fillRules() {
  const history = state.alertHistory;
  const select = document.getElementById('alert-rule');
  const names = new Set([...BUILT_IN_RULES, ...history.rulesSeen]);
  if (history.rule !== null) names.add(history.rule);
  fillSelect(select, names, history.rule);
}

function showFilters() {
  markPressed('data-alert-state', state.alertHistory.state ?? 'all');
  markPressed('data-alert-range', state.alertHistory.rangeKey);
  fillRules();
}

function historyUrl() {
  const history = state.alertHistory;
  const toS = serverNowS();
  const query = new URLSearchParams({
    from: secondsParam(toS - ALERT_RANGES_S[history.rangeKey]), to: secondsParam(toS),
  });
  if (history.state !== null) query.set('state', history.state);
  if (history.rule !== null) query.set('rule', history.rule);
  return `api/v1/alerts?${query}`;
}

function noRowsText() {
  const history = state.alertHistory;
  const what = [history.state ?? '', history.rule ? `${history.rule}` : ''].filter(Boolean).join(' ');
  return `No ${what ? `${what} ` : ''}alert transitions in the last ${history.rangeKey}.`;
}

/** Load the transitions of the chosen range, state and rule, newest first; return the answer
 * (null when it failed or a newer request replaced it). */
export async function loadAlertHistory() {
  const history = state.alertHistory;
  const gen = ++history.gen;
  const status = document.getElementById('alert-history-status');
  status.textContent = 'loading…';
  let answer;
  try {
    answer = await fetchJson(historyUrl(), undefined);
  } catch (error) {
    if (gen !== history.gen) return null;
    status.textContent = '';
    // an older server, without alerts: the section stays hidden
    if (error.status === 404) document.getElementById('alerts-section').hidden = true;
    setNote('alert-history-note', `The alert history could not be loaded: ${error.message}`);
    return null;
  }
  if (gen !== history.gen) return null;
  document.getElementById('alerts-section').hidden = false;
  const events = answer && Array.isArray(answer.events) ? answer.events.filter(validAlert) : [];
  for (const item of [...events, ...state.alerts.active]) history.rulesSeen.add(item.rule);
  fillRules();
  document.querySelector('#alert-history tbody').replaceChildren(...events.map(eventRow));
  document.getElementById('alert-history').hidden = events.length === 0;
  setNote('alert-history-note', events.length === 0 ? noRowsText()
    : answer.truncated === true ? `The newest ${events.length} transitions are shown: choose a shorter range or a rule for the rest.` : '');
  status.textContent = `${events.length} ${events.length === 1 ? 'transition' : 'transitions'}, last ${history.rangeKey}`;
  return answer;
}

function choose(change) {
  change(state.alertHistory);
  showFilters();
  loadAlertHistory();
}

export function bindAlertHistory() {
  for (const button of document.querySelectorAll('[data-alert-state]')) {
    button.addEventListener('click', () => choose((history) => {
      const value = button.dataset.alertState;
      history.state = STATES.includes(value) ? value : null;
    }));
  }
  for (const button of document.querySelectorAll('[data-alert-range]')) {
    button.addEventListener('click', () => choose((history) => {
      if (Object.prototype.hasOwnProperty.call(ALERT_RANGES_S, button.dataset.alertRange)) {
        history.rangeKey = button.dataset.alertRange;
      }
    }));
  }
  const select = document.getElementById('alert-rule');
  select.addEventListener('change', () => choose((history) => {
    history.rule = select.value || null;
  }));
  showFilters();
}
