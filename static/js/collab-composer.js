// The reply box with what working together needs: a Note mode for internal notes (shortcut n)
// with @mention completion, canned responses inserted by "/" or Ctrl+Space, and the stale-reply
// hold. A reply carries the newest message id in the thread when its draft was started. When the
// server returns 409 stale_reply, the messages that arrived since are shown above the box with
// "Send anyway" and "Edit reply", and the draft stays where it is.

import { Composer } from './composer.js';
import { h, replaceChildren } from './dom.js';
import { contactDisplayName, formatRelative } from './format.js';
import { matchAgents, mentionQueryAt, preferredHandle } from './mentions.js';
import { SuggestionList } from './suggestions.js';

const NOTE_PLACEHOLDER = 'Only agents see notes. Type @ to mention someone.';
const CANNED_CACHE_MS = 60 * 1000;
const PREVIEW_LENGTH = 90;
const STALE_TEXT_LENGTH = 280;

export class CollabComposer extends Composer {
  /**
   * Takes the handlers of Composer, except that replies go through `onSendChecked`, plus:
   * @param {(conversationId: number, text: string, files: File[], check: {seenMessageId: ?number, confirmStale: boolean}) => Promise<void>} handlers.onSendChecked
   *   Sends a reply; rejects with the API error, whose code is stale_reply when messages arrived.
   * @param {(conversationId: number, text: string) => Promise<void>} handlers.onNote Adds an internal note.
   * @param {(conversationId: number) => ?number} handlers.newestMessageId The newest message id on screen.
   * @param {(conversationId: number) => Promise<object[]>} handlers.loadCanned Canned responses with `rendered`.
   * @param {() => object[]} handlers.mentionableAgents Colleagues ({id, name, email}) for @ completion.
   * @param {() => void} handlers.onManageCanned Opens the canned responses dialog.
   */
  constructor(host, handlers) {
    super(host, { ...handlers, onSend: () => Promise.resolve() });
    this.onSend = (conversationId, text, files) => this.sendReplyChecked(conversationId, text, files);
    this.sendReplyWith = handlers.onSendChecked;
    this.onNote = handlers.onNote;
    this.newestMessageId = handlers.newestMessageId;
    this.loadCanned = handlers.loadCanned;
    this.mentionableAgents = handlers.mentionableAgents;
    this.noteMode = false;
    // Conversation id → true for the conversations whose draft is a note, the open one included.
    this.noteModes = new Map();
    // Conversation id → the newest message id on screen when the draft was started.
    this.seenIds = new Map();
    // Set by "Send anyway" for the one send that follows.
    this.confirmFor = null;
    this.cannedCache = null;
    // What the open suggestion list completes: {kind: 'mention'|'canned', start, explicit}.
    this.completion = null;

    this.textarea.setAttribute('aria-autocomplete', 'list');
    this.replyTab = h('button', {
      type: 'button', class: 'composer__mode', 'aria-pressed': 'true', onClick: () => this.setNoteMode(false, { focus: true }),
    }, 'Reply');
    this.noteTab = h('button', {
      type: 'button', class: 'composer__mode', 'aria-pressed': 'false', title: 'Internal note (n)',
      onClick: () => this.setNoteMode(true, { focus: true }),
    }, 'Note');
    this.modeGroup = h('div', { class: 'composer__modes', role: 'group', 'aria-label': 'Reply or internal note' }, this.replyTab, this.noteTab);
    this.cannedButton = h('button', {
      type: 'button', class: 'link-button composer__canned', title: 'Canned responses: type / or press Ctrl+Space in the box',
      onClick: () => handlers.onManageCanned(),
    }, 'Canned responses');
    const top = this.label.parentElement;
    top.prepend(h('div', { class: 'composer__top-start' }, this.modeGroup, this.label));
    top.append(this.cannedButton);

    this.staleWarning = h('div', { class: 'stale-warning', role: 'alert', hidden: true });
    this.suggestions = new SuggestionList(this.textarea, {
      label: 'Suggestions',
      renderItem: (item) => this.renderSuggestion(item),
      onPick: (item) => this.pickSuggestion(item),
    });
    const box = this.textarea.closest('.composer__box');
    this.form.insertBefore(this.staleWarning, box);
    // Inside the box, so that the list opens over the thread above it without moving the layout.
    box.append(this.suggestions.element);
    this.textarea.addEventListener('blur', () => this.suggestions.close());
  }

  // ---- Modes -------------------------------------------------------------------------------

  setConversation(conversation) {
    const previous = this.conversation;
    const switched = previous?.id !== conversation?.id;
    if (switched) {
      if (previous) this.noteModes.set(previous.id, this.noteMode);
      // A draft kept from an earlier page brings back its mode and where its stale check starts.
      const saved = conversation ? this.drafts.get(conversation.id) : undefined;
      this.noteMode = conversation ? (this.noteModes.get(conversation.id) ?? saved?.note ?? false) : false;
      if (conversation) this.noteModes.set(conversation.id, this.noteMode);
      if (saved?.seenMessageId != null && !this.seenIds.has(conversation.id)) this.seenIds.set(conversation.id, saved.seenMessageId);
      this.hideStale();
      this.suggestions.close();
    }
    super.setConversation(conversation);
    this.applyNoteMode();
  }

  // By noteModes rather than noteMode: Composer.setConversation keeps the draft of the conversation
  // it leaves after this class has switched noteMode to the next one.
  draftOf(conversationId, text, note = this.noteModes.get(conversationId) ?? false) {
    return { text, note, seenMessageId: this.seenIds.get(conversationId) ?? null };
  }

  /** Switch between a reply to the customer and an internal note; the text stays. */
  setNoteMode(note, { focus = false } = {}) {
    if (this.conversation === null) return;
    if (note !== this.noteMode) {
      this.noteMode = note;
      this.noteModes.set(this.conversation.id, note);
      this.suggestions.close();
      this.clearError();
      if (!note) super.setConversation(this.conversation);
      this.applyNoteMode();
      this.saveDraft();
    }
    if (focus) this.focus();
  }

  applyNoteMode() {
    const note = this.noteMode && this.conversation !== null;
    this.form.classList.toggle('composer--note', note);
    this.form.setAttribute('aria-label', note ? 'Internal note' : 'Reply');
    this.replyTab.setAttribute('aria-pressed', String(!note));
    this.noteTab.setAttribute('aria-pressed', String(note));
    if (note) {
      this.label.textContent = 'Internal note';
      this.windowRow.hidden = true;
      this.setAttachAllowed(false);
      this.fileList.hidden = true;
      this.textarea.disabled = false;
      if (this.textarea.placeholder !== NOTE_PLACEHOLDER) this.textarea.placeholder = NOTE_PLACEHOLDER;
    } else if (this.conversation) {
      this.fileList.hidden = this.files.length === 0;
    }
    this.updateButton();
  }

  setMode(mode) {
    super.setMode(mode);
    if (this.noteMode && this.conversation) {
      this.textarea.disabled = false;
      if (this.textarea.placeholder !== NOTE_PLACEHOLDER) this.textarea.placeholder = NOTE_PLACEHOLDER;
    }
  }

  updateWindow() {
    super.updateWindow();
    if (this.noteMode) this.windowRow.hidden = true;
  }

  updateButton() {
    if (!this.noteMode) {
      super.updateButton();
      return;
    }
    this.button.textContent = this.sending ? 'Adding…' : 'Add note';
    this.button.disabled = this.sending || !this.conversation || !this.textarea.value.trim();
  }

  /** Focus the box in reply mode (the r shortcut) or note mode (n). */
  focusMode(note) {
    this.setNoteMode(note);
    this.focus();
  }

  // ---- Sending -----------------------------------------------------------------------------

  async send() {
    if (!this.noteMode) {
      await super.send();
      return;
    }
    const conversation = this.conversation;
    const text = this.textarea.value;
    if (!conversation || this.sending || !text.trim()) return;

    this.setSending(true);
    this.clearError();
    try {
      await this.onNote(conversation.id, text.trim());
      this.drafts.delete(conversation.id);
      this.seenIds.delete(conversation.id);
      if (this.conversation?.id === conversation.id) {
        this.textarea.value = '';
        this.resize();
      }
    } catch (error) {
      if (this.conversation?.id === conversation.id) this.showError(`Note not added: ${error.message}`);
      else this.drafts.set(conversation.id, this.draftOf(conversation.id, text, true));
    } finally {
      this.setSending(false);
    }
  }

  /** Send a reply with the stale check; Composer.send keeps the text when this rejects. */
  async sendReplyChecked(conversationId, text, files) {
    const confirmStale = this.confirmFor === conversationId;
    this.confirmFor = null;
    const seenMessageId = this.seenIds.get(conversationId) ?? this.newestMessageId(conversationId);
    try {
      await this.sendReplyWith(conversationId, text, files, { seenMessageId, confirmStale });
    } catch (error) {
      if (error.code !== 'stale_reply') throw error;
      if (this.conversation?.id === conversationId) this.showStale(error.details ?? {});
      throw new Error('new messages arrived since you started writing.');
    }
    this.seenIds.delete(conversationId);
    if (this.conversation?.id === conversationId) this.hideStale();
  }

  showStale(details) {
    const messages = Array.isArray(details.messages) ? details.messages : [];
    const conversationId = this.conversation.id;
    const count = messages.length;
    replaceChildren(this.staleWarning,
      h('p', { class: 'stale-warning__title' },
        `${count === 1 ? 'A new message' : `${count} new messages`} arrived while you were writing. Your reply was not sent.`),
      h('ol', { class: 'stale-warning__messages' }, messages.map((message) => h('li', { class: 'stale-warning__message' },
        h('span', { class: 'stale-warning__author' }, this.describeAuthor(message)),
        h('time', { datetime: message.created_at, dataset: { relative: '' } }, formatRelative(message.created_at)),
        h('span', { class: 'stale-warning__text' }, truncate(message.text || '[no text]', STALE_TEXT_LENGTH))))),
      h('div', { class: 'stale-warning__actions' },
        h('button', {
          type: 'button', class: 'button button--small', onClick: () => this.editAfterStale(conversationId, details.newest_message_id),
        }, 'Edit reply'),
        h('button', {
          type: 'button', class: 'button button--small button--primary stale-warning__send',
          onClick: () => this.sendAnyway(conversationId),
        }, 'Send anyway')));
    this.staleWarning.hidden = false;
  }

  describeAuthor(message) {
    if (message.direction === 'inbound') return `${contactDisplayName(this.conversation?.contact)} wrote`;
    return `${message.author?.name || 'Another agent'} replied`;
  }

  hideStale() {
    this.staleWarning.hidden = true;
    this.staleWarning.replaceChildren();
  }

  /** Keep the draft for editing; the messages shown now count as seen. */
  editAfterStale(conversationId, newestMessageId) {
    if (Number.isInteger(newestMessageId)) this.seenIds.set(conversationId, newestMessageId);
    this.saveDraft();
    this.hideStale();
    this.clearError();
    this.focus();
  }

  sendAnyway(conversationId) {
    if (this.conversation?.id !== conversationId) return;
    this.confirmFor = conversationId;
    this.hideStale();
    this.send();
  }

  // ---- Typing: the draft's start, @mentions and canned responses ----------------------------

  handleInput() {
    // The stale check's start is set first, so that the draft that Composer keeps carries it.
    const id = this.conversation?.id;
    if (id !== undefined && !this.textarea.value.trim()) this.seenIds.delete(id);
    else if (id !== undefined && !this.seenIds.has(id)) {
      const newest = this.newestMessageId(id);
      if (newest !== null) this.seenIds.set(id, newest);
    }
    super.handleInput();
    if (id !== undefined) this.updateCompletion();
  }

  /**
   * Take the newest message as seen for a draft started before its thread had loaded. The app
   * calls this each time a conversation's thread has loaded.
   */
  threadLoaded(conversationId) {
    const open = this.conversation?.id === conversationId;
    const draft = open ? this.textarea.value : this.drafts.get(conversationId)?.text;
    if (!draft?.trim() || this.seenIds.has(conversationId)) return;
    const newest = this.newestMessageId(conversationId);
    if (newest === null) return;
    this.seenIds.set(conversationId, newest);
    if (open) this.saveDraft();
    else this.drafts.set(conversationId, { ...this.drafts.get(conversationId), seenMessageId: newest });
  }

  handleKeydown(event) {
    if (this.suggestions.handleKeydown(event)) return;
    if (event.key === ' ' && event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      this.openCanned(this.textarea.selectionStart, '', { explicit: true });
      return;
    }
    super.handleKeydown(event);
  }

  updateCompletion() {
    const caret = this.textarea.selectionStart;
    if (caret !== this.textarea.selectionEnd) {
      this.suggestions.close();
      return;
    }
    const text = this.textarea.value;
    const mention = this.noteMode ? mentionQueryAt(text, caret) : null;
    if (mention) {
      const agents = matchAgents(mention.query, this.mentionableAgents());
      this.completion = { kind: 'mention', start: mention.start };
      this.suggestions.show(agents.map((agent) => ({ kind: 'mention', agent })));
      return;
    }
    const canned = /(^|\s)\/([^\s/]*)$/.exec(text.slice(0, caret));
    if (canned) {
      this.openCanned(canned.index + canned[1].length, canned[2]);
      return;
    }
    if (this.completion?.explicit && this.suggestions.isOpen) {
      this.openCanned(this.completion.start, text.slice(this.completion.start, caret), { explicit: true });
      return;
    }
    this.completion = null;
    this.suggestions.close();
  }

  /** Show the canned responses with a title word that starts with `query`, to replace the text from `start` to the caret. */
  async openCanned(start, query, { explicit = false } = {}) {
    const conversation = this.conversation;
    if (!conversation) return;
    this.completion = { kind: 'canned', start, explicit };
    let items;
    try {
      items = await this.cannedFor(conversation.id);
    } catch (error) {
      if (explicit) this.showError(`Canned responses could not be loaded: ${error.message}`);
      return;
    }
    // The agent may have typed on or moved on while the list loaded.
    if (this.conversation?.id !== conversation.id || this.completion?.kind !== 'canned') return;
    const wanted = query.toLowerCase();
    const matches = items.filter((item) => item.title.toLowerCase().split(/[\s\-_/]+/).some((word) => word.startsWith(wanted))
      || item.title.toLowerCase().startsWith(wanted));
    const empty = items.length === 0
      ? 'No canned responses yet. Add one under “Canned responses”.'
      : `No canned response matches “${query}”.`;
    this.suggestions.show(matches.map((item) => ({ kind: 'canned', item })), explicit ? empty : '');
  }

  cannedFor(conversationId) {
    const cache = this.cannedCache;
    if (cache && cache.conversationId === conversationId && Date.now() - cache.loadedAt < CANNED_CACHE_MS) return cache.items;
    // The promise is cached, so keys typed while the list loads share one request.
    const items = this.loadCanned(conversationId);
    this.cannedCache = { conversationId, items, loadedAt: Date.now() };
    items.catch(() => { if (this.cannedCache?.items === items) this.cannedCache = null; });
    return items;
  }

  /** Forget the loaded canned responses, after one was added, changed or deleted. */
  invalidateCanned() {
    this.cannedCache = null;
  }

  renderSuggestion(suggestion) {
    if (suggestion.kind === 'mention') {
      const { agent } = suggestion;
      return [h('span', { class: 'suggestions__title' }, agent.name || agent.email),
        h('span', { class: 'suggestions__detail' }, agent.email)];
    }
    const { item } = suggestion;
    return [h('span', { class: 'suggestions__title' }, item.title, item.shared ? null : h('span', { class: 'suggestions__tag' }, 'personal')),
      h('span', { class: 'suggestions__detail' }, truncate(item.rendered ?? item.body, PREVIEW_LENGTH))];
  }

  pickSuggestion(suggestion) {
    const start = this.completion?.start ?? this.textarea.selectionStart;
    this.completion = null;
    const insert = suggestion.kind === 'mention'
      ? `@${preferredHandle(suggestion.agent, this.mentionableAgents())} `
      : (suggestion.item.rendered ?? suggestion.item.body);
    const caret = this.textarea.selectionStart;
    this.textarea.setRangeText(insert, start, caret, 'end');
    this.textarea.focus();
    // setRangeText fires no input event; the draft, the button and the typing notice follow it.
    this.textarea.dispatchEvent(new Event('input', { bubbles: true }));
    this.suggestions.close();
  }
}

function truncate(text, length) {
  const flat = String(text).replace(/\s+/g, ' ').trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}
