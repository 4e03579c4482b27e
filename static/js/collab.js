// Working together in the inbox: internal notes in the thread, the @mentions menu, canned
// responses, and the pieces of the reply box that need the inbox's state. The controller
// (app.js) creates one Collaboration and hands it the events it does not handle itself.

import { CannedManager } from './canned-manager.js';
import { addNote, getMe, listCannedResponses } from './collab-api.js';
import { MentionsMenu } from './mentions-menu.js';

// Events of this module. Only the mentioned agent receives mention.created.
const EVENT_NAMES = ['note.created', 'mention.created'];

export class Collaboration {
  /** @param {import('./app.js').InboxApp} app */
  constructor(app) {
    this.app = app;
    this.role = 'agent';
    const host = document.getElementById('mentions-menu');
    this.mentions = host
      ? new MentionsMenu(host, {
        api: app.api,
        onOpen: (conversationId) => app.select(conversationId, { immediate: true }),
        announce: (text) => app.announce(text),
      })
      : null;
    this.canned = new CannedManager({
      api: app.api,
      canShare: () => this.role === 'manager' || this.role === 'admin',
      onChange: () => app.composer.invalidateCanned(),
      onClose: () => app.composer.focus(),
    });
  }

  /** Return the handlers that CollabComposer needs beside Composer's. */
  composerHandlers() {
    const { app } = this;
    return {
      onSendChecked: (conversationId, text, files, check) => app.sendReply(conversationId, text, { files, check }),
      onNote: (conversationId, text) => this.addNote(conversationId, text),
      newestMessageId: (conversationId) => this.newestMessageId(conversationId),
      loadCanned: async (conversationId) => (await listCannedResponses(app.api, conversationId)).items ?? [],
      mentionableAgents: () => app.agents.filter((agent) => agent.id !== app.agentId),
      onManageCanned: () => this.canned.open(),
    };
  }

  /** Listen for this module's events on the live connection, and load the mentions and the role. */
  start(live) {
    if (live.socket) {
      // NOTE: LiveConnection subscribes to its own list of event names, so these are added here.
      // The socket has not connected yet, so their replay on connect is received too.
      for (const name of EVENT_NAMES) live.socket.on(name, (payload) => live.receive(name, payload));
    }
    this.mentions?.load();
    getMe(this.app.api).then((me) => { this.role = me?.role ?? 'agent'; }).catch(() => {});
  }

  /** Apply one of this module's events; returns false for other events. */
  applyEvent(name, payload) {
    if (name === 'note.created' && payload.note) {
      this.storeNote(payload.note);
      const { note } = payload;
      // A note ends its author's typing at once, as a reply does.
      if (Number.isInteger(note.author?.id)) this.app.stopTyping(note.conversation_id, note.author.id);
      if (note.author?.id !== this.app.agentId && note.conversation_id === this.app.selectedId) {
        this.app.announce(`Note from ${note.author?.name ?? 'an agent'}: ${note.text.slice(0, 120)}`);
      }
      return true;
    }
    if (name === 'mention.created' && payload.mention) {
      this.mentions?.receive(payload.mention);
      return true;
    }
    return false;
  }

  async addNote(conversationId, text) {
    const note = await addNote(this.app.api, conversationId, text);
    if (!note || typeof note !== 'object') return;
    this.storeNote(note);
    if (this.app.selectedId === conversationId) this.app.renderThread({ scrollToEnd: true });
    this.app.announce('Note added. Only agents see it.');
  }

  storeNote(note) {
    const cache = this.app.threads.get(note.conversation_id);
    // A thread that was never opened loads its notes in full when it is.
    if (cache) cache.notes.set(note.id, note);
  }

  /** Return the newest message id of a loaded thread, or null when it is not loaded. */
  newestMessageId(conversationId) {
    const cache = this.app.threads.get(conversationId);
    if (!cache?.complete) return null;
    let newest = 0;
    for (const id of cache.messages.keys()) newest = Math.max(newest, id);
    return newest;
  }
}
