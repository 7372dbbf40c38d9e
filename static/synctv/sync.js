/**
 * sync.js — the playback-sync rules of the SyncTV browser client, as pure logic.
 *
 * No DOM, no window, no timers: every time is passed in, so it all runs under `node --test`.
 * The approach follows Jellyfin SyncPlay, Syncplay and OpenTogetherTube:
 *  - Clock: NTP-style ping/pong samples; the offset to the server clock is taken from the
 *    kept sample with the lowest round trip (the least asymmetric delay), seeded roughly
 *    from the snapshot's server_time until the first sample arrives.
 *  - Position: the server never ticks; it stores {position, updated_at, rate, playing}, and
 *    the expected position is extrapolated on the client from the estimated server time.
 *  - State: a playback is applied only when its version is newer, except a fresh snapshot
 *    (on every (re)connect), which is the truth.
 *  - Drift: below a threshold leave it alone; moderate drift is closed gently by nudging
 *    playbackRate by a few percent; large drift is fixed by one seek that aims where the room
 *    will be when the seek completes, with a cooldown. Nothing is corrected while the video
 *    seeks or buffers, or for a settle window after any action, so the client's own seeks
 *    and buffering never count as drift.
 *  - Reconnect: exponential backoff with jitter.
 * Every threshold is a named setting (DEFAULT_SETTINGS) the settings panel can override.
 */

export const DEFAULT_SETTINGS = Object.freeze({
  clockSamplesOnConnect: 5,     // ping samples right after connecting ...
  clockSampleGapMs: 1000,       // ... one second apart
  clockSampleIntervalMs: 30000, // then one every 30 s
  clockSamplesKept: 8,          // keep the last 8; use the lowest round trip
  correctionIntervalMs: 500,    // how often the page calls DriftCorrector.step
  minReadyState: 3,             // HAVE_FUTURE_DATA
  settleMs: 1500,               // no correction within this after any seek, play, rate or movie change
  driftIgnoreS: 0.05,           // below: leave alone
  driftSeekS: 1.0,              // above: seek; between: nudge playbackRate
  driftRestoreS: 0.02,          // a nudge ends once drift is under this
  maxRateNudge: 0.08,           // playbackRate = roomRate * (1 ± up to 8 %)
  rateNudgeWindowS: 1.0,        // nudge = min(maxRateNudge, |drift| / rateNudgeWindowS), at least minRateNudge
  minRateNudge: 0.01,
  seekCooldownMs: 3000,         // at most one corrective seek per 3 s
  initialSeekLagMs: 150,
  landingCheckMs: 400,          // this long after a seek or start lands, the page checks where it landed ...
  landingSeekS: 0.1,            // ... and seeks once more if it missed by more than this        // seek-lag estimate before any seek was measured
  seekDebounceMs: 300,          // the page debounces the user's seeks by this
  reconnectBaseMs: 500,
  reconnectMaxMs: 15000,
  reconnectJitter: 0.3,         // ± 30 %
});

const limit = (min, max, label, unit) => Object.freeze({ min, max, label, unit });

/** Bounds and labels for the settings panel; mergeSettings clamps into them. */
export const SETTING_LIMITS = Object.freeze({
  clockSamplesOnConnect: limit(1, 20, 'Clock samples on connect', 'samples'),
  clockSampleGapMs: limit(100, 10000, 'Gap between first clock samples', 'ms'),
  clockSampleIntervalMs: limit(1000, 600000, 'Clock sample interval', 'ms'),
  clockSamplesKept: limit(1, 64, 'Clock samples kept', 'samples'),
  correctionIntervalMs: limit(100, 5000, 'Drift check interval', 'ms'),
  minReadyState: limit(0, 4, 'Minimum video readyState', 'state'),
  settleMs: limit(0, 10000, 'Settle time after an action', 'ms'),
  driftIgnoreS: limit(0, 1, 'Ignore drift below', 's'),
  driftSeekS: limit(0.1, 30, 'Seek when drift exceeds', 's'),
  driftRestoreS: limit(0, 1, 'End a rate nudge below', 's'),
  maxRateNudge: limit(0, 0.5, 'Largest rate nudge', 'fraction'),
  rateNudgeWindowS: limit(0.1, 10, 'Rate nudge window', 's'),
  minRateNudge: limit(0, 0.5, 'Smallest rate nudge', 'fraction'),
  seekCooldownMs: limit(0, 60000, 'Cooldown between corrective seeks', 'ms'),
  initialSeekLagMs: limit(0, 2000, 'Assumed seek lag', 'ms'),
  landingCheckMs: limit(100, 5000, 'Check a seek this long after it lands', 'ms'),
  landingSeekS: limit(0.02, 5, 'Seek again when a landing misses by', 's'),
  seekDebounceMs: limit(0, 2000, 'Seek debounce', 'ms'),
  reconnectBaseMs: limit(50, 60000, 'First reconnect delay', 'ms'),
  reconnectMaxMs: limit(500, 300000, 'Longest reconnect delay', 'ms'),
  reconnectJitter: limit(0, 1, 'Reconnect jitter', 'fraction'),
});

const INTEGER_UNITS = new Set(['samples', 'state']);
const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
const validRate = (rate) => (isNum(rate) && rate > 0 ? rate : 1);

/** DEFAULT_SETTINGS with the known, finite, non-negative numeric overrides, clamped. */
export function mergeSettings(overrides) {
  const merged = { ...DEFAULT_SETTINGS };
  if (overrides && typeof overrides === 'object') {
    for (const key of Object.keys(DEFAULT_SETTINGS)) {
      const value = overrides[key];
      if (!isNum(value) || value < 0) continue;
      const { min, max, unit } = SETTING_LIMITS[key];
      const v = INTEGER_UNITS.has(unit) ? Math.round(value) : value;
      merged[key] = clamp(v, min, max);
    }
  }
  return Object.freeze(merged);
}

/** Server clock offset from ping/pong samples (the lowest round trip wins). */
export class ClockSync {
  constructor(keep = DEFAULT_SETTINGS.clockSamplesKept) {
    this.keep = Math.max(1, Math.floor(isNum(keep) ? keep : DEFAULT_SETTINGS.clockSamplesKept));
    this.reset();
  }

  /** Returns true if the sample was kept. */
  addSample(clientSendMs, serverTimeMs, clientReceiveMs) {
    if (![clientSendMs, serverTimeMs, clientReceiveMs].every(isNum)) return false;
    const rtt = clientReceiveMs - clientSendMs;
    if (rtt < 0) return false;
    this._samples.push({ rtt, offset: serverTimeMs - (clientSendMs + clientReceiveMs) / 2 });
    if (this._samples.length > this.keep) this._samples.splice(0, this._samples.length - this.keep);
    return true;
  }

  seed(serverTimeMs, clientReceiveMs) {
    if (isNum(serverTimeMs) && isNum(clientReceiveMs)) this._seed = serverTimeMs - clientReceiveMs;
  }

  _best() {
    let best = null;
    for (const s of this._samples) if (!best || s.rtt <= best.rtt) best = s; // ties: the newest
    return best;
  }

  get offsetMs() {
    const best = this._best();
    if (best) return best.offset;
    return this._seed ?? 0;
  }

  get rttMs() {
    const best = this._best();
    return best ? best.rtt : null;
  }

  get sampleCount() {
    return this._samples.length;
  }

  serverNow(clientNowMs) {
    return clientNowMs + this.offsetMs;
  }

  reset() {
    this._samples = [];
    this._seed = null;
  }
}

/** Where the room is at server time `serverNowMs`, in seconds (never negative). */
export function expectedPosition(playback, serverNowMs) {
  if (!playback) return 0;
  const position = isNum(playback.position) ? playback.position : 0;
  if (!playback.playing || !isNum(serverNowMs) || !isNum(playback.updated_at)) {
    return Math.max(0, position);
  }
  const elapsedS = Math.max(0, serverNowMs - playback.updated_at) / 1000;
  return Math.max(0, position + elapsedS * validRate(playback.rate));
}

/** Holds the newest playback by version; a fresh snapshot always replaces it. */
export class VersionedState {
  constructor() {
    this._current = null;
  }

  accept(playback, { fresh = false } = {}) {
    if (!playback || typeof playback !== 'object') return false;
    const held = this._current;
    if (held === null || fresh || (isNum(playback.version) && playback.version > held.version)) {
      this._current = playback;
      return true;
    }
    return false;
  }

  get current() {
    return this._current;
  }

  reset() {
    this._current = null;
  }
}

/** Decides, once per correctionIntervalMs, what to do about the video's drift. */
export class DriftCorrector {
  constructor(settings = DEFAULT_SETTINGS) {
    this.settings = settings;
    this._seekLag = null; // measured seek lag (ms); null until the first measurement
    this.reset();
  }

  noteAction(nowMs) {
    this._settleUntil = nowMs + this.settings.settleMs;
  }

  recordSeekLag(ms) {
    if (!isNum(ms)) return;
    const lag = clamp(ms, 0, 2000);
    this._seekLag = this._seekLag === null ? lag : 0.5 * this._seekLag + 0.5 * lag;
  }

  /** End the settle window now: a checked landing showed drift worth correcting at once. */
  endSettle() {
    this._settleUntil = -Infinity;
  }

  get seekLagMs() {
    return this._seekLag ?? this.settings.initialSeekLagMs;
  }

  get nudging() {
    return this._nudging;
  }

  reset() {
    this._nudging = false;
    this._afterSeek = false; // the first check after a corrective seek finishes its job
    this._lastSeekAt = -Infinity;
    this._settleUntil = -Infinity;
  }

  _nudgeRate(drift, roomRate) {
    const s = this.settings;
    const nudge = Math.min(s.maxRateNudge, Math.max(s.minRateNudge, Math.abs(drift) / s.rateNudgeWindowS));
    return roomRate * (1 - Math.sign(drift) * nudge);
  }

  _restore(roomRate, drift) {
    this._nudging = false;
    return { action: 'rate', rate: roomRate, drift };
  }

  step({ nowMs, currentTime, expected, roomRate, playing, readyState, seeking, buffering }) {
    const s = this.settings;
    const rate = validRate(roomRate);
    if (!playing) return this._nudging ? this._restore(rate, null) : { action: 'none', drift: null };
    if (seeking || buffering || !(readyState >= s.minReadyState)) return { action: 'none', drift: null };
    if (!isNum(currentTime) || !isNum(expected)) return { action: 'none', drift: null };

    const drift = currentTime - expected;
    if (nowMs < this._settleUntil) return { action: 'none', drift };

    const size = Math.abs(drift);
    if (size > s.driftSeekS) {
      if (nowMs - this._lastSeekAt < s.seekCooldownMs) return { action: 'none', drift };
      this._lastSeekAt = nowMs;
      this._nudging = false;
      this._afterSeek = true;
      this.noteAction(nowMs);
      // `rate` is roomRate: the page applies it too, so a nudge in force ends with the seek.
      return { action: 'seek', position: expected + (this.seekLagMs / 1000) * rate, rate, drift };
    }
    if (this._nudging) {
      if (size < s.driftRestoreS) return this._restore(rate, drift);
      return { action: 'rate', rate: this._nudgeRate(drift, rate), drift };
    }
    // A corrective seek misses by the error of the seek-lag estimate (150 ms assumed, 200 ms
    // taken: 50 ms off). Right after one, nudge any miss >= driftRestoreS away rather than
    // leave it in the ignore band; otherwise leave drift under driftIgnoreS alone.
    const threshold = this._afterSeek ? s.driftRestoreS : s.driftIgnoreS;
    this._afterSeek = false;
    if (size < threshold) return { action: 'none', drift };
    this._nudging = true;
    return { action: 'rate', rate: this._nudgeRate(drift, rate), drift };
  }
}

/**
 * The seek lag a landing reveals: a seek aimed `aimedLagMs` ahead of the room that landed
 * `landingDriftS` off (positive = ahead) would have been exact with this lag (ms).
 */
export function seekLagFromLanding(aimedLagMs, landingDriftS, roomRate) {
  if (!isNum(aimedLagMs) || !isNum(landingDriftS)) return aimedLagMs;
  return aimedLagMs - (landingDriftS / validRate(roomRate)) * 1000;
}

/** Delay before reconnect attempt `attempt` (0, 1, 2 ...), in ms. */
export function backoffDelay(attempt, settings = DEFAULT_SETTINGS, random = Math.random) {
  const n = isNum(attempt) && attempt > 0 ? Math.floor(attempt) : 0;
  const base = Math.min(settings.reconnectMaxMs, settings.reconnectBaseMs * 2 ** n);
  const r = random();
  const jitter = 1 + settings.reconnectJitter * (2 * (isNum(r) ? clamp(r, 0, 1) : 0.5) - 1);
  return Math.max(0, Math.round(base * jitter));
}

/** 0 -> "0:00", 75.4 -> "1:15", 3725 -> "1:02:05". */
export function formatClock(seconds) {
  const total = isNum(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
