/* Silencing: the 1 h / 4 h / 24 h buttons of a firing alert, and the End button of a silence.
 * Neither changes the page itself: the server's next alerts message (within a second) does. */

import { postJson } from './api.js';
import { element } from './format.js';

const DURATIONS = [['1 h', 3600], ['4 h', 4 * 3600], ['24 h', 24 * 3600]];

function setBusy(buttons, busy) {
  for (const button of buttons) button.disabled = busy;
}

/**
 * Return the silence buttons of one alert, and a note for what went wrong; keyOf() gives the
 * alert's key when a button is pressed (the control outlives one message).
 */
export function buildSilenceControl(keyOf) {
  const control = element('span', 'alert-silence');
  control.setAttribute('role', 'group');
  control.setAttribute('aria-label', 'Silence this alert for');
  const note = element('span', 'small text-danger-emphasis alert-silence-error');
  note.hidden = true;
  const buttons = DURATIONS.map(([label, seconds]) => {
    const button = element('button', 'btn btn-outline-light btn-sm alert-silence-button', label);
    button.type = 'button';
    button.dataset.durationS = String(seconds);
    // No tooltip: what silencing does is said once, in words, under the alerts (alert_panel.js);
    // the group's label names what each button does.
    button.addEventListener('click', async () => {
      setBusy(buttons, true);
      note.hidden = true;
      try {
        await postJson('api/v1/silences', { key: keyOf(), duration_s: seconds });
      } catch (error) {
        note.textContent = `Not silenced: ${error.message}`;
        note.hidden = false;
      } finally {
        setBusy(buttons, false);
      }
    });
    return button;
  });
  control.append(element('span', 'small', 'Silence'), ...buttons, note);
  return control;
}

/** Return the End button of a silence, and its note for what went wrong. */
export function buildEndButton(silenceId, note) {
  const button = element('button', 'btn btn-outline-secondary btn-sm alert-silence-end', 'End');
  button.type = 'button';
  // no tooltip: the silence's own row says what it covers and until when
  button.addEventListener('click', async () => {
    button.disabled = true;
    note.hidden = true;
    try {
      await postJson(`api/v1/silences/${encodeURIComponent(silenceId)}/end`, {});
    } catch (error) {
      note.textContent = `Not ended: ${error.message}`;
      note.hidden = false;
      button.disabled = false;
    }
  });
  return button;
}
