/**
 * The chat panel: history (the snapshot's, then older pages on demand), newest at the
 * bottom, auto-scroll unless the reader scrolled up, system lines ("ann paused at 12:03"),
 * deletion by room admins. Text from users only ever goes in with textContent.
 */
import { api } from './api.js';

const NEAR_BOTTOM_PX = 40;
const PAGE_SIZE = 50;
const NO_CHAT_REASON = 'You may not chat in this room: ask a room admin';

function clockTime(epochMs) {
  return new Date(epochMs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export class ChatPanel {
  constructor({ log, form, older, jump, empty, roomId, send, notify }) {
    this.log = log;
    this.form = form;
    this.older = older;
    this.jump = jump;
    this.empty = empty;
    this.roomId = roomId;
    this.send = send;
    this.notify = notify;
    this.ids = new Set();
    this.canDelete = false;
    this.oldestId = null;
    form.addEventListener('submit', (event) => { event.preventDefault(); this.submit(); });
    log.addEventListener('scroll', () => { if (this.atBottom()) this.jump.hidden = true; });
    jump.addEventListener('click', () => this.scrollToBottom());
    older.addEventListener('click', () => this.loadOlder());
  }

  setPermissions(permissions, isAdmin) {
    const canSend = permissions.includes('send_chat');
    for (const field of this.form.elements) {
      field.disabled = !canSend;
      field.title = canSend ? '' : NO_CHAT_REASON;
    }
    this.form.elements.text.placeholder = canSend ? 'Message' : 'Chat is read-only for you here';
    this.canDelete = isAdmin;
    this.log.classList.toggle('can-delete', isAdmin);
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
    this.jump.hidden = true;
  }

  /** The snapshot's chat: the truth after (re)connecting. */
  reset(messages) {
    for (const node of [...this.log.querySelectorAll('.chat-line, .chat-system')]) node.remove();
    this.ids.clear();
    this.oldestId = null;
    for (const message of messages) this.append(this.line(message));
    this.oldestId = messages.length ? messages[0].id : null;
    this.older.hidden = messages.length < PAGE_SIZE;
    this.updateEmpty();
    this.scrollToBottom();
  }

  line(message) {
    this.ids.add(message.id);
    const line = document.createElement('div');
    line.className = 'chat-line';
    line.dataset.messageId = String(message.id);
    const time = document.createElement('time');
    time.className = 'chat-time';
    time.dateTime = new Date(message.sent_at).toISOString();
    time.textContent = clockTime(message.sent_at);
    const author = document.createElement('span');
    author.className = 'chat-author';
    author.textContent = message.user ? message.user.name : 'deleted user';
    const text = document.createElement('span');
    text.className = 'chat-text';
    text.textContent = message.text;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'chat-delete link-button';
    remove.textContent = 'delete';
    remove.title = 'Delete this message for everyone';
    remove.addEventListener('click', () => this.deleteMessage(message.id, remove));
    line.append(time, author, text, remove);
    return line;
  }

  append(node) {
    const follow = this.atBottom();
    this.log.append(node);
    this.updateEmpty();
    if (follow) this.scrollToBottom();
    else this.jump.hidden = false;
  }

  /** A `chat` frame; lines already shown (after a resync) are skipped. */
  add(message) {
    if (this.ids.has(message.id)) return;
    this.append(this.line(message));
  }

  remove(id) {
    this.ids.delete(id);
    const node = this.log.querySelector(`.chat-line[data-message-id="${Number(id)}"]`);
    if (node) node.remove();
    this.updateEmpty();
  }

  system(text) {
    const line = document.createElement('div');
    line.className = 'chat-system';
    line.textContent = text;
    this.append(line);
  }

  updateEmpty() {
    this.empty.hidden = this.log.querySelector('.chat-line, .chat-system') !== null;
  }

  async submit() {
    const input = this.form.elements.text;
    const text = input.value;
    if (!text.trim()) return;
    input.value = '';
    try {
      await this.send({ type: 'chat', text });
      this.scrollToBottom();
    } catch (error) {
      if (!input.value) input.value = text;
      this.notify(error.message);
    }
  }

  async loadOlder() {
    if (this.oldestId === null) return;
    this.older.disabled = true;
    try {
      const path = `/rooms/${encodeURIComponent(this.roomId)}/chat?before=${this.oldestId}&limit=${PAGE_SIZE}`;
      const messages = await api.get(path);
      const height = this.log.scrollHeight;
      const anchor = this.older.nextSibling;
      for (const message of messages) {
        if (!this.ids.has(message.id)) this.log.insertBefore(this.line(message), anchor);
      }
      if (messages.length) this.oldestId = messages[0].id;
      this.older.hidden = messages.length < PAGE_SIZE;
      this.log.scrollTop += this.log.scrollHeight - height;
    } catch (error) {
      this.notify(error.message);
    } finally {
      this.older.disabled = false;
    }
  }

  async deleteMessage(id, node) {
    node.disabled = true;
    try {
      await api.delete(`/rooms/${encodeURIComponent(this.roomId)}/chat/${id}`);
    } catch (error) {
      this.notify(error.message);
      node.disabled = false;
    }
  }
}
