/**
 * The room socket (SPEC §4): reconnect with backoff and jitter, `shutdown
 * {reconnect_after_ms}`, ping/pong clock samples, `req_id`s with promises, and the
 * connection badge (connected / reconnecting / offline, node id in its tooltip).
 */
import { backoffDelay, ClockSync, DEFAULT_SETTINGS } from './sync.js';

// Closes after which a client reconnects: SPEC §4 names 1006, 1011, 1012 and 1013; a
// clean 1000/1001 from a server going away and 4010 (maximum duration reached) too.
const RETRY_CODES = new Set([1000, 1001, 1005, 1006, 1011, 1012, 1013, 4010]);
const REQUEST_TIMEOUT_MS = 10000;
const PONG_TIMEOUT_MS = 10000;

export class RoomConnection {
  constructor(roomId, { onSnapshot, onFrame, onState, settings = DEFAULT_SETTINGS }) {
    this.roomId = roomId;
    this.onSnapshot = onSnapshot;
    this.onFrame = onFrame;
    this.onState = onState;
    this.settings = settings;
    this.clock = new ClockSync(settings.clockSamplesKept);
    this.attempt = 0;
    this.nextReqId = 1;
    this.pending = new Map();
    this.ws = null;
    this.nodeId = null;
    this.reconnectAfterMs = null;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongDeadline = null;
    this.stopped = false;
    window.addEventListener('online', () => { if (this.retryTimer) this.retryNow(); });
  }

  url() {
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${window.location.host}/ws/rooms/${encodeURIComponent(this.roomId)}/`;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    this.reconnectAfterMs = null;
    this.lastError = null;
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
  }

  receive(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (frame.req_id !== undefined && this.pending.has(frame.req_id)) {
      const { resolve, reject, timer } = this.pending.get(frame.req_id);
      this.pending.delete(frame.req_id);
      clearTimeout(timer);
      if (frame.type === 'error') reject(Object.assign(new Error(frame.message), { code: frame.code }));
      else resolve(frame);
    }
    switch (frame.type) {
      case 'snapshot':
        this.attempt = 0;
        this.nodeId = frame.node_id;
        this.clock.reset();
        this.clock.seed(frame.server_time, Date.now());
        this.setState('connected');
        this.onSnapshot(frame);
        this.startClockSamples();
        return;
      case 'pong':
        this.pongDeadline = null;
        this.clock.addSample(frame.client_time, frame.server_time, Date.now());
        return;
      case 'shutdown':
        this.reconnectAfterMs = frame.reconnect_after_ms;
        return;
      case 'error':
        this.lastError = frame;
        break;
      default:
        break;
    }
    this.onFrame(frame);
  }

  /** Send a command; resolves with its `ack` (or answer), rejects with its `error`. */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(Object.assign(new Error('Not connected: reconnecting…'), { code: 'offline' }));
    }
    const reqId = this.nextReqId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(Object.assign(new Error('The server did not answer in time.'), { code: 'timeout' }));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(reqId, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, req_id: reqId }));
    });
  }

  ping() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({ type: 'ping', client_time: Date.now() }));
    if (this.pongDeadline === null) this.pongDeadline = Date.now() + PONG_TIMEOUT_MS;
  }

  startClockSamples() {
    clearTimeout(this.pingTimer);
    let sent = 0;
    const tick = () => {
      // A pong overdue means the network dropped without a close: reconnect now.
      if (this.pongDeadline !== null && Date.now() > this.pongDeadline) {
        this.drop();
        return;
      }
      this.ping();
      sent += 1;
      const gap = sent < this.settings.clockSamplesOnConnect
        ? this.settings.clockSampleGapMs
        : this.settings.clockSampleIntervalMs;
      this.pingTimer = setTimeout(tick, gap);
    };
    tick();
  }

  drop() {
    const ws = this.ws;
    if (!ws) return;
    try { ws.close(); } catch { /* already closing */ }
    this.closed(ws, 1006, 'no answer from the server');
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.pingTimer);
    this.pongDeadline = null;
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(Object.assign(new Error('The connection closed.'), { code: 'offline' }));
    }
    this.pending.clear();
    if (this.stopped) return;
    if (!RETRY_CODES.has(code)) {
      const message = (this.lastError && this.lastError.message) || reason || `closed (${code})`;
      this.setState('offline', { code, message });
      return;
    }
    const delay = this.reconnectAfterMs ?? backoffDelay(this.attempt, this.settings);
    this.attempt += 1;
    this.setState('reconnecting', { code, delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  retryNow() {
    clearTimeout(this.retryTimer);
    this.connect();
  }

  setState(state, detail = {}) {
    this.onState(state, { ...detail, nodeId: this.nodeId });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.pingTimer);
    if (this.ws) this.ws.close(1000);
  }
}

/** The header badge for a connection state. */
export function renderConnectionState(node, state, detail) {
  node.dataset.state = state;
  const labels = { connected: 'connected', reconnecting: 'reconnecting…', offline: 'offline' };
  node.textContent = labels[state] || state;
  const where = detail.nodeId ? `node ${detail.nodeId}` : 'no node yet';
  if (state === 'offline' && detail.message) node.title = `${detail.message} (${where})`;
  else if (state === 'reconnecting') node.title = `reconnecting in ${Math.round(detail.delay / 100) / 10} s (last: ${where})`;
  else node.title = `connected to ${where}`;
}
