// Live updates over Socket.IO, with replay of missed events after a reconnect.
//
// Every stored server event carries a monotonic "event_id". Each connection attempt sends the
// highest id known as auth.last_event_id, so the server can replay what was missed while the
// socket was down. Before any event has arrived, that id comes from the page (data-last-event-id)
// and then from the conversation list response, so even the first connection misses nothing.
// An event whose id was already applied is dropped.
//
// "typing" and "presence" are relayed without an id and are never replayed.

const EVENT_NAMES = [
  'conversation.created', 'conversation.updated', 'message.created', 'message.updated',
  'contact.updated', 'contact.merged',
];

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
   * @param {() => void} options.onReconnect Called when the socket is back after a disconnect.
   * @param {(payload: object) => void} options.onTyping Called for each "typing" relay.
   * @param {(payload: object) => void} options.onPresence Called for "presence" changes.
   * @param {(agents: object[]) => void} options.onPresenceSnapshot Called with the agents online
   *   when the socket connects, and with an empty list when it goes down.
   */
  constructor({ path, onEvent, onStatus, onRejected, onResync, onReconnect, onTyping, onPresence, onPresenceSnapshot }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onRejected = onRejected;
    this.onResync = onResync;
    this.onReconnect = onReconnect;
    this.onTyping = onTyping;
    this.onPresence = onPresence;
    this.onPresenceSnapshot = onPresenceSnapshot;
    this.lastEventId = null;
    this.appliedIds = new Set();
    this.hasConnected = false;
    this.retryDelay = MANUAL_RETRY_MIN_MS;
    this.retryTimer = null;
    this.unloading = false;
    this.socket = null;
  }

  /**
   * Raise the id that the next connection attempt replays from to `id`, the newest event id when
   * the views' snapshot was read. Every later event is replayed, including any the snapshot
   * already reflects, which the views merge again without harm. A lower id is ignored.
   */
  seedLastEventId(id) {
    if (!Number.isInteger(id) || id < 0) return;
    if (this.lastEventId === null || id > this.lastEventId) this.lastEventId = id;
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

    this.socket.on('connect', () => this.handleConnect());
    this.socket.on('disconnect', (reason) => this.handleDisconnect(reason));
    this.socket.on('connect_error', () => this.handleConnectError());
    for (const name of EVENT_NAMES) {
      this.socket.on(name, (payload) => this.receive(name, payload));
    }
    this.socket.on('resync', () => this.onResync());
    this.socket.on('typing', (payload) => { if (isObject(payload)) this.onTyping(payload); });
    this.socket.on('presence', (payload) => { if (isObject(payload)) this.onPresence(payload); });
    this.socket.on('presence.snapshot', (payload) => {
      if (isObject(payload) && Array.isArray(payload.agents)) this.onPresenceSnapshot(payload.agents);
    });
  }

  /** Send a "typing" event for a conversation to the other agents. Nothing is sent while offline. */
  sendTyping(conversationId) {
    if (this.socket?.connected) this.socket.emit('typing', { conversation_id: conversationId });
  }

  authPayload() {
    // Without a page snapshot id or an event there is nothing to replay from, so the key is left out.
    return this.lastEventId === null ? {} : { last_event_id: this.lastEventId };
  }

  receive(name, payload) {
    if (!isObject(payload)) return;

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

  handleConnect() {
    this.retryDelay = MANUAL_RETRY_MIN_MS;
    this.onStatus('live');
    if (this.hasConnected) this.onReconnect();
    this.hasConnected = true;
  }

  handleDisconnect(reason) {
    if (this.unloading) return;
    // Presence is unknown until the next connection sends a new snapshot.
    this.onPresenceSnapshot([]);
    if (reason === 'io client disconnect') return;
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

function isObject(value) {
  return Boolean(value) && typeof value === 'object';
}
