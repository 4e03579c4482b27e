// Live updates over Socket.IO, with replay of missed events after a reconnect.
//
// Every server event carries a monotonic "event_id". Each connection attempt sends the highest
// id applied as auth.last_event_id, so the server can replay what was missed while the socket
// was down. An event whose id was already applied is dropped.

const EVENT_NAMES = ['conversation.created', 'conversation.updated', 'message.created', 'message.updated'];

// Ids kept for the duplicate check. Replays overlap live events by a few ids, not thousands.
const REMEMBERED_EVENT_IDS = 5000;

const MANUAL_RETRY_MIN_MS = 2000;
const MANUAL_RETRY_MAX_MS = 30000;

export class LiveConnection {
  /**
   * @param {object} options
   * @param {string} options.path Socket.IO path, such as "/socket.io".
   * @param {(name: string, payload: object) => void} options.onEvent Called once per new event.
   * @param {(status: 'connecting'|'live'|'offline'|'unavailable') => void} options.onStatus
   * @param {() => void} options.onRejected Called when the server rejected the connection.
   * @param {() => void} options.onResync Called when the server could not replay every missed
   *   event, so the views must reload from the API.
   */
  constructor({ path, onEvent, onStatus, onRejected, onResync }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onRejected = onRejected;
    this.onResync = onResync;
    this.lastEventId = null;
    this.appliedIds = new Set();
    this.retryDelay = MANUAL_RETRY_MIN_MS;
    this.retryTimer = null;
    this.unloading = false;
    this.socket = null;
  }

  start() {
    if (typeof window.io !== 'function') {
      this.onStatus('unavailable');
      return;
    }
    window.addEventListener('pagehide', () => { this.unloading = true; });

    this.onStatus('connecting');
    // A function for `auth` is called before every attempt, including automatic reconnects,
    // so each one sends the latest event id.
    this.socket = window.io({
      path: this.path,
      auth: (callback) => callback(this.authPayload()),
      reconnectionDelay: 1000,
      reconnectionDelayMax: 15000,
    });

    this.socket.on('connect', () => {
      this.retryDelay = MANUAL_RETRY_MIN_MS;
      this.onStatus('live');
    });
    this.socket.on('disconnect', (reason) => this.handleDisconnect(reason));
    this.socket.on('connect_error', () => this.handleConnectError());
    for (const name of EVENT_NAMES) {
      this.socket.on(name, (payload) => this.receive(name, payload));
    }
    this.socket.on('resync', () => this.onResync());
  }

  authPayload() {
    // Before the first event there is nothing to replay, so the key is left out.
    return this.lastEventId === null ? {} : { last_event_id: this.lastEventId };
  }

  receive(name, payload) {
    if (!payload || typeof payload !== 'object') return;

    const id = payload.event_id;
    if (Number.isInteger(id)) {
      if (this.appliedIds.has(id)) return;
      this.remember(id);
    }
    this.onEvent(name, payload);
  }

  remember(id) {
    this.appliedIds.add(id);
    if (this.lastEventId === null || id > this.lastEventId) this.lastEventId = id;
    if (this.appliedIds.size > REMEMBERED_EVENT_IDS) {
      // A Set iterates in insertion order, so the first id is the oldest one kept.
      this.appliedIds.delete(this.appliedIds.values().next().value);
    }
  }

  handleDisconnect(reason) {
    if (this.unloading || reason === 'io client disconnect') return;
    this.onStatus('offline');
    // After a disconnect by the server the client does not reconnect on its own.
    if (reason === 'io server disconnect') this.scheduleManualRetry();
  }

  handleConnectError() {
    if (this.unloading) return;
    this.onStatus('offline');
    // `active` is false when the server rejected the connection (as opposed to a network
    // failure, which the client retries by itself), so retrying is up to this code.
    if (!this.socket.active) {
      this.onRejected();
      this.scheduleManualRetry();
    }
  }

  scheduleManualRetry() {
    if (this.retryTimer !== null) return;
    const jitter = 0.5 + Math.random();
    const delay = Math.round(this.retryDelay * jitter);
    this.retryDelay = Math.min(this.retryDelay * 2, MANUAL_RETRY_MAX_MS);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      if (!this.socket.connected) this.socket.connect();
    }, delay);
  }
}
