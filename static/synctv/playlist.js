/**
 * The playlist panel: add by URL (title, subtitles), remove, reorder by drag, click to
 * play, add a subtitle track later; live for everyone through `playlist` frames. Controls
 * the member may not use are disabled with the reason in their tooltip.
 */
import { api } from './api.js';

const REASONS = {
  add_movie: 'You may not add movies in this room: ask a room admin',
  edit_movie: 'You may not edit or reorder the playlist in this room: ask a room admin',
  delete_movie: 'You may not remove movies in this room: ask a room admin',
  set_current_movie: 'You may not change the current movie in this room: ask a room admin',
};

function button(className, text, label, permission, allowed) {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = `icon ${className}`;
  node.textContent = text;
  node.setAttribute('aria-label', label);
  node.disabled = !allowed(permission);
  node.title = node.disabled ? REASONS[permission] : label;
  return node;
}

export class PlaylistPanel {
  constructor({ list, empty, form, roomId, onPlay, notify }) {
    this.list = list;
    this.empty = empty;
    this.form = form;
    this.roomId = roomId;
    this.onPlay = onPlay;
    this.notify = notify;
    this.version = -1;
    this.movies = [];
    this.currentId = null;
    this.permissions = new Set();
    this.dragged = null;
    form.addEventListener('submit', (event) => { event.preventDefault(); this.add(); });
    list.addEventListener('dragover', (event) => this.dragOver(event));
    list.addEventListener('drop', (event) => { event.preventDefault(); this.drop(); });
  }

  allowed = (permission) => this.permissions.has(permission);

  /** A `playlist` (from a frame or the snapshot: `fresh`); older versions are ignored. */
  update(playlist, { fresh = false } = {}) {
    if (!fresh && playlist.version <= this.version) return false;
    this.version = playlist.version;
    this.movies = playlist.movies;
    this.render();
    return true;
  }

  setCurrent(movieId) {
    this.currentId = movieId;
    for (const item of this.list.children) {
      item.classList.toggle('current', item.dataset.movieId === movieId);
      item.setAttribute('aria-current', String(item.dataset.movieId === movieId));
    }
  }

  setPermissions(permissions) {
    this.permissions = new Set(permissions);
    const canAdd = this.allowed('add_movie');
    for (const field of this.form.elements) {
      field.disabled = !canAdd;
      field.title = canAdd ? '' : REASONS.add_movie;
    }
    this.render();
  }

  render() {
    const base = `/rooms/${encodeURIComponent(this.roomId)}/movies`;
    const items = this.movies.map((movie, index) => {
      const item = document.createElement('li');
      item.className = 'movie';
      item.dataset.movieId = movie.id;
      item.draggable = this.allowed('edit_movie');
      if (!item.draggable) item.title = REASONS.edit_movie;
      item.addEventListener('dragstart', (event) => {
        this.dragged = item;
        item.classList.add('dragging');
        event.dataTransfer.effectAllowed = 'move';
        event.dataTransfer.setData('text/plain', movie.id);
      });
      item.addEventListener('dragend', () => { item.classList.remove('dragging'); });
      const number = document.createElement('span');
      number.className = 'movie-index';
      number.textContent = String(index + 1);
      const title = document.createElement('span');
      title.className = 'movie-title';
      title.textContent = movie.title;
      title.title = movie.url;
      const meta = document.createElement('span');
      meta.className = 'movie-meta';
      const tracks = (movie.subtitles || []).length;
      meta.textContent = movie.type + (tracks ? ` · ${tracks} subtitle${tracks > 1 ? 's' : ''}` : '');
      const play = button('movie-play', '▶', `Play ${movie.title}`, 'set_current_movie', this.allowed);
      play.addEventListener('click', () => this.onPlay(movie.id));
      title.addEventListener('click', () => { if (!play.disabled) this.onPlay(movie.id); });
      const subs = button('movie-subs', 'CC+', 'Add a subtitle track', 'edit_movie', this.allowed);
      subs.addEventListener('click', () => this.addSubtitles(item, movie, `${base}/${encodeURIComponent(movie.id)}`));
      const remove = button('movie-remove', '✕', `Remove ${movie.title}`, 'delete_movie', this.allowed);
      remove.addEventListener('click', () => this.remove(`${base}/${encodeURIComponent(movie.id)}`, remove));
      item.append(number, title, meta, play, subs, remove);
      return item;
    });
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
    this.setCurrent(this.currentId);
  }

  async add() {
    const fields = this.form.elements;
    const body = { url: fields.url.value.trim() };
    if (fields.title.value.trim()) body.title = fields.title.value.trim();
    if (fields.subtitle_url.value.trim()) {
      const track = { url: fields.subtitle_url.value.trim() };
      if (fields.subtitle_label.value.trim()) track.label = fields.subtitle_label.value.trim();
      if (fields.subtitle_lang.value.trim()) track.lang = fields.subtitle_lang.value.trim();
      body.subtitles = [track];
    }
    const submit = this.form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      await api.post(`/rooms/${encodeURIComponent(this.roomId)}/movies`, body);
      this.form.reset();
    } catch (error) {
      this.notify(error.message);
    } finally {
      submit.disabled = !this.allowed('add_movie');
    }
  }

  async remove(path, node) {
    node.disabled = true;
    try { await api.delete(path); } catch (error) { this.notify(error.message); node.disabled = false; }
  }

  /** A small inline form under the movie: one more WebVTT track. */
  addSubtitles(item, movie, path) {
    if (item.querySelector('form')) return;
    const form = document.createElement('form');
    form.className = 'subs-form';
    for (const [name, placeholder] of [['url', 'WebVTT URL (.vtt)'], ['label', 'Label'], ['lang', 'Language']]) {
      const input = document.createElement('input');
      input.name = name;
      input.placeholder = placeholder;
      input.setAttribute('aria-label', placeholder);
      if (name === 'url') input.required = true;
      form.append(input);
    }
    const save = document.createElement('button');
    save.type = 'submit';
    save.className = 'small primary';
    save.textContent = 'Add track';
    form.append(save);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const track = { url: form.elements.url.value.trim() };
      if (form.elements.label.value.trim()) track.label = form.elements.label.value.trim();
      if (form.elements.lang.value.trim()) track.lang = form.elements.lang.value.trim();
      try {
        await api.patch(path, { subtitles: [...(movie.subtitles || []), track] });
      } catch (error) {
        this.notify(error.message);
      }
    });
    item.append(form);
    form.elements.url.focus();
  }

  dragOver(event) {
    if (!this.dragged) return;
    event.preventDefault();
    const after = [...this.list.querySelectorAll('li.movie:not(.dragging)')].find((node) => {
      const box = node.getBoundingClientRect();
      return event.clientY < box.top + box.height / 2;
    });
    if (after) this.list.insertBefore(this.dragged, after);
    else this.list.append(this.dragged);
  }

  async drop() {
    if (!this.dragged) return;
    this.dragged = null;
    const order = [...this.list.children].map((node) => node.dataset.movieId);
    if (order.join() === this.movies.map((movie) => movie.id).join()) return;
    try {
      await api.post(`/rooms/${encodeURIComponent(this.roomId)}/movies/reorder`, { order });
    } catch (error) {
      this.notify(error.message);
      this.render();
    }
  }
}
