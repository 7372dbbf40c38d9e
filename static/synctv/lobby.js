/** The lobby: sign in, the public rooms (refreshed every 5 s), create a room. */
import { api, pageData } from './api.js';
import { mountAuth, showAccount } from './auth.js';

const REFRESH_MS = 5000;
const page = pageData();
let user = page.user;

function roomItem(room) {
  const item = document.createElement('li');
  item.className = 'room';
  item.dataset.roomId = room.id;
  const link = document.createElement('a');
  link.href = `/r/${encodeURIComponent(room.id)}`;
  const name = document.createElement('span');
  name.className = 'room-name';
  name.textContent = room.name;
  link.append(name);
  if (room.has_password) {
    const lock = document.createElement('span');
    lock.className = 'room-lock';
    lock.title = 'This room has a password';
    lock.textContent = 'password';
    link.append(lock);
  }
  const viewers = document.createElement('span');
  viewers.className = 'room-viewers';
  viewers.textContent = `${room.viewer_count} watching`;
  link.append(viewers);
  item.append(link);
  return item;
}

async function refreshRooms() {
  const list = document.getElementById('room-list');
  try {
    const rooms = await api.get('/rooms');
    list.replaceChildren(...rooms.map(roomItem));
    document.getElementById('room-list-empty').hidden = rooms.length > 0;
  } catch {
    // Keep the last list; the next refresh tries again.
  }
}

function setupCreate() {
  const form = document.getElementById('create-room-form');
  const error = document.getElementById('create-error');
  const button = form.querySelector('button[type=submit]');
  const sync = () => {
    button.disabled = !user;
    button.title = user ? '' : 'Sign in or continue as a guest first';
  };
  sync();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = {
      name: form.elements.name.value,
      hidden: form.elements.hidden.checked,
      settings: { guests_allowed: form.elements.guests_allowed.checked },
    };
    if (form.elements.password.value) body.password = form.elements.password.value;
    button.disabled = true;
    try {
      const { room } = await api.post('/rooms', body);
      window.location.assign(`/r/${encodeURIComponent(room.id)}`);
    } catch (exc) {
      error.textContent = exc.message;
      error.hidden = false;
      button.disabled = false;
    }
  });
  return sync;
}

const syncCreate = setupCreate();
if (user) {
  showAccount(user);
} else {
  mountAuth(document.getElementById('auth'), (signedIn) => { user = signedIn; syncCreate(); });
}
refreshRooms();
setInterval(() => { if (!document.hidden) refreshRooms(); }, REFRESH_MS);
