/** The per-user sync settings panel: the thresholds of sync.js, kept in localStorage. */
import { DEFAULT_SETTINGS, mergeSettings, SETTING_LIMITS } from './sync.js';

const STORAGE_KEY = 'synctv.sync-settings';
// The thresholds a viewer may want to tune; the rest keep their defaults.
const PANEL_KEYS = [
  'driftIgnoreS', 'driftSeekS', 'driftRestoreS', 'maxRateNudge', 'settleMs',
  'seekCooldownMs', 'correctionIntervalMs', 'seekDebounceMs', 'clockSampleIntervalMs',
];

export function loadSettings() {
  try {
    return mergeSettings(JSON.parse(localStorage.getItem(STORAGE_KEY) || '{}'));
  } catch {
    return mergeSettings({});
  }
}

/** The ⚙ panel, starting from `settings` (loadSettings()); `onChange` gets each new set. */
export function mountSettingsPanel({ form, fields, toggle, reset, close, settings, onChange }) {
  let current = settings;
  const save = (overrides) => {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(overrides));
    current = mergeSettings(overrides);
    onChange(current);
  };
  const render = () => {
    fields.replaceChildren(...PANEL_KEYS.map((key) => {
      const limit = SETTING_LIMITS[key];
      const label = document.createElement('label');
      label.textContent = `${limit.label} (${limit.unit}) `;
      const input = document.createElement('input');
      input.type = 'number';
      input.name = key;
      input.min = String(limit.min);
      input.max = String(limit.max);
      input.step = 'any';
      input.value = String(current[key]);
      input.title = `default ${DEFAULT_SETTINGS[key]}`;
      input.addEventListener('change', () => {
        const overrides = Object.fromEntries(PANEL_KEYS.map((k) => [k, Number(form.elements[k].value)]));
        save(overrides);
        input.value = String(current[key]);
      });
      label.append(input);
      return label;
    }));
  };
  toggle.addEventListener('click', () => { form.hidden = !form.hidden; if (!form.hidden) render(); });
  close.addEventListener('click', () => { form.hidden = true; });
  reset.addEventListener('click', () => { save({}); render(); });
}
