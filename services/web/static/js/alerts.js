/* The alerts now: the banner of what fires, the cards' badges and the alerts section. The
 * websocket's {type: alerts} messages say what fires, after each snapshot and whenever the
 * alerts, silences or delivery counts change (each second while an alert keeps firing); a
 * server that never had an alert sends none, so api/v1/alerts says it at the start. */

import { updateAlertBadges } from './alert_badges.js';
import { AlertList } from './alert_items.js';
import { renderAlertPanel } from './alert_panel.js';
import {
  SEVERITIES, isSilenced, severityColour, validAlert, validSilence, worstFirst, worstSeverity,
} from './alert_text.js';
import { loadAlertHistory } from './alerts_history.js';
import { putText } from './format.js';
import { state } from './state.js';

let bannerList = null;

function summaryText(firing) {
  const counts = SEVERITIES.map((severity) => [severity, firing.filter((alert) => alert.severity === severity).length])
    .filter(([, count]) => count > 0)
    .map(([severity, count]) => `${count} ${severity}`);
  const other = firing.filter((alert) => !SEVERITIES.includes(alert.severity)).length;
  if (other) counts.push(`${other} other`);
  const silenced = firing.filter(isSilenced).length;
  return `Firing now: ${counts.join(', ')}${silenced ? ` (${silenced} silenced)` : ''}`;
}

/** Show the firing alerts, worst first, under the navbar; hide the banner when none fires. */
function renderBanner() {
  const firing = state.alerts.active.filter((alert) => alert.state === 'firing').sort(worstFirst);
  const banner = document.getElementById('alert-banner');
  const box = document.getElementById('alert-banner-box');
  if (bannerList === null) bannerList = new AlertList(document.getElementById('alert-banner-list'), false);
  banner.dataset.firing = String(firing.length);
  box.hidden = firing.length === 0;
  const worst = worstSeverity(firing);
  const className = `alert alert-${worst === null ? 'secondary' : severityColour(worst)} py-2 px-3 mb-3`;
  if (box.className !== className) box.className = className;
  putText(document.getElementById('alert-banner-title'), firing.length ? summaryText(firing) : '');
  bannerList.show(firing);
}

/**
 * Take what the server says of the alerts now: the alerts pending or firing, the silences in
 * force, the delivery counts; fromSocket: a websocket message, newer than any API answer.
 */
export function takeAlerts(message, fromSocket) {
  if (fromSocket) state.alerts.live = true;
  const active = Array.isArray(message.active) ? message.active.filter(validAlert) : [];
  state.alerts.active = active;
  state.alerts.silences = Array.isArray(message.silences) ? message.silences.filter(validSilence) : [];
  state.alerts.deliveries = message.deliveries && typeof message.deliveries === 'object' ? message.deliveries : null;
  renderBanner();
  updateAlertBadges();
  renderAlertPanel();
  // The history changes with an alert's transitions only, not with each reading of one that fires.
  const signature = JSON.stringify(active.map((alert) => [alert.key, alert.state, alert.fired_ts]));
  if (signature !== state.alerts.signature) {
    state.alerts.signature = signature;
    if (fromSocket) loadAlertHistory();
  }
}

/** Load the alerts' history; until the websocket speaks of the alerts, its answer says what fires. */
export async function startAlerts() {
  const answer = await loadAlertHistory();
  // (an answer filtered by state or rule lists only the alerts of that state or rule)
  const unfiltered = state.alertHistory.state === null && state.alertHistory.rule === null;
  if (answer && unfiltered && !state.alerts.live) takeAlerts(answer, false);
}
