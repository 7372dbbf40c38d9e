/**
 * The synced player: the page's one <video>, for direct files and HLS (hls.js), with its
 * subtitles, custom controls, the correction loop and the autoplay fallback.
 *
 * No command is ever derived from the video element's own events: commands come only from
 * the controls, keyboard shortcuts and Media Session handlers. Everything the page does to
 * the element itself (applying a remote state, correcting drift) therefore never echoes
 * back to the room; `wantPlaying` records what the page intends, so a divergence (a media
 * key, the browser pausing a background tab) is simply realigned with the room.
 */
import {
  DriftCorrector, expectedPosition, formatClock, seekLagFromLanding, VersionedState,
} from './sync.js';

const SUBTITLE_PREF_KEY = 'synctv.subtitles';
const SEEK_STEP_S = 5;
const VOLUME_STEP = 0.1;
// A remote state further than this from where the video is gets a seek at once; closer
// ones are left to the gentle correction loop.
const ALIGN_SEEK_S = 0.25;
const PLAY_RETRY_MS = 2000;
const NO_CONTROL_REASON = 'You may not control playback in this room: ask a room admin';

function sameOrigin(url) {
  try { return new URL(url, window.location.href).origin === window.location.origin; } catch { return true; }
}

export class SyncedPlayer {
  constructor({ elements, connection, settings, notify }) {
    this.el = elements;
    this.video = elements.video;
    this.connection = connection;
    this.notify = notify;
    this.state = new VersionedState();
    this.corrector = new DriftCorrector(settings);
    this.settings = settings;
    this.movies = new Map();
    this.loaded = { id: null, url: null, subtitles: '' };
    this.loadToken = 0;
    this.hls = null;
    this.Hls = null;
    this.canControl = false;
    this.wantPlaying = false;
    this.buffering = false;
    this.mutedByPolicy = false;
    this.blocked = false;
    this.lastPlayAttempt = -Infinity;
    this.pendingSeek = null;
    this.seekTimer = null;
    this.landing = null;
    this.landingTimer = null;
    this.landingRetries = 0;
    this.video.preservesPitch = true;
    this.bindVideo();
    this.bindControls();
    this.timer = setInterval(() => this.tick(), settings.correctionIntervalMs);
  }

  useSettings(settings) {
    this.settings = settings;
    this.corrector.settings = settings;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), settings.correctionIntervalMs);
  }

  // --- the room's state ---------------------------------------------------------------

  serverNow() { return this.connection.clock.serverNow(Date.now()); }

  expected() {
    const playback = this.state.current;
    const position = expectedPosition(playback, this.serverNow());
    const duration = this.video.duration;
    return Number.isFinite(duration) && duration > 0 ? Math.min(position, duration) : position;
  }

  /** A playback state from the server; `fresh` for a snapshot, `force` for "sync now". */
  apply(playback, { fresh = false, force = false } = {}) {
    const held = this.state.current;
    const accepted = this.state.accept(playback, { fresh });
    if (!accepted && !(force && held && playback.version === held.version)) return false;
    this.corrector.reset();
    this.align();
    return true;
  }

  /** The playlist's movies, by id (to find the current one's URL and subtitles). */
  setMovies(movies) {
    this.movies = new Map(movies.map((movie) => [movie.id, movie]));
    const playback = this.state.current;
    const movie = playback && playback.movie_id ? this.movies.get(playback.movie_id) : null;
    const changed = (movie ? movie.id : null) !== this.loaded.id
      || (movie && (movie.url !== this.loaded.url
        || JSON.stringify(movie.subtitles || []) !== this.loaded.subtitles));
    if (changed) this.align();
  }

  setPermissions(permissions) {
    this.canControl = permissions.includes('control_playback');
    for (const control of [this.el.playToggle, this.el.seekBar, this.el.rateSelect]) {
      control.disabled = !this.canControl;
      control.title = this.canControl ? '' : NO_CONTROL_REASON;
    }
  }

  /** Bring the element to the room's state: movie, rate, play/pause, position. */
  align() {
    const playback = this.state.current;
    const movie = playback && playback.movie_id ? this.movies.get(playback.movie_id) : null;
    const subtitles = JSON.stringify(movie ? movie.subtitles || [] : []);
    if ((movie ? movie.id : null) !== this.loaded.id || (movie && movie.url !== this.loaded.url)) {
      this.load(movie);
      return;
    }
    if (subtitles !== this.loaded.subtitles) this.setTracks(movie);
    this.renderControls();
    if (!movie || this.video.readyState < 1) return;
    this.setRate(playback.rate);
    this.wantPlaying = playback.playing;
    if (playback.playing) {
      const expected = this.expected();
      if (Math.abs(this.video.currentTime - expected) > ALIGN_SEEK_S) {
        this.seekTo(expected + (this.corrector.seekLagMs / 1000) * playback.rate);
      }
      if (this.video.paused) {
        this.expectLanding(null);
        this.play();
      }
    } else {
      if (!this.video.paused) this.video.pause();
      if (Math.abs(this.video.currentTime - playback.position) > 0.02) this.seekTo(playback.position);
    }
    this.corrector.noteAction(performance.now());
  }

  // --- loading ------------------------------------------------------------------------

  async load(movie) {
    const token = ++this.loadToken;
    if (this.hls) { this.hls.destroy(); this.hls = null; }
    this.loaded = { id: movie ? movie.id : null, url: movie ? movie.url : null, subtitles: '' };
    this.buffering = false;
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.load();
    this.setTracks(movie);
    this.el.empty.hidden = Boolean(movie);
    this.renderControls();
    if (!movie) return;
    // <track> from another origin needs CORS; ask for it only then, so a plain cross-origin
    // video without CORS headers still plays.
    const crossOrigin = (movie.subtitles || []).some((track) => !sameOrigin(track.url));
    if (crossOrigin) this.video.crossOrigin = 'anonymous';
    else this.video.removeAttribute('crossorigin');
    const isHls = movie.type === 'hls' || /\.m3u8(\?|$)/i.test(movie.url);
    if (!isHls) {
      this.video.src = movie.url;
      return;
    }
    // hls.js wherever Media Source Extensions exist (the same player everywhere); the
    // browser's own HLS only where they do not (iOS Safari).
    const Hls = await this.loadHls();
    if (token !== this.loadToken) return;
    if (Hls && Hls.isSupported()) {
      this.hls = new Hls({ enableWorker: true });
      this.hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) this.notify(`The stream cannot be played: ${data.details}`);
      });
      this.hls.loadSource(movie.url);
      this.hls.attachMedia(this.video);
    } else if (this.video.canPlayType('application/vnd.apple.mpegurl')) {
      this.video.src = movie.url;
    } else {
      this.notify('This browser cannot play HLS streams.');
    }
  }

  async loadHls() {
    if (!this.Hls) {
      try {
        this.Hls = (await import(this.el.video.dataset.hlsSrc)).default;
      } catch {
        this.notify('The HLS player could not be loaded.');
        return null;
      }
    }
    return this.Hls;
  }

  setTracks(movie) {
    const subtitles = movie ? movie.subtitles || [] : [];
    this.loaded.subtitles = JSON.stringify(subtitles);
    for (const track of [...this.video.querySelectorAll('track')]) track.remove();
    const select = this.el.subtitleSelect;
    const off = document.createElement('option');
    off.value = '';
    off.textContent = subtitles.length ? 'Subtitles off' : 'No subtitles';
    const options = [off];
    subtitles.forEach((subtitle, index) => {
      const track = document.createElement('track');
      track.kind = 'subtitles';
      track.src = subtitle.url;
      track.label = subtitle.label || `Subtitles ${index + 1}`;
      if (subtitle.lang) track.srclang = subtitle.lang;
      this.video.append(track);
      const option = document.createElement('option');
      option.value = String(index);
      option.textContent = track.label;
      options.push(option);
    });
    select.replaceChildren(...options);
    select.disabled = subtitles.length === 0;
    const preferred = localStorage.getItem(SUBTITLE_PREF_KEY);
    const index = subtitles.findIndex((s) => (s.label || '') === preferred || (s.lang && s.lang === preferred));
    this.chooseSubtitle(index >= 0 ? String(index) : '', { remember: false });
  }

  chooseSubtitle(value, { remember = true } = {}) {
    this.el.subtitleSelect.value = value;
    const tracks = this.video.textTracks;
    for (let i = 0; i < tracks.length; i += 1) {
      tracks[i].mode = String(i) === value ? 'showing' : 'disabled';
    }
    if (remember) {
      const chosen = value === '' ? '' : tracks[Number(value)]?.label || '';
      localStorage.setItem(SUBTITLE_PREF_KEY, chosen);
    }
  }

  // --- what the page does to the element (never sent to the room) -----------------------

  setRate(rate) {
    this.video.preservesPitch = true;
    if (this.video.playbackRate !== rate) this.video.playbackRate = rate;
    this.el.rateSelect.value = String(rate);
  }

  seekTo(position) {
    const duration = this.video.duration;
    const target = Math.max(0, Number.isFinite(duration) ? Math.min(position, duration) : position);
    // Only a seek made while the video plays measures the seek lag; any other checks its landing.
    this.expectLanding(this.wantPlaying && !this.video.paused ? this.corrector.seekLagMs : null);
    this.video.currentTime = target;
    this.corrector.noteAction(performance.now());
  }

  async play() {
    if (!this.video.paused || this.blocked) return;
    this.lastPlayAttempt = performance.now();
    try {
      await this.video.play();
    } catch (error) {
      if (error.name === 'NotAllowedError') this.autoplayRefused();
      // AbortError: a new load interrupted this play; the next align plays again.
    }
  }

  /** The browser refused to play with sound: overlay, and muted playback behind it. */
  async autoplayRefused() {
    this.el.autoplayOverlay.hidden = false;
    if (this.video.muted) { this.blocked = true; return; }
    this.video.muted = true;
    this.mutedByPolicy = true;
    this.renderVolume();
    try {
      await this.video.play();
    } catch {
      this.blocked = true;
    }
  }

  /** One click (a user gesture) on the overlay: sound on, in sync. */
  joinPlayback() {
    this.el.autoplayOverlay.hidden = true;
    this.el.unmuteBanner.hidden = true;
    this.blocked = false;
    if (this.mutedByPolicy) { this.video.muted = false; this.mutedByPolicy = false; }
    this.renderVolume();
    const playback = this.state.current;
    if (playback && playback.playing) {
      this.seekTo(this.expected() + (this.corrector.seekLagMs / 1000) * playback.rate);
      this.video.play().catch(() => this.autoplayRefused());
    }
  }

  watchMuted() {
    this.el.autoplayOverlay.hidden = true;
    this.el.unmuteBanner.hidden = !this.mutedByPolicy;
  }

  unmute() {
    this.video.muted = false;
    this.mutedByPolicy = false;
    this.el.unmuteBanner.hidden = true;
    this.renderVolume();
    if (this.wantPlaying && this.video.paused) this.joinPlayback();
  }

  // --- landing checks: where did a seek or a start really land? ------------------------

  /** The next seek or start is the page's own; check where it lands (aimed lag, or null). */
  expectLanding(aimedLagMs) {
    this.landing = { aimedLagMs };
    clearTimeout(this.landingTimer);
  }

  scheduleLandingCheck() {
    if (!this.landing || this.video.paused || this.video.seeking) return;
    clearTimeout(this.landingTimer);
    this.landingTimer = setTimeout(() => this.checkLanding(), this.settings.landingCheckMs);
  }

  /**
   * Starting the media pipeline and seeking take a moment the page cannot know in advance:
   * measure the miss, learn the seek lag from it, and seek once more (twice at most) when the
   * miss is large, or let the correction loop nudge a small one at once.
   */
  checkLanding() {
    const landing = this.landing;
    const playback = this.state.current;
    if (!landing || !playback || !playback.playing || this.video.paused || this.video.seeking || this.buffering) return;
    this.landing = null;
    const drift = this.video.currentTime - this.expected();
    if (landing.aimedLagMs !== null) {
      this.corrector.recordSeekLag(seekLagFromLanding(landing.aimedLagMs, drift, playback.rate));
    }
    if (Math.abs(drift) > this.settings.landingSeekS && landing.retry !== false && this.landingRetries < 2) {
      this.landingRetries += 1;
      this.seekTo(this.expected() + (this.corrector.seekLagMs / 1000) * playback.rate);
      return;
    }
    this.landingRetries = 0;
    if (Math.abs(drift) > this.settings.driftRestoreS) this.corrector.endSettle();
  }

  // --- the correction loop --------------------------------------------------------------

  tick() {
    const playback = this.state.current;
    this.renderControls();
    if (!playback || !this.loaded.id || this.video.readyState < 1 || this.pendingSeek !== null) return;
    if (playback.playing && this.video.paused && !this.video.ended && !this.blocked
        && performance.now() - this.lastPlayAttempt > PLAY_RETRY_MS) {
      this.expectLanding(null);
      this.play();
      return;
    }
    if (!playback.playing && !this.video.paused) { this.align(); return; }
    const result = this.corrector.step({
      nowMs: performance.now(),
      currentTime: this.video.currentTime,
      expected: this.expected(),
      roomRate: playback.rate,
      playing: playback.playing && !this.video.paused,
      readyState: this.video.readyState,
      seeking: this.video.seeking,
      buffering: this.buffering,
    });
    if (result.action === 'rate') {
      this.video.playbackRate = result.rate;
    } else if (result.action === 'seek') {
      if (result.rate) this.video.playbackRate = result.rate;
      this.seekTo(result.position);
      // A corrective seek is never repeated by its landing check (one per seekCooldownMs).
      this.landing.retry = false;
    }
  }

  bindVideo() {
    const video = this.video;
    video.addEventListener('loadedmetadata', () => this.align());
    video.addEventListener('waiting', () => { this.buffering = true; });
    video.addEventListener('playing', () => {
      this.buffering = false;
      if (!this.mutedByPolicy) this.el.autoplayOverlay.hidden = true;
      this.scheduleLandingCheck();
    });
    video.addEventListener('canplay', () => { this.buffering = false; });
    video.addEventListener('seeked', () => this.scheduleLandingCheck());
    video.addEventListener('timeupdate', () => this.renderControls());
    video.addEventListener('durationchange', () => this.renderControls());
    video.addEventListener('volumechange', () => this.renderVolume());
    video.addEventListener('error', () => {
      const error = video.error;
      if (error && this.loaded.id) this.notify(`This video cannot be played (${error.message || `error ${error.code}`}).`);
    });
  }

  // --- the user's commands ------------------------------------------------------------

  command(frame) {
    return this.connection.send(frame).catch((error) => {
      this.notify(error.message);
      this.align(); // back to the room's state
    });
  }

  togglePlay() {
    if (!this.canControl || !this.loaded.id) return;
    const playback = this.state.current;
    if (playback && playback.playing) {
      this.wantPlaying = false;
      this.video.pause();
      this.command({ type: 'pause', position: this.video.currentTime });
    } else {
      // Played inside the click: the user's gesture also lifts the autoplay block.
      this.wantPlaying = true;
      this.blocked = false;
      if (this.mutedByPolicy) this.unmute();
      this.expectLanding(null);
      this.video.play().catch(() => {});
      this.command({ type: 'play' });
    }
    this.corrector.noteAction(performance.now());
  }

  /** Seek after the user stops dragging or pressing keys for seekDebounceMs. */
  requestSeek(position) {
    if (!this.canControl || !this.loaded.id) return;
    this.pendingSeek = Math.max(0, position);
    this.renderControls();
    clearTimeout(this.seekTimer);
    this.seekTimer = setTimeout(() => {
      const target = this.pendingSeek;
      this.pendingSeek = null;
      const rate = this.state.current ? this.state.current.rate : 1;
      this.seekTo(this.wantPlaying ? target + (this.corrector.seekLagMs / 1000) * rate : target);
      this.command({ type: 'seek', position: target });
    }, this.settings.seekDebounceMs);
  }

  seekBy(delta) {
    const from = this.pendingSeek ?? this.video.currentTime;
    this.requestSeek(from + delta);
  }

  setRoomRate(rate) {
    if (!this.canControl) return;
    this.setRate(rate);
    this.corrector.noteAction(performance.now());
    this.command({ type: 'rate', rate });
  }

  syncNow() {
    this.connection.send({ type: 'sync' })
      .then((frame) => { this.corrector.reset(); this.apply(frame.playback, { force: true }); })
      .catch((error) => this.notify(error.message));
  }

  bindControls() {
    const el = this.el;
    el.playToggle.addEventListener('click', () => this.togglePlay());
    el.seekBar.addEventListener('input', () => this.requestSeek(Number(el.seekBar.value)));
    el.rateSelect.addEventListener('change', () => this.setRoomRate(Number(el.rateSelect.value)));
    el.subtitleSelect.addEventListener('change', () => this.chooseSubtitle(el.subtitleSelect.value));
    el.syncNow.addEventListener('click', () => this.syncNow());
    el.muteToggle.addEventListener('click', () => { this.video.muted = !this.video.muted; this.mutedByPolicy = false; el.unmuteBanner.hidden = true; });
    el.volume.addEventListener('input', () => { this.video.volume = Number(el.volume.value); this.video.muted = false; });
    el.fullscreen.addEventListener('click', () => this.toggleFullscreen());
    el.joinPlayback.addEventListener('click', () => this.joinPlayback());
    el.watchMuted.addEventListener('click', () => this.watchMuted());
    el.unmute.addEventListener('click', () => this.unmute());
    el.box.addEventListener('dblclick', () => this.toggleFullscreen());
    document.addEventListener('keydown', (event) => this.shortcut(event));
    if ('mediaSession' in navigator) {
      const session = navigator.mediaSession;
      session.setActionHandler('play', () => { if (!this.wantPlaying) this.togglePlay(); });
      session.setActionHandler('pause', () => { if (this.wantPlaying) this.togglePlay(); });
    }
  }

  shortcut(event) {
    const target = event.target;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (target.closest && target.closest('input, textarea, select, [contenteditable]')) return;
    const actions = {
      ' ': () => this.togglePlay(),
      k: () => this.togglePlay(),
      ArrowLeft: () => this.seekBy(-SEEK_STEP_S),
      ArrowRight: () => this.seekBy(SEEK_STEP_S),
      ArrowUp: () => { this.video.muted = false; this.video.volume = Math.min(1, this.video.volume + VOLUME_STEP); },
      ArrowDown: () => { this.video.volume = Math.max(0, this.video.volume - VOLUME_STEP); },
      f: () => this.toggleFullscreen(),
      m: () => { this.video.muted = !this.video.muted; },
    };
    const action = actions[event.key];
    if (!action) return;
    if (target.tagName === 'BUTTON' && (event.key === ' ' || event.key === 'Enter')) return;
    event.preventDefault();
    action();
  }

  toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else this.el.box.requestFullscreen().catch(() => {});
  }

  // --- what the controls show -----------------------------------------------------------

  renderControls() {
    const el = this.el;
    const duration = Number.isFinite(this.video.duration) ? this.video.duration : 0;
    const shown = this.pendingSeek ?? this.video.currentTime;
    el.seekBar.max = String(duration);
    if (document.activeElement !== el.seekBar || this.pendingSeek === null) el.seekBar.value = String(shown);
    el.timeDisplay.textContent = `${formatClock(shown)} / ${formatClock(duration)}`;
    const playing = this.state.current ? this.state.current.playing : false;
    el.playToggle.textContent = playing ? '❚❚' : '▶';
    el.playToggle.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    el.playToggle.dataset.playing = String(playing);
  }

  renderVolume() {
    this.el.volume.value = String(this.video.muted ? 0 : this.video.volume);
    this.el.muteToggle.classList.toggle('is-muted', this.video.muted);
    this.el.muteToggle.setAttribute('aria-label', this.video.muted ? 'Unmute' : 'Mute');
  }
}
