/**
 * Who is online, with their role; room admins ban from here and the creator changes roles
 * (through PATCH /api/rooms/{id}/members/{user_id}; the server then updates everyone).
 */
import { api } from './api.js';

const ROLE_LABELS = { creator: 'creator', admin: 'admin', member: 'member' };
const CONFIRM_MS = 3000;

export class MembersPanel {
  constructor({ list, count, roomId, notify }) {
    this.list = list;
    this.count = count;
    this.roomId = roomId;
    this.notify = notify;
    this.me = null;
    this.online = [];
    this.armedBan = null; // {userId, until}: a ban button clicked once, awaiting its confirm
  }

  setMe(me) {
    this.me = me;
    this.render(this.online, this.viewers);
  }

  /** A snapshot's or `presence` frame's `online` and `viewer_count`. */
  render(online, viewerCount) {
    this.online = online;
    this.viewers = viewerCount;
    this.count.textContent = String(viewerCount ?? online.length);
    this.list.replaceChildren(...online.map((entry) => this.item(entry)));
    if (viewerCount > online.length) {
      const more = document.createElement('li');
      more.className = 'member-more';
      more.textContent = `and ${viewerCount - online.length} more`;
      this.list.append(more);
    }
  }

  item(entry) {
    const { user } = entry;
    const role = entry.role || 'member';
    const item = document.createElement('li');
    item.className = 'member';
    item.dataset.userId = String(user.id);
    const name = document.createElement('span');
    name.className = 'member-name';
    name.textContent = user.name + (this.me && this.me.user.id === user.id ? ' (you)' : '');
    if (user.is_guest) name.title = 'guest';
    const badge = document.createElement('span');
    badge.className = `member-role role-${role}`;
    badge.textContent = ROLE_LABELS[role] || role;
    item.append(name, badge);
    if (entry.connections > 1) {
      const tabs = document.createElement('span');
      tabs.className = 'member-tabs';
      tabs.title = `${entry.connections} connections`;
      tabs.textContent = `×${entry.connections}`;
      item.append(tabs);
    }
    if (this.mayManage(user.id, role)) item.append(...this.controls(user, role));
    return item;
  }

  mayManage(userId, role) {
    if (!this.me || this.me.user.id === userId || role === 'creator') return false;
    if (this.me.role === 'creator') return true;
    return this.me.role === 'admin' && role === 'member';
  }

  controls(user, role) {
    const path = `/rooms/${encodeURIComponent(this.roomId)}/members/${user.id}`;
    const nodes = [];
    if (this.me.role === 'creator') {
      const select = document.createElement('select');
      select.className = 'member-role-select';
      select.setAttribute('aria-label', `Role of ${user.name}`);
      for (const value of ['member', 'admin']) {
        const option = document.createElement('option');
        option.value = value;
        option.textContent = value;
        select.append(option);
      }
      select.value = role;
      select.addEventListener('change', () => this.patch(path, { role: select.value }));
      nodes.push(select);
    }
    const ban = document.createElement('button');
    ban.type = 'button';
    ban.className = 'member-ban small danger';
    ban.textContent = 'Ban';
    ban.title = `Ban ${user.name}: closes their connections and keeps them out`;
    // The armed state lives in the panel, so a presence frame re-rendering the list between
    // the two clicks does not disarm it.
    const armed = () => this.armedBan && this.armedBan.userId === user.id && performance.now() < this.armedBan.until;
    if (armed()) ban.textContent = 'Confirm ban';
    ban.addEventListener('click', () => {
      if (!armed()) {
        this.armedBan = { userId: user.id, until: performance.now() + CONFIRM_MS };
        ban.textContent = 'Confirm ban';
        setTimeout(() => { if (ban.isConnected && !armed()) ban.textContent = 'Ban'; }, CONFIRM_MS);
        return;
      }
      this.armedBan = null;
      ban.disabled = true;
      this.patch(path, { status: 'banned' });
    });
    nodes.push(ban);
    return nodes;
  }

  async patch(path, body) {
    try {
      await api.patch(path, body);
    } catch (error) {
      this.notify(error.message);
      this.render(this.online, this.viewers);
    }
  }
}
