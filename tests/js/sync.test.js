// Unit tests for static/synctv/sync.js: `node --test tests/js/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  DEFAULT_SETTINGS,
  SETTING_LIMITS,
  mergeSettings,
  ClockSync,
  expectedPosition,
  VersionedState,
  DriftCorrector,
  backoffDelay,
  formatClock,
  seekLagFromLanding,
} from '../../static/synctv/sync.js';

const close = (actual, expected, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${actual} is not within ${eps} of ${expected}`);

// --- ClockSync -------------------------------------------------------------------------------

const CLIENT_AHEAD_MS = 7000; // the client's clock reads 7 s more than the server's

/** A ping sent at server time `serverSend`, `up` ms to the server, `down` ms back. */
function ping(clock, serverSend, up, down) {
  const send = serverSend + CLIENT_AHEAD_MS;
  clock.addSample(send, serverSend + up, send + up + down);
}

test('clock offset with a client clock 7 s ahead and asymmetric delays picks the lowest-rtt sample', () => {
  const clock = new ClockSync();
  ping(clock, 1_000_000, 120, 20); // rtt 140, asymmetric: offset off by 50 ms
  ping(clock, 1_001_000, 6, 4);    // rtt 10: off by 1 ms
  ping(clock, 1_002_000, 30, 90);  // rtt 120, off by -30 ms
  assert.equal(clock.sampleCount, 3);
  assert.equal(clock.rttMs, 10);
  assert.equal(clock.offsetMs, -CLIENT_AHEAD_MS + 1);
  assert.equal(clock.serverNow(2_000_000 + CLIENT_AHEAD_MS), 2_000_001);
});

test('clock keeps only the last 8 samples, so an old best sample ages out', () => {
  const clock = new ClockSync();
  ping(clock, 0, 2, 2); // the best, exact
  for (let i = 1; i <= 7; i++) ping(clock, i * 1000, 60, 20); // rtt 80, off by 20 ms
  assert.equal(clock.sampleCount, 8);
  assert.equal(clock.offsetMs, -CLIENT_AHEAD_MS);
  ping(clock, 8000, 60, 20); // the ninth pushes the best one out
  assert.equal(clock.sampleCount, 8);
  assert.equal(clock.rttMs, 80);
  assert.equal(clock.offsetMs, -CLIENT_AHEAD_MS + 20);
  const small = new ClockSync(2);
  for (let i = 0; i < 5; i++) ping(small, i * 1000, 10, 10);
  assert.equal(small.sampleCount, 2);
});

test('clock seed is used only before the first sample, and reset forgets both', () => {
  const clock = new ClockSync();
  assert.equal(clock.offsetMs, 0);
  assert.equal(clock.rttMs, null);
  clock.seed(5_000, 12_100); // snapshot server_time, received at client 12 100
  assert.equal(clock.offsetMs, -7_100);
  ping(clock, 20_000, 5, 5);
  assert.equal(clock.offsetMs, -CLIENT_AHEAD_MS);
  clock.seed(0, 99_999); // a later seed does not override samples
  assert.equal(clock.offsetMs, -CLIENT_AHEAD_MS);
  clock.reset();
  assert.equal(clock.sampleCount, 0);
  assert.equal(clock.offsetMs, 0);
});

test('clock ignores non-finite and negative-rtt samples', () => {
  const clock = new ClockSync();
  assert.equal(clock.addSample(NaN, 1, 2), false);
  assert.equal(clock.addSample(1, Infinity, 2), false);
  assert.equal(clock.addSample(1, 2, undefined), false);
  assert.equal(clock.addSample('1', 2, 3), false);
  assert.equal(clock.addSample(100, 50, 90), false); // received before it was sent
  assert.equal(clock.sampleCount, 0);
  assert.equal(clock.addSample(100, 50, 100), true); // rtt 0 is fine
  assert.equal(clock.offsetMs, -50);
});

// --- expectedPosition ------------------------------------------------------------------------

const pb = (over = {}) => ({ movie_id: 'm1', position: 12.5, playing: true, rate: 1, version: 7, updated_at: 1_000_000, ...over });

test('expectedPosition while playing advances with server time', () => {
  assert.equal(expectedPosition(pb(), 1_000_000), 12.5);
  assert.equal(expectedPosition(pb(), 1_002_500), 15);
});

test('expectedPosition while paused is the stored position', () => {
  assert.equal(expectedPosition(pb({ playing: false }), 1_060_000), 12.5);
  assert.equal(expectedPosition(null, 1), 0);
  assert.equal(expectedPosition(undefined, 1), 0);
});

test('expectedPosition at rate 1.5 advances 1.5 s per second', () => {
  assert.equal(expectedPosition(pb({ rate: 1.5 }), 1_004_000), 18.5);
});

test('expectedPosition with updated_at in the future does not go back, and is never negative', () => {
  assert.equal(expectedPosition(pb(), 999_000), 12.5);
  assert.equal(expectedPosition(pb({ position: -3, playing: false }), 1_000_000), 0);
});

// --- VersionedState --------------------------------------------------------------------------

test('VersionedState accepts the first state and only higher versions after it', () => {
  const state = new VersionedState();
  assert.equal(state.current, null);
  assert.equal(state.accept(pb({ version: 7 })), true);
  assert.equal(state.accept(pb({ version: 6, position: 1 })), false);
  assert.equal(state.accept(pb({ version: 7, position: 2 })), false);
  assert.equal(state.current.position, 12.5);
  assert.equal(state.accept(pb({ version: 8, position: 3 })), true);
  assert.equal(state.current.position, 3);
});

test('VersionedState accepts a fresh snapshot even with a lower version', () => {
  const state = new VersionedState();
  state.accept(pb({ version: 40 }));
  assert.equal(state.accept(pb({ version: 2, position: 0 }), { fresh: true }), true);
  assert.equal(state.current.version, 2);
  assert.equal(state.accept(pb({ version: 3 })), true);
  state.reset();
  assert.equal(state.current, null);
});

// --- DriftCorrector --------------------------------------------------------------------------

const T0 = 100_000;
/** One correction step with a healthy, playing video; `drift` seconds ahead of expected 10. */
const input = (drift, over = {}) => ({
  nowMs: T0, currentTime: 10 + drift, expected: 10, roomRate: 1,
  playing: true, readyState: 4, seeking: false, buffering: false, ...over,
});

test('drift of 49 ms is left alone', () => {
  const dc = new DriftCorrector();
  assert.equal(dc.step(input(0.049)).action, 'none');
  const r = dc.step(input(-0.049));
  assert.equal(r.action, 'none');
  close(r.drift, -0.049);
  assert.equal(dc.nudging, false);
});

test('drift of 60 ms starts a 6 % rate nudge: ahead slower, behind faster', () => {
  const ahead = new DriftCorrector().step(input(0.06));
  assert.equal(ahead.action, 'rate');
  close(ahead.rate, 0.94);
  close(ahead.drift, 0.06);
  const dc = new DriftCorrector();
  const behind = dc.step(input(-0.06));
  close(behind.rate, 1.06);
  assert.equal(dc.nudging, true);
});

test('drift of 0.9 s nudges, capped at 8 %', () => {
  close(new DriftCorrector().step(input(0.9)).rate, 0.92);
  close(new DriftCorrector().step(input(-0.9)).rate, 1.08);
  close(new DriftCorrector().step(input(1.0)).rate, 0.92); // exactly driftSeekS: still a nudge
});

test('rate nudge is at least minRateNudge', () => {
  const dc = new DriftCorrector(mergeSettings({ rateNudgeWindowS: 10 }));
  close(dc.step(input(-0.06)).rate, 1.01); // 0.06 / 10 = 0.6 % -> 1 %
});

test('drift of 1.2 s seeks to expected plus the seek-lag allowance and ends a nudge', () => {
  const dc = new DriftCorrector();
  dc.step(input(0.5));
  assert.equal(dc.nudging, true);
  const r = dc.step(input(1.2, { nowMs: T0 + 500 }));
  assert.equal(r.action, 'seek');
  close(r.position, 10.15); // initialSeekLagMs 150
  assert.equal(r.rate, 1);  // the nudge ends with the seek
  close(r.drift, 1.2);
  assert.equal(dc.nudging, false);
  const measured = new DriftCorrector();
  measured.recordSeekLag(300);
  close(measured.step(input(-1.2)).position, 10.3);
});

test('a second corrective seek within 3 s is refused', () => {
  const dc = new DriftCorrector();
  assert.equal(dc.step(input(5)).action, 'seek');
  assert.equal(dc.step(input(5, { nowMs: T0 + 2999 })).action, 'none');
  assert.equal(dc.step(input(5, { nowMs: T0 + 3000 })).action, 'seek');
});

test('no correction within the settle window after an action', () => {
  const dc = new DriftCorrector();
  dc.noteAction(T0);
  const r = dc.step(input(0.5, { nowMs: T0 + 1499 }));
  assert.equal(r.action, 'none');
  close(r.drift, 0.5);
  assert.equal(dc.step(input(5, { nowMs: T0 + 1499 })).action, 'none');
  assert.equal(dc.step(input(0.5, { nowMs: T0 + 1500 })).action, 'rate');
});

test('a corrective seek starts the settle window too', () => {
  const dc = new DriftCorrector();
  dc.step(input(2));
  assert.equal(dc.step(input(0.5, { nowMs: T0 + 1000 })).action, 'none');
  assert.equal(dc.step(input(0.5, { nowMs: T0 + 1500 })).action, 'rate');
});

test('after a corrective seek a miss of 20 ms or more is nudged away, even under driftIgnoreS', () => {
  const dc = new DriftCorrector();
  dc.step(input(3));
  const r = dc.step(input(-0.049, { nowMs: T0 + 1500 }));
  assert.equal(r.action, 'rate');
  close(r.rate, 1.049);
  const exact = new DriftCorrector();
  exact.step(input(3));
  assert.equal(exact.step(input(-0.019, { nowMs: T0 + 1500 })).action, 'none');
  assert.equal(exact.step(input(-0.049, { nowMs: T0 + 2000 })).action, 'none'); // only the first check
});

test('no correction while readyState is below HAVE_FUTURE_DATA (2)', () => {
  const dc = new DriftCorrector();
  assert.deepEqual(dc.step(input(5, { readyState: 2 })), { action: 'none', drift: null });
  assert.equal(dc.step(input(5, { readyState: 3 })).action, 'seek');
});

test('no correction while the video is seeking, and a nudge in force is kept', () => {
  const dc = new DriftCorrector();
  dc.step(input(0.3));
  assert.deepEqual(dc.step(input(5, { seeking: true })), { action: 'none', drift: null });
  assert.equal(dc.nudging, true);
});

test('no correction while the video is buffering', () => {
  const dc = new DriftCorrector();
  assert.deepEqual(dc.step(input(-5, { buffering: true })), { action: 'none', drift: null });
  assert.equal(dc.step(input(-5)).action, 'seek');
});

test('a paused room restores a nudge in force, and otherwise does nothing', () => {
  const dc = new DriftCorrector();
  dc.step(input(0.3, { roomRate: 1.25 }));
  assert.deepEqual(dc.step(input(0.3, { playing: false, roomRate: 1.25 })), { action: 'rate', rate: 1.25, drift: null });
  assert.equal(dc.nudging, false);
  assert.deepEqual(dc.step(input(5, { playing: false })), { action: 'none', drift: null });
});

test('a nudge ends under 20 ms with the rate restored to roomRate', () => {
  const dc = new DriftCorrector();
  dc.step(input(-0.3));
  const still = dc.step(input(-0.025)); // between restore and ignore: keep nudging, recomputed
  assert.equal(still.action, 'rate');
  close(still.rate, 1.025);
  assert.equal(dc.nudging, true);
  const done = dc.step(input(-0.019));
  assert.equal(done.action, 'rate');
  assert.equal(done.rate, 1);
  assert.equal(dc.nudging, false);
  assert.equal(dc.step(input(-0.019)).action, 'none');
});

test('rate nudges, restores and seek allowances scale with roomRate 1.5', () => {
  const dc = new DriftCorrector();
  close(dc.step(input(0.06, { roomRate: 1.5 })).rate, 1.5 * 0.94);
  close(dc.step(input(-0.9, { roomRate: 1.5 })).rate, 1.5 * 1.08);
  assert.equal(dc.step(input(0.01, { roomRate: 1.5 })).rate, 1.5);
  close(dc.step(input(2, { roomRate: 1.5 })).position, 10 + 0.15 * 1.5);
});

test('seek lag is an average clamped to [0, 2000] ms and survives reset', () => {
  const dc = new DriftCorrector();
  assert.equal(dc.seekLagMs, 150);
  dc.recordSeekLag(200);
  assert.equal(dc.seekLagMs, 200);
  dc.recordSeekLag(400);
  assert.equal(dc.seekLagMs, 300);
  dc.recordSeekLag(NaN);
  assert.equal(dc.seekLagMs, 300);
  dc.recordSeekLag(1e9);
  assert.equal(dc.seekLagMs, 1150);
  dc.recordSeekLag(-50);
  assert.equal(dc.seekLagMs, 575);
  dc.step(input(0.3));
  dc.reset();
  assert.equal(dc.nudging, false);
  assert.equal(dc.seekLagMs, 575);
});

test('the corrector follows settings replaced by the page', () => {
  const dc = new DriftCorrector();
  dc.settings = mergeSettings({ driftIgnoreS: 0.1 });
  assert.equal(dc.step(input(0.06)).action, 'none');
});

// --- settings, backoff, formatting -----------------------------------------------------------

test('mergeSettings ignores unknown and bad keys and clamps into SETTING_LIMITS', () => {
  const s = mergeSettings({
    driftSeekS: 2, settleMs: -5, driftIgnoreS: NaN, maxRateNudge: '0.2', bogus: 1,
    seekCooldownMs: Infinity, reconnectMaxMs: 1e12, driftRestoreS: 0, clockSamplesKept: 3.6,
  });
  assert.equal(s.driftSeekS, 2);
  assert.equal(s.settleMs, DEFAULT_SETTINGS.settleMs);
  assert.equal(s.driftIgnoreS, DEFAULT_SETTINGS.driftIgnoreS);
  assert.equal(s.maxRateNudge, DEFAULT_SETTINGS.maxRateNudge);
  assert.equal(s.seekCooldownMs, DEFAULT_SETTINGS.seekCooldownMs);
  assert.equal(s.reconnectMaxMs, SETTING_LIMITS.reconnectMaxMs.max);
  assert.equal(s.driftRestoreS, 0);
  assert.equal(s.clockSamplesKept, 4);
  assert.equal('bogus' in s, false);
  assert.ok(Object.isFrozen(s));
  assert.notEqual(mergeSettings(), DEFAULT_SETTINGS);
  assert.deepEqual(mergeSettings(null), DEFAULT_SETTINGS);
});

test('SETTING_LIMITS covers every setting and holds its default', () => {
  assert.deepEqual(Object.keys(SETTING_LIMITS).sort(), Object.keys(DEFAULT_SETTINGS).sort());
  for (const [key, { min, max, label, unit }] of Object.entries(SETTING_LIMITS)) {
    assert.ok(min <= DEFAULT_SETTINGS[key] && DEFAULT_SETTINGS[key] <= max, key);
    assert.equal(typeof label, 'string');
    assert.equal(typeof unit, 'string');
  }
  assert.ok(Object.isFrozen(DEFAULT_SETTINGS));
});

test('backoffDelay grows, caps and stays within the jitter', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 10].map((a) => backoffDelay(a, DEFAULT_SETTINGS, mid)),
    [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.equal(backoffDelay(0, DEFAULT_SETTINGS, () => 0), 350);
  assert.equal(backoffDelay(0, DEFAULT_SETTINGS, () => 1), 650);
  assert.equal(backoffDelay(99, DEFAULT_SETTINGS, () => 0.999999), 19500);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3);
    assert.ok(Number.isInteger(d) && d >= 2800 && d <= 5200, String(d));
  }
  assert.equal(backoffDelay(-1, DEFAULT_SETTINGS, mid), 500);
  assert.ok(backoffDelay(0, mergeSettings({ reconnectJitter: 1 }), () => 0) >= 0);
});

test('formatClock', () => {
  assert.equal(formatClock(0), '0:00');
  assert.equal(formatClock(75.4), '1:15');
  assert.equal(formatClock(3725), '1:02:05');
  assert.equal(formatClock(59.999), '0:59');
  assert.equal(formatClock(-3), '0:00');
  assert.equal(formatClock(NaN), '0:00');
  assert.equal(formatClock(Infinity), '0:00');
});

// --- simulation ------------------------------------------------------------------------------

/**
 * A simulated page and player: the room plays from roomPosition at server time 0; the client clock is
 * 7 s ahead and learned from ping samples; the page calls step every 500 ms; the video advances
 * by its playbackRate, and a seek lands 200 ms after it was asked for (frozen meanwhile).
 */
function simulate(startOffsetS, roomRate = 1, roomPosition = 60) {
  const settings = DEFAULT_SETTINGS;
  const playback = { movie_id: 'm1', position: roomPosition, playing: true, rate: roomRate, version: 1, updated_at: 0 };
  const clock = new ClockSync();
  ping(clock, -2000, 30, 10);
  ping(clock, -1000, 8, 8);
  const dc = new DriftCorrector(settings);
  const video = { currentTime: roomPosition + startOffsetS, playbackRate: roomRate, seekTo: null, seekAt: 0 };
  const seeks = [];
  const drifts = [];
  const stepMs = settings.correctionIntervalMs;
  for (let t = 0; t <= 30_000; t += stepMs) {
    const expected = expectedPosition(playback, clock.serverNow(t + CLIENT_AHEAD_MS));
    drifts.push({ t, drift: video.currentTime - expected });
    const r = dc.step({
      nowMs: t, currentTime: video.currentTime, expected, roomRate,
      playing: true, readyState: 4, seeking: video.seekTo !== null, buffering: false,
    });
    if (r.action === 'rate') video.playbackRate = r.rate;
    if (r.action === 'seek') {
      seeks.push(t);
      video.seekTo = r.position;
      video.seekAt = t;
      video.playbackRate = r.rate;
    }
    // advance the video to t + stepMs
    let playFromMs = t;
    if (video.seekTo !== null) {
      const landMs = video.seekAt + 200;
      if (landMs > t + stepMs) continue; // still seeking: frozen
      video.currentTime = video.seekTo;
      video.seekTo = null;
      dc.recordSeekLag(landMs - video.seekAt);
      playFromMs = landMs;
    }
    video.currentTime += ((t + stepMs - playFromMs) / 1000) * video.playbackRate;
  }
  return { seeks, drifts, nudging: dc.nudging, rate: video.playbackRate };
}

test('simulation: players 0.4 s behind and 3 s ahead converge within 20 ms, seeking at most once per 3 s', () => {
  const cases = [[-0.4, 1, 60], [3, 1, 60], [3, 1, 10], [3, 1, 123.4], [-0.4, 1.5, 60], [3, 1.5, 60], [-1.6, 1, 60]];
  for (const [start, roomRate, roomPosition] of cases) {
    const { seeks, drifts, nudging, rate } = simulate(start, roomRate, roomPosition);
    const name = `start ${start} s, rate ${roomRate}, room at ${roomPosition} s`;
    const last = drifts[drifts.length - 1];
    assert.ok(Math.abs(last.drift) < 0.02, `${name}: ends ${last.drift} s off`);
    // settled well before the end, and stays settled
    for (const { t, drift } of drifts) {
      if (t >= 20_000) assert.ok(Math.abs(drift) < 0.02, `${name}: ${drift} s off at ${t} ms`);
    }
    assert.equal(nudging, false, name);
    assert.equal(rate, roomRate, name);
    for (let i = 1; i < seeks.length; i++) {
      assert.ok(seeks[i] - seeks[i - 1] >= 3000, `${name}: seeks at ${seeks}`);
    }
    if (Math.abs(start) <= DEFAULT_SETTINGS.driftSeekS) assert.equal(seeks.length, 0, name);
    else assert.equal(seeks.length, 1, name);
  }
});

test('a landing ahead of the room means the seek lag was overestimated', () => {
  assert.equal(seekLagFromLanding(150, 0.05, 1), 100);
  assert.equal(seekLagFromLanding(150, -0.1, 1), 250);
  assert.equal(seekLagFromLanding(150, 0.03, 1.5), 130);
  assert.equal(seekLagFromLanding(150, Number.NaN, 1), 150);
});

test('endSettle lets the next step correct at once', () => {
  const corrector = new DriftCorrector();
  corrector.noteAction(1000);
  const input = { nowMs: 1100, currentTime: 10.2, expected: 10, roomRate: 1, playing: true, readyState: 4, seeking: false, buffering: false };
  assert.equal(corrector.step(input).action, 'none');
  corrector.endSettle();
  assert.equal(corrector.step(input).action, 'rate');
});
