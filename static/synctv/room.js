/**
 * The room page: the gate (sign in, sign up, guest, the room's password), then the socket
 * wired to the player, playlist, chat and member list. Every frame type of SPEC §4 lands
 * here and is handed to the module it concerns.
 */
import { api, pageData, toast } from './api.js';
import { mountAuth, showAccount } from './auth.js';
import { ChatPanel } from './chat.js';
import { RoomConnection, renderConnectionState } from './connection.js';
import { MembersPanel } from './members.js';
import { SyncedPlayer } from './player.js';
import { PlaylistPanel } from './playlist.js';
import { loadSettings, mountSettingsPanel } from './settings.js';
import { formatClock } from './sync.js';

const ADMIN_ROLES = new Set(['creator', 'admin']);
const MAX_PRESENCE_LINES = 3;
const $ = (id) => document.getElementById(id);

const page = pageData();
const room = page.room;

function gateError(message) {
  $('gate-error').textContent = message;
  $('gate-error').hidden = !message;
}

/** With the room's password: become a member, then open the room. */
async function joinWithPassword(password) {
  try {
    await api.post(`/rooms/${encodeURIComponent(room.id)}/join`, { password });
  } catch (error) {
    gateError(error.message);
    return;
  }
  $('gate').hidden = true;
  openRoom();
}

/** A signed-in visitor: in at once, or asked for the password, or told why not. */
function enter() {
  const membership = page.membership;
  const user = page.user;
  if (membership && membership.status === 'banned') {
    $('gate').hidden = false;
    gateError('You are banned from this room.');
  } else if (membership) {
    openRoom();
  } else if (user.is_guest && !room.guests_allowed) {
    $('gate').hidden = false;
    gateError('This room does not admit guests: sign out, then sign in or create an account.');
  } else if (room.has_password) {
    $('gate').hidden = false;
    $('password-form').hidden = false;
    $('password-form').elements.password.focus();
  } else {
    openRoom(); // opening the socket of a room without a password joins it
  }
}

/** What a `playback` frame with `by` changed, as a chat system line. */
function describeChange(before, after, by, movies) {
  const who = by.name;
  if (!before || before.movie_id !== after.movie_id) {
    const movie = movies.get(after.movie_id);
    return movie ? `${who} started “${movie.title}”` : `${who} stopped the movie`;
  }
  if (before.rate !== after.rate) return `${who} set the speed to ${after.rate}×`;
  if (before.playing && !after.playing) return `${who} paused at ${formatClock(after.position)}`;
  if (!before.playing && after.playing) return `${who} played from ${formatClock(after.position)}`;
  return `${who} jumped to ${formatClock(after.position)}`;
}

function openRoom() {
  $('room').hidden = false;
  $('conn-state').hidden = false;
  let online = null;
  const notify = (message) => toast(message);
  const settings = loadSettings();
  const connection = new RoomConnection(room.id, {
    settings,
    onSnapshot: (snapshot) => onSnapshot(snapshot),
    onFrame: (frame) => onFrame(frame),
    onState: (state, detail) => onState(state, detail),
  });
  const player = new SyncedPlayer({
    connection,
    notify,
    settings,
    elements: {
      video: $('player'), box: $('player-box'), empty: $('player-empty'),
      playToggle: $('play-toggle'), seekBar: $('seek-bar'), timeDisplay: $('time-display'),
      rateSelect: $('rate-select'), subtitleSelect: $('subtitle-select'), syncNow: $('sync-now'),
      muteToggle: $('mute-toggle'), volume: $('volume'), fullscreen: $('fullscreen'),
      autoplayOverlay: $('autoplay-overlay'), joinPlayback: $('join-playback'),
      watchMuted: $('watch-muted'), unmuteBanner: $('unmute-banner'), unmute: $('unmute'),
    },
  });
  mountSettingsPanel({
    form: $('settings'), fields: $('settings-fields'), toggle: $('settings-toggle'),
    reset: $('settings-reset'), close: $('settings-close'), settings,
    onChange: (changed) => { connection.settings = changed; player.useSettings(changed); },
  });
  const playlist = new PlaylistPanel({
    list: $('playlist'), empty: $('playlist-empty'), form: $('add-movie-form'), roomId: room.id, notify,
    onPlay: (movieId) => player.command({ type: 'set_movie', movie_id: movieId }),
  });
  const chat = new ChatPanel({
    log: $('chat-log'), form: $('chat-form'), older: $('chat-older'), jump: $('chat-jump'),
    empty: $('chat-empty'), roomId: room.id, notify, send: (frame) => connection.send(frame),
  });
  const members = new MembersPanel({ list: $('members'), count: $('viewer-count'), roomId: room.id, notify });

  const movieMap = () => new Map(playlist.movies.map((movie) => [movie.id, movie]));

  function setMe(me) {
    player.setPermissions(me.permissions);
    playlist.setPermissions(me.permissions);
    chat.setPermissions(me.permissions, ADMIN_ROLES.has(me.role));
    members.setMe(me);
  }

  function setRoom(info) {
    $('room-name').textContent = info.name;
    document.title = `${info.name} · SyncTV`;
  }

  function showPlayback(playback, options) {
    const before = player.state.current;
    const accepted = player.apply(playback, options);
    if (accepted) playlist.setCurrent(playback.movie_id);
    return { accepted, before };
  }

  function presenceLines(next) {
    if (online === null) return;
    const before = new Map(online.map((entry) => [entry.user.id, entry.user]));
    const after = new Map(next.map((entry) => [entry.user.id, entry.user]));
    const joined = [...after].filter(([id]) => !before.has(id)).map(([, user]) => `${user.name} joined`);
    const left = [...before].filter(([id]) => !after.has(id)).map(([, user]) => `${user.name} left`);
    const lines = [...joined, ...left];
    if (lines.length && lines.length <= MAX_PRESENCE_LINES) lines.forEach((line) => chat.system(line));
  }

  function onSnapshot(snapshot) {
    setRoom(snapshot.room);
    setMe(snapshot.me);
    playlist.update(snapshot.playlist, { fresh: true });
    player.setMovies(snapshot.playlist.movies);
    showPlayback(snapshot.playback, { fresh: true });
    chat.reset(snapshot.chat);
    online = snapshot.online;
    members.render(snapshot.online, snapshot.viewer_count);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case 'playback': {
        const { accepted, before } = showPlayback(frame.playback);
        if (accepted && frame.by) chat.system(describeChange(before, frame.playback, frame.by, movieMap()));
        break;
      }
      case 'playlist':
        if (playlist.update(frame.playlist)) player.setMovies(frame.playlist.movies);
        break;
      case 'chat':
        chat.add(frame.message);
        break;
      case 'chat_deleted':
        chat.remove(frame.id);
        break;
      case 'presence':
        presenceLines(frame.online);
        online = frame.online;
        members.render(frame.online, frame.viewer_count);
        break;
      case 'room':
        setRoom(frame.room);
        break;
      case 'me':
        setMe(frame.me);
        break;
      case 'room_deleted':
        chat.system('This room was deleted.');
        break;
      case 'kicked':
        chat.system(frame.by ? `${frame.by.name} removed you from this room.` : 'You were removed from this room.');
        break;
      case 'error':
        if (frame.req_id === undefined) notify(frame.message);
        break;
      default:
        break;
    }
  }

  function onState(state, detail) {
    renderConnectionState($('conn-state'), state, detail);
    document.body.dataset.connection = state;
    if (state === 'offline') {
      notify(detail.message || 'Disconnected.');
      player.setPermissions([]);
    }
  }

  $('copy-link').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(window.location.href);
      toast('Link copied: share it to watch together.', 'info');
    } catch {
      toast(window.location.href, 'info');
    }
  });
  connection.connect();
  window.synctv = { connection, player, playlist, chat, members };
}

function start() {
  $('password-form').addEventListener('submit', (event) => {
    event.preventDefault();
    joinWithPassword($('password-form').elements.password.value);
  });
  if (page.user) {
    showAccount(page.user);
    enter();
    return;
  }
  $('gate').hidden = false;
  // Signed in: the page is rendered again, knowing the visitor's membership.
  mountAuth($('auth'), () => window.location.reload(), { guestsAllowed: room.guests_allowed });
}

start();
