/* Each GPU card's alert badge: how many alerts fire on its GPU, in the worst one's colour. */

import { isSilenced, plural, severityColour, worstFirst, worstSeverity } from './alert_text.js';
import { element, putText } from './format.js';
import { state } from './state.js';

/** Return a card's alert badge, hidden until its GPU has a firing alert. */
export function buildAlertBadge() {
  const badge = element('span', 'badge alert-badge');
  badge.hidden = true;
  return badge;
}

/** Show on a GPU's card the alerts firing on it (the GPU is known by its UUID). */
export function updateAlertBadge(gpu) {
  const badge = gpu.els.alertBadge;
  const firing = state.alerts.active
    .filter((alert) => alert.state === 'firing' && alert.gpu_uuid === gpu.uuid)
    .sort(worstFirst);
  badge.hidden = firing.length === 0;
  badge.dataset.count = String(firing.length);
  gpu.els.card.dataset.alerts = String(firing.length);
  if (!firing.length) return;
  const worst = worstSeverity(firing);
  badge.dataset.severity = worst ?? 'silenced';
  const className = `badge alert-badge text-bg-${worst === null ? 'secondary' : severityColour(worst)}`;
  if (badge.className !== className) badge.className = className;
  putText(badge, plural(firing.length, 'alert'));
  const rules = firing.map((alert) => `${alert.rule} (${alert.severity}${isSilenced(alert) ? ', silenced' : ''})`);
  badge.title = `Firing on this GPU: ${rules.join(', ')}`;
}

export function updateAlertBadges() {
  for (const gpu of state.gpus.values()) updateAlertBadge(gpu);
}
