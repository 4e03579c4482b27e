// The inbox controller: stores the conversations and cached threads, loads pages, applies live
// events, and tells the views what to draw.

import { ApiClient } from './api.js';
import { BulkBar } from './bulk-bar.js';
import { Collaboration } from './collab.js';
import { sendCheckedReply } from './collab-api.js';
import { CollabComposer } from './collab-composer.js';
import { ContactPanel } from './contact-panel.js';
import { DraftStore, forgetSavedDrafts } from './drafts.js';
import { ConversationControls, openMergeDialog } from './conversation-controls.js';
import { ConversationList } from './conversation-list.js';
import { isEditableTarget } from './dom.js';
import { channelLabel, contactDisplayName, formatRelative, formatFullTimestamp, parseTimestamp } from './format.js';
import { LiveConnection } from './live.js';
import { renderOnlineAgents } from './presence.js';
import { SearchBox } from './search.js';
import { ThreadView } from './thread.js';
import { ViewsPane } from './views-pane.js';
import { matchesView } from './workflow.js';

const PAGE_SIZE = 50;
// Messages per page of a thread: the newest page opens it, older ones load on scroll.
const MESSAGE_PAGE_SIZE = 50;
// Holding j or k moves the selection at key-repeat speed, so the thread loads only once it rests.
const OPEN_DELAY_MS = 120;
const TIME_REFRESH_MS = 30 * 1000;
const SESSION_CHECK_INTERVAL_MS = 30 * 1000;
const ANNOUNCED_TEXT_LENGTH = 120;
const HASH_PREFIX = '#conversation=';
// Another agent's "is typing" line goes away after this long without a new typing event.
const TYPING_VISIBLE_MS = 5000;
// The server relays every typing event to every agent, so this agent sends at most one per interval.
const TYPING_SEND_INTERVAL_MS = 3000;
// Events often come in bursts (a bulk change sends one per conversation), so the view counts
// are fetched once the burst is over.
const COUNTS_REFRESH_DELAY_MS = 400;
const DEFAULT_VIEW = { key: 'all', name: 'All', group: 'inbox', params: {} };

// A fetched snapshot or a POST response can be older than a message.updated event that arrived
// first, so they never move a delivery status back. Events arrive in order and always apply.
const DELIVERY_RANK = { queued: 1, sent: 2, failed: 3, undelivered: 3, delivered: 4, read: 5 };

export class InboxApp {
  constructor(root) {
    const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? '';
    this.root = root;
    this.api = new ApiClient({ root: root.dataset.apiRoot, csrfToken, loginUrl: root.dataset.loginUrl });

    this.conversations = new Map();
    this.order = [];
    this.nextCursor = null;
    this.listReady = false;
    this.loadingMore = false;
    this.loadMoreError = null;
    this.selectedId = null;
    this.threads = new Map();
    this.openSequence = 0;
    this.openTimer = null;
    this.readsInFlight = new Set();
    this.pendingEvents = [];
    this.lastSessionCheck = 0;
    this.listFailed = false;
    this.threadFailedId = null;
    this.agentId = Number(root.dataset.agentId);
    // Conversation id → (agent id → { name, timer }) of the other agents typing there.
    this.typing = new Map();
    this.typingSentAt = new Map();
    // Agent id → { id, name } of the other agents connected now.
    this.onlineAgents = new Map();
    this.view = DEFAULT_VIEW;
    // Counts the first-page loads, so a page that arrives after another view was picked is dropped.
    this.listSequence = 0;
    this.views = [];
    this.countsTimer = null;
    this.countsSequence = 0;
    // The conversations checked for a bulk action.
    this.checked = new Set();
    this.agents = [];
    this.teams = [];
    this.labels = [];
    // The search text that the list shows ('' for none), which narrows the current view.
    this.query = '';

    this.announcer = document.getElementById('announcer');
    this.banner = document.getElementById('connection-banner');
    this.liveIndicator = document.getElementById('live-indicator');
    this.presence = document.getElementById('presence');

    this.listTitle = document.getElementById('inbox-heading');
    this.viewsPane = new ViewsPane(document.getElementById('views'), {
      onSelect: (view) => this.selectView(view),
      onRetry: () => this.loadCounts(),
    });
    this.list = new ConversationList(document.getElementById('conversation-list'), {
      onSelect: (id) => this.select(id),
      onLoadMore: () => this.loadMore(),
      onRetry: () => this.loadFirstPage(),
      onToggleCheck: (id) => this.toggleChecked(id),
    });
    const searchForm = document.getElementById('search-form');
    this.searchBox = searchForm ? new SearchBox(searchForm, {
      onSearch: (query, options) => this.search(query, options),
      onLeave: () => this.list.focus(),
    }) : null;
    this.bulkBar = new BulkBar(document.getElementById('bulk-actions'), {
      onApply: (changes) => this.applyToChecked(changes),
      onSelectAll: () => this.checkAll(),
      onClear: () => this.clearChecked(),
    });
    this.thread = new ThreadView(document.getElementById('thread'), {
      onRetry: () => this.openConversation(this.selectedId),
      onBack: () => this.deselect(),
      onCancelHeld: (messageId) => this.changeMessage(() => this.api.cancelHeld(messageId), 'Held reply cancelled.'),
      onSendByEmail: (messageId) => this.changeMessage(() => this.api.sendByEmail(messageId), 'Reply queued by email.'),
      onRename: (contact) => this.renameContact(contact),
      onLoadOlder: () => this.loadOlderMessages(),
    });
    this.controls = new ConversationControls(this.thread.controlsHost, {
      onChange: (id, changes) => this.changeConversation(id, changes),
      onMerge: (conversation) => this.showMergeDialog(conversation),
      onOpen: (id) => this.select(id, { immediate: true }),
    });
    this.contactPanel = new ContactPanel(this.thread.contactHost, {
      api: this.api,
      onOpenConversation: (id) => this.select(id, { immediate: true }),
      announce: (text) => this.announce(text),
      onClose: () => this.thread.closeContact(),
    });
    this.collab = new Collaboration(this);
    this.composer = new CollabComposer(this.thread.composerHost, {
      onEscape: () => this.list.focus(),
      onTyping: (conversationId) => this.sendTyping(conversationId),
      onLoadTemplates: (channelId, options) => this.api.listTemplates(channelId, options),
      onSendTemplate: (conversationId, template) => this.sendReply(conversationId, null, { template }),
      drafts: new DraftStore(this.agentId),
      ...this.collab.composerHandlers(),
    });
    this.live = new LiveConnection({
      path: root.dataset.socketPath,
      onEvent: (name, payload) => this.receiveEvent(name, payload),
      onStatus: (status) => this.showConnectionStatus(status),
      onRejected: () => this.checkSession(),
      onResync: () => this.resync(),
      onReconnect: () => this.reloadFailedViews(),
      onTyping: (payload) => this.receiveTyping(payload),
      onPresence: (payload) => this.receivePresence(payload),
      onPresenceSnapshot: (agents) => this.receivePresenceSnapshot(agents),
    });
    // The newest event id when the page was rendered: the first connection replays everything
    // after it, even when it opens before the conversation list has loaded.
    this.live.seedLastEventId(parseEventId(root.dataset.lastEventId));
  }

  start() {
    this.bindShortcuts();
    // Signing out on purpose leaves no drafts in the tab, but an ended sign-in keeps them for the next one.
    document.querySelector('form.logout')?.addEventListener('submit', () => forgetSavedDrafts());
    document.addEventListener('visibilitychange', () => this.markSelectedReadIfNeeded());
    // A link or an edited address such as #conversation=2 opens that conversation in this tab.
    window.addEventListener('hashchange', () => {
      const requested = conversationIdFromHash();
      if (requested !== null && requested !== this.selectedId && this.listReady) this.select(requested, { immediate: true });
    });
    window.setInterval(() => refreshRelativeTimes(document), TIME_REFRESH_MS);

    // Subscribe before the first page is fetched. Events that arrive meanwhile wait in
    // pendingEvents and are applied on top of the page.
    this.live.start();
    this.collab.start(this.live);
    this.thread.showPlaceholder('none');
    this.viewsPane.showLoading();
    this.loadFirstPage();
    this.loadCounts();
    this.loadDirectory();
  }

  // ---- Loading ---------------------------------------------------------------------------

  async loadFirstPage() {
    this.list.showLoading();
    const sequence = ++this.listSequence;
    try {
      const page = await this.api.listConversations({ limit: PAGE_SIZE, filters: this.listFilters() });
      // Another view was picked while this page loaded; its own load fills the list.
      if (sequence !== this.listSequence) return;
      this.conversations.clear();
      for (const conversation of page.items ?? []) this.conversations.set(conversation.id, conversation);
      this.nextCursor = page.next_cursor ?? null;
      this.live.seedLastEventId(page.last_event_id);
      this.listReady = true;
      this.listFailed = false;
    } catch (error) {
      if (sequence !== this.listSequence) return;
      this.listFailed = true;
      if (!this.api.redirecting) this.list.showError(error.message);
      return;
    }

    const pending = this.pendingEvents;
    this.pendingEvents = [];
    for (const { name, payload } of pending) this.applyEvent(name, payload);
    this.renderList();
    if (this.query) {
      const count = this.order.length;
      const more = this.nextCursor ? ' or more' : '';
      this.announce(`${count}${more} conversation${count === 1 && !more ? '' : 's'} found for ${this.query}.`);
    }

    const requested = conversationIdFromHash();
    if (requested !== null && this.selectedId === null) this.select(requested, { immediate: true });
    else if (this.selectedId === null) this.showThreadPlaceholder();
  }

  /** Reload the first page and the open thread after the server skipped a replay. */
  async resync() {
    if (!this.listReady) return;
    try {
      const page = await this.api.listConversations({ limit: PAGE_SIZE, filters: this.listFilters() });
      for (const conversation of page.items ?? []) this.mergeConversation(conversation, { insert: true });
      this.nextCursor = page.next_cursor ?? null;
      // The replay gap was too large, so the next reconnect starts from this snapshot instead.
      this.live.seedLastEventId(page.last_event_id);
    } catch {
      // The list stays as it was until the next event or a reload brings it up to date.
    }
    for (const id of [...this.threads.keys()]) {
      if (id !== this.selectedId) this.threads.delete(id);
    }
    this.renderList();
    this.scheduleCounts();
    if (this.selectedId !== null) this.openConversation(this.selectedId);
  }

  /** Load again, once the socket is back, the views that failed to load while it was down. */
  reloadFailedViews() {
    if (this.listFailed && !this.listReady) this.loadFirstPage();
    if (this.views.length === 0) this.loadCounts();
    if (this.selectedId !== null && this.threadFailedId === this.selectedId) this.openConversation(this.selectedId);
  }

  async loadMore() {
    if (!this.listReady || this.loadingMore || !this.nextCursor) return;
    this.loadingMore = true;
    this.loadMoreError = null;
    this.renderList();
    const sequence = this.listSequence;

    try {
      const page = await this.api.listConversations({ limit: PAGE_SIZE, cursor: this.nextCursor, filters: this.listFilters() });
      if (sequence !== this.listSequence) return;
      // A conversation may already be here, moved up by a live event: keep the newer copy.
      for (const conversation of page.items ?? []) {
        if (this.conversations.has(conversation.id)) this.mergeConversation(conversation);
        else this.conversations.set(conversation.id, conversation);
      }
      this.nextCursor = page.next_cursor ?? null;
    } catch (error) {
      if (sequence === this.listSequence) this.loadMoreError = `Could not load more: ${error.message}`;
    } finally {
      this.loadingMore = false;
      this.renderList();
    }
  }

  /** Return the query parameters of the list: the view's, and the search when there is one. */
  listFilters() {
    return this.query ? { ...this.view.params, q: this.query } : this.view.params;
  }

  /**
   * Show the conversations that `query` finds in the current view, or the whole view for ''.
   * With `force`, search again for the same text, to pick up conversations that match since.
   */
  search(query, { force = false } = {}) {
    if (query === this.query && !force) return;
    this.query = query;
    this.nextCursor = null;
    this.loadMoreError = null;
    this.loadFirstPage();
  }

  /** Load the page of messages before the oldest one loaded of the open conversation. */
  async loadOlderMessages() {
    const id = this.selectedId;
    const cache = this.threads.get(id);
    if (!cache?.complete || cache.before === null || cache.loadingOlder) return;
    cache.loadingOlder = true;
    cache.olderError = null;
    this.renderThread();
    try {
      const query = new URLSearchParams({ before: String(cache.before), limit: String(MESSAGE_PAGE_SIZE) });
      const page = await this.api.request('GET', `/conversations/${encodeURIComponent(id)}/messages?${query}`);
      for (const message of page.items ?? []) mergeIntoCache(cache, message);
      cache.before = page.before ?? null;
    } catch (error) {
      cache.olderError = `Could not load earlier messages: ${error.message}`;
    } finally {
      cache.loadingOlder = false;
    }
    if (id === this.selectedId) this.renderThread({ prepended: true });
  }

  async openConversation(id) {
    if (id === null) return;
    const sequence = ++this.openSequence;
    const cache = this.threadCache(id);
    if (!cache.complete) this.thread.showLoading();

    let detail;
    try {
      detail = await this.api.getConversation(id);
    } catch (error) {
      if (sequence !== this.openSequence || this.api.redirecting) return;
      this.threadFailedId = id;
      if (cache.complete) this.announce(`Could not refresh the conversation: ${error.message}`);
      else this.thread.showError(error.message);
      return;
    }
    if (sequence !== this.openSequence) return;
    this.threadFailedId = null;

    const {
      messages = [], activities = [], notes = [], messages_before: before = null, ...conversation
    } = detail;
    // A refresh brings the newest page again; the older pages already loaded stay.
    if (!cache.complete) cache.before = before;
    for (const message of messages) mergeIntoCache(cache, message);
    for (const activity of activities) cache.activities.set(activity.id, activity);
    for (const note of notes) cache.notes.set(note.id, note);
    cache.complete = true;

    this.mergeConversation(conversation, { insert: true });
    this.renderList();
    this.renderThread();
    this.composer.threadLoaded(id);
    this.renderTyping();
    this.markSelectedReadIfNeeded();
  }

  // ---- Selection -------------------------------------------------------------------------

  /** Select a conversation: highlight it at once, then load its thread after a short rest. */
  select(id, { immediate = false } = {}) {
    if (id === null || id === undefined) return;
    this.composer.saveDraft();
    this.selectedId = id;
    this.list.setSelected(id);
    this.root.classList.add('app--thread-open');
    window.history.replaceState(null, '', `${HASH_PREFIX}${id}`);

    const conversation = this.conversations.get(id);
    if (conversation) {
      this.thread.showConversation(conversation);
      this.contactPanel.show(conversation.contact?.id ?? null, id);
      this.controls.update(conversation);
      this.composer.setConversation(conversation.status === 'closed' ? null : conversation);
    } else {
      // Opened from the address bar and not on a loaded page: the header fills in once it loads.
      this.thread.showUnknown(id);
      this.composer.setConversation(null);
    }
    const cache = this.threads.get(id);
    if (conversation && cache?.complete) this.renderThread({ scrollToEnd: true });
    else this.thread.showLoading();
    this.renderTyping();

    window.clearTimeout(this.openTimer);
    this.openTimer = window.setTimeout(() => this.openConversation(id), immediate ? 0 : OPEN_DELAY_MS);
    this.updateTitle();
  }

  deselect() {
    this.composer.saveDraft();
    this.selectedId = null;
    this.openSequence += 1;
    window.clearTimeout(this.openTimer);
    this.list.setSelected(null);
    this.root.classList.remove('app--thread-open');
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
    this.showThreadPlaceholder();
    this.list.focus();
  }

  moveSelection(step) {
    const id = this.list.neighbourId(step);
    if (id !== null && id !== this.selectedId) this.select(id);
    this.list.focus();
  }

  sendTyping(conversationId) {
    const now = Date.now();
    if (now - (this.typingSentAt.get(conversationId) ?? -Infinity) < TYPING_SEND_INTERVAL_MS) return;
    this.typingSentAt.set(conversationId, now);
    this.live.sendTyping(conversationId);
  }

  // ---- Actions ---------------------------------------------------------------------------

  /**
   * Send a text reply, with `files` as its attachments, or with `template` ({content_sid,
   * variables}) a WhatsApp template. With `check` ({seenMessageId, confirmStale}) the server
   * does not send the reply when newer messages arrived.
   */
  async sendReply(conversationId, text, { files = [], template = null, check = null } = {}) {
    const message = template
      ? await this.api.sendTemplate(conversationId, template)
      : await sendCheckedReply(this.api, conversationId, text, files, check ?? {});
    if (!message || typeof message !== 'object') return;

    this.storeMessage(message);
    const conversation = this.conversations.get(conversationId);
    if (conversation && parseTimestamp(message.created_at) >= parseTimestamp(conversation.last_message_at)) {
      this.mergeConversation({ ...conversation, snippet: message.text, last_message_at: message.created_at });
      this.renderList();
    }
    if (this.selectedId === conversationId) this.renderThread({ scrollToEnd: true });
  }

  /**
   * Run an action on a message (cancel a held reply, resend by email), store the message it
   * returns, and announce `done` or the error. Rejects on failure, so the button can be used again.
   */
  async changeMessage(action, done) {
    try {
      const message = await action();
      if (message && typeof message === 'object') this.storeMessage(message, { fromEvent: true });
      this.announce(done);
    } catch (error) {
      this.announce(`Failed: ${error.message}`);
      throw error;
    }
    if (this.selectedId !== null) this.renderThread();
  }

  /** Send a workflow change for one conversation and show the result at once. */
  async changeConversation(id, changes) {
    const conversation = await this.api.changeConversation(id, changes);
    if (conversation && typeof conversation === 'object') this.applyChangedConversation(conversation);
  }

  /** Send a change for every checked conversation; the server applies it to all or to none. */
  async applyToChecked(changes) {
    const ids = this.checkedInView();
    if (ids.length === 0) return;
    const result = await this.api.changeConversations(ids, changes);
    for (const conversation of result?.items ?? []) this.mergeConversation(conversation);
    this.checked.clear();
    this.renderList();
    this.announce(`Changed ${ids.length === 1 ? '1 conversation' : `${ids.length} conversations`}.`);
  }

  applyChangedConversation(conversation) {
    this.mergeConversation(conversation);
    this.renderList();
    if (conversation.id === this.selectedId) this.renderThread();
  }

  /** Resolve the checked conversations, or else the open one (the "e" shortcut). */
  resolveShortcut() {
    this.shortcutChange({ status: 'resolved' }, 'Resolved');
  }

  /** Assign the checked conversations, or else the open one, to the signed-in agent ("a"). */
  assignToMeShortcut() {
    this.shortcutChange({ assignee_id: this.agentId }, 'Assigned to you');
  }

  shortcutChange(changes, done) {
    if (this.checkedInView().length > 0) {
      this.applyToChecked(changes).catch((error) => this.announce(`Nothing was changed: ${error.message}`));
      return;
    }
    const id = this.selectedId;
    const conversation = this.conversations.get(id);
    if (!conversation || conversation.status === 'closed') return;
    this.controls.send(changes).then((sent) => { if (sent) this.announce(`${done}.`); });
  }

  showMergeDialog(conversation) {
    openMergeDialog(conversation, {
      loadCandidates: async () => {
        const page = await this.api.listConversations({
          limit: PAGE_SIZE, filters: { contact: String(conversation.contact.id), channel: String(conversation.channel.id) },
        });
        return (page.items ?? []).filter((candidate) => candidate.id !== conversation.id);
      },
      merge: async (targetId) => {
        const target = await this.api.mergeConversation(conversation.id, targetId);
        this.threads.delete(targetId);
        if (target) this.mergeConversation(target, { insert: true });
        this.select(targetId, { immediate: true });
        this.announce(`Merged conversation #${conversation.id} into #${targetId}.`);
      },
    });
  }

  // ---- Views and selection for bulk actions ----------------------------------------------

  /** Show another view: its conversations are loaded afresh and the checks are cleared. */
  selectView(view) {
    if (view.key === this.view.key) return;
    this.view = view;
    this.viewsPane.setActive(view.key);
    if (this.listTitle) this.listTitle.textContent = view.name;
    this.checked.clear();
    this.bulkBar.setCount(0);
    this.listReady = false;
    this.nextCursor = null;
    this.loadMoreError = null;
    this.loadFirstPage();
  }

  async loadCounts() {
    const sequence = ++this.countsSequence;
    try {
      const result = await this.api.countViews();
      if (sequence !== this.countsSequence) return;
      this.views = result.views ?? [];
    } catch (error) {
      if (!this.api.redirecting) this.viewsPane.showError(error.message);
      return;
    }
    // A renamed team's view shows the new name.
    const current = this.views.find((view) => view.key === this.view.key);
    if (current) {
      this.view = { ...current, params: this.view.params };
      if (this.listTitle) this.listTitle.textContent = current.name;
    }
    this.viewsPane.render(this.views, this.view.key);
    const knownTeams = new Set(this.teams.map((team) => team.id));
    if (this.views.some((view) => view.group === 'team' && !knownTeams.has(Number(view.params.team)))) this.loadDirectory();
  }

  scheduleCounts() {
    window.clearTimeout(this.countsTimer);
    this.countsTimer = window.setTimeout(() => this.loadCounts(), COUNTS_REFRESH_DELAY_MS);
  }

  /** Load the agents, teams and labels that the controls and the bulk bar offer. */
  async loadDirectory() {
    try {
      const [agents, teams, labels] = await Promise.all([this.api.listAgents(), this.api.listTeams(), this.api.listLabels()]);
      this.agents = agents.items ?? [];
      this.teams = teams.items ?? [];
      this.labels = labels.items ?? [];
    } catch {
      // The lists stay as they were; the controls still show each conversation's own values.
      return;
    }
    this.updateDirectory();
  }

  updateDirectory() {
    const context = {
      agents: this.agents, teams: this.teams, labels: this.labels, agentId: this.agentId,
      onlineIds: new Set([this.agentId, ...this.onlineAgents.keys()]),
    };
    this.controls.setContext(context);
    this.bulkBar.setContext(context);
  }

  toggleChecked(id) {
    if (this.checked.has(id)) this.checked.delete(id);
    else this.checked.add(id);
    this.renderChecked();
  }

  checkAll() {
    for (const id of this.order) this.checked.add(id);
    this.renderChecked();
  }

  clearChecked() {
    this.checked.clear();
    this.renderChecked();
    this.list.focus();
  }

  /** Return the checked conversations that the current list shows. */
  checkedInView() {
    const shown = new Set(this.order);
    return [...this.checked].filter((id) => shown.has(id));
  }

  renderChecked() {
    this.list.setChecked(this.checked);
    this.bulkBar.setCount(this.checkedInView().length);
  }

  /**
   * Ask for the contact's name and save it. The server's conversation.updated events bring the
   * new name to every open view; an empty name hands it back to the channel.
   */
  async renameContact(contact) {
    const name = window.prompt(
      'Name of this contact (leave empty to use the name from WhatsApp or email):', contact.name ?? '');
    if (name === null) return;
    try {
      await this.api.renameContact(contact.id, name.trim() || null);
    } catch (error) {
      window.alert(`The name was not saved: ${error.message}`);
    }
  }

  markSelectedReadIfNeeded() {
    const id = this.selectedId;
    const conversation = this.conversations.get(id);
    if (!conversation || !this.threads.get(id)?.complete) return;
    if (document.visibilityState !== 'visible' || !(conversation.unread_count > 0)) return;
    if (this.readsInFlight.has(id)) return;

    // The count drops at once, and the server's conversation.updated confirms it.
    this.readsInFlight.add(id);
    this.conversations.set(id, { ...conversation, unread_count: 0 });
    this.renderList();
    this.api.markRead(id)
      .catch(() => {
        // NOTE: a failed read receipt is not retried. The count comes back with the next update.
      })
      .finally(() => this.readsInFlight.delete(id));
  }

  async checkSession() {
    // A rejected socket usually means the session expired; any API call then redirects on 401.
    const now = Date.now();
    if (now - this.lastSessionCheck < SESSION_CHECK_INTERVAL_MS) return;
    this.lastSessionCheck = now;
    try {
      await this.api.listConversations({ limit: 1 });
    } catch {
      // The banner already shows the connection problem.
    }
  }

  // ---- Live events -----------------------------------------------------------------------

  receiveEvent(name, payload) {
    if (!this.listReady) {
      this.pendingEvents.push({ name, payload });
      return;
    }
    this.applyEvent(name, payload);
    this.renderList();
    if (this.selectedId !== null) this.renderThread();
    this.markSelectedReadIfNeeded();
    if (name.startsWith('conversation.') || name === 'message.created') this.scheduleCounts();
  }

  applyEvent(name, payload) {
    switch (name) {
      case 'conversation.created':
      case 'conversation.updated':
        if (payload.conversation) this.applyConversationEvent(payload.conversation, payload.activities);
        break;
      case 'message.created':
        this.applyMessageCreated(payload);
        break;
      case 'message.updated':
        if (payload.message) this.applyMessageUpdated(payload.message);
        break;
      case 'contact.updated':
      case 'contact.merged':
        this.contactPanel.receiveEvent(name, payload);
        break;
      default:
        this.collab.applyEvent(name, payload);
        break;
    }
  }

  /**
   * Apply a conversation event. An event that changed the status without its activity (a
   * customer's message reopens a conversation in the same transaction as the message) makes the
   * cached thread load its activities again, so the thread says why the status changed.
   */
  applyConversationEvent(conversation, activities) {
    const previous = this.conversations.get(conversation.id);
    this.mergeConversation(conversation, { insert: true });
    this.contactPanel.updateConversation(conversation);
    if (Array.isArray(activities)) {
      this.applyActivities(activities);
    } else if (previous && previous.status !== conversation.status) {
      this.reloadActivities(conversation.id);
    }
  }

  /** Fetch a cached thread's activities again; a thread that is not open is only forgotten. */
  async reloadActivities(id) {
    const cache = this.threads.get(id);
    if (!cache) return;
    if (id !== this.selectedId) {
      this.threads.delete(id);
      return;
    }
    let detail;
    try {
      detail = await this.api.getConversation(id);
    } catch {
      return; // The activity appears when the thread is opened again.
    }
    for (const activity of detail.activities ?? []) cache.activities.set(activity.id, activity);
    if (id === this.selectedId) this.renderThread();
  }

  applyActivities(activities) {
    for (const activity of activities) {
      const cache = this.threads.get(activity.conversation_id);
      if (cache) cache.activities.set(activity.id, activity);
      // A merge moved messages into this conversation, so its cached thread is incomplete.
      if (activity.action === 'merged_from' && cache) {
        this.threads.delete(activity.conversation_id);
        if (activity.conversation_id === this.selectedId) this.openConversation(this.selectedId);
      }
      if (activity.action === 'label_added' && !this.labels.some((label) => label.id === activity.details?.label?.id)) {
        this.loadDirectory();
      }
    }
  }

  applyMessageCreated({ message, conversation }) {
    if (conversation) this.applyConversationEvent(conversation, []);
    if (!message) return;
    this.storeMessage(message, { fromEvent: true });
    // A reply ends its author's typing at once, without waiting for the timeout.
    if (message.direction === 'outbound' && message.author?.type === 'agent') {
      this.stopTyping(message.conversation_id, message.author.id);
    }

    if (message.direction === 'inbound') {
      const known = this.conversations.get(message.conversation_id) ?? conversation;
      const who = contactDisplayName(known?.contact);
      const text = (message.subject && message.channel_kind === 'email' ? message.subject : message.text) || '';
      this.announce(`New ${channelLabel(message.channel_kind)} message from ${who}: ${truncate(text, ANNOUNCED_TEXT_LENGTH)}`);
    }
  }

  applyMessageUpdated(message) {
    const cache = this.threads.get(message.conversation_id);
    const previous = cache?.messages.get(message.id);
    this.storeMessage(message, { fromEvent: true });

    const failed = message.delivery_status === 'failed' || message.delivery_status === 'undelivered';
    if (failed && previous?.delivery_status !== message.delivery_status) {
      const who = contactDisplayName(this.conversations.get(message.conversation_id)?.contact);
      this.announce(`Reply to ${who} was not delivered: ${message.error || 'no reason given'}`);
    }
  }

  // ---- Typing and presence -------------------------------------------------------------

  receiveTyping({ agent, conversation_id: conversationId }) {
    if (!agent || !Number.isInteger(agent.id) || agent.id === this.agentId) return;
    if (!Number.isInteger(conversationId)) return;

    let typists = this.typing.get(conversationId);
    if (!typists) {
      typists = new Map();
      this.typing.set(conversationId, typists);
    }
    window.clearTimeout(typists.get(agent.id)?.timer);
    typists.set(agent.id, {
      name: agentDisplayName(agent),
      timer: window.setTimeout(() => this.stopTyping(conversationId, agent.id), TYPING_VISIBLE_MS),
    });
    if (conversationId === this.selectedId) this.renderTyping();
  }

  stopTyping(conversationId, agentId) {
    const typists = this.typing.get(conversationId);
    const entry = typists?.get(agentId);
    if (!entry) return;
    window.clearTimeout(entry.timer);
    typists.delete(agentId);
    if (typists.size === 0) this.typing.delete(conversationId);
    if (conversationId === this.selectedId) this.renderTyping();
  }

  receivePresence({ agent, online }) {
    if (!agent || !Number.isInteger(agent.id) || agent.id === this.agentId) return;
    if (online) {
      this.onlineAgents.set(agent.id, { id: agent.id, name: agentDisplayName(agent) });
    } else {
      this.onlineAgents.delete(agent.id);
      // An agent who left stops typing everywhere.
      for (const conversationId of [...this.typing.keys()]) this.stopTyping(conversationId, agent.id);
    }
    this.renderPresence();
    this.updateDirectory();
  }

  receivePresenceSnapshot(agents) {
    this.onlineAgents.clear();
    for (const agent of agents) {
      if (!agent || !Number.isInteger(agent.id) || agent.id === this.agentId) continue;
      this.onlineAgents.set(agent.id, { id: agent.id, name: agentDisplayName(agent) });
    }
    this.renderPresence();
    this.updateDirectory();
  }

  // ---- State -----------------------------------------------------------------------------

  /**
   * Store a conversation from the API or an event. Ones not loaded yet are added only when they
   * sort above the end of the loaded pages; the others arrive with their page.
   */
  mergeConversation(conversation, { insert = false } = {}) {
    const existing = this.conversations.get(conversation.id);
    if (!existing) {
      const shouldInsert = insert && (this.belongsToLoadedRange(conversation) || conversation.id === this.selectedId);
      if (!shouldInsert) return;
      this.conversations.set(conversation.id, conversation);
    } else {
      // A page fetched before a live change must not undo it, so only a newer copy replaces it.
      this.conversations.set(conversation.id, isOlderCopy(conversation, existing) ? existing : { ...existing, ...conversation });
    }

    if (conversation.id === this.selectedId) {
      const current = this.conversations.get(conversation.id);
      this.thread.updateHeader(current);
      this.contactPanel.show(current.contact?.id ?? null, current.id);
      this.controls.update(current);
      this.composer.setConversation(current.status === 'closed' ? null : current);
    }
  }

  belongsToLoadedRange(conversation) {
    if (!this.nextCursor) return true;
    const last = this.conversations.get(this.order[this.order.length - 1]);
    return !last || parseTimestamp(conversation.last_message_at) >= parseTimestamp(last.last_message_at);
  }

  threadCache(id) {
    let cache = this.threads.get(id);
    if (!cache) {
      cache = {
        messages: new Map(),
        activities: new Map(),
        notes: new Map(),
        complete: false,
        before: null,
        loadingOlder: false,
        olderError: null,
      };
      this.threads.set(id, cache);
    }
    return cache;
  }

  storeMessage(message, { fromEvent = false } = {}) {
    const cache = this.threads.get(message.conversation_id);
    // A conversation that was never opened has no cache; it loads in full when opened.
    if (cache) mergeIntoCache(cache, message, { fromEvent });
  }

  // ---- Drawing ---------------------------------------------------------------------------

  renderList() {
    if (!this.listReady) return;
    // A conversation that a change moved out of the view leaves the list, while its thread stays open.
    // While searching, only the server's results show, each with its snippet.
    const shown = [...this.conversations.values()]
      .filter((conversation) => matchesView(conversation, this.view.params, this.agentId))
      .filter((conversation) => !this.query || conversation.search)
      .sort(compareConversations);
    this.order = shown.map((conversation) => conversation.id);
    this.list.render(shown, {
      selectedId: this.selectedId,
      hasMore: Boolean(this.nextCursor),
      loadingMore: this.loadingMore,
      loadMoreError: this.loadMoreError,
      checkedIds: this.checked,
      filtered: this.view.key !== DEFAULT_VIEW.key,
      query: this.query,
    });
    this.bulkBar.setCount(this.checkedInView().length);
    if (this.selectedId === null) this.showThreadPlaceholder();
    this.updateTitle();
  }

  renderThread({ scrollToEnd = false, prepended = false } = {}) {
    const conversation = this.conversations.get(this.selectedId);
    const cache = this.threads.get(this.selectedId);
    if (!conversation || !cache?.complete) return;

    this.thread.showConversation(conversation);
    this.controls.update(conversation);
    this.composer.setConversation(conversation.status === 'closed' ? null : conversation);
    const messages = [...cache.messages.values()].sort(compareMessages);
    let activities = [...cache.activities.values()];
    let notes = [...cache.notes.values()];
    const hasOlder = cache.before !== null;
    if (hasOlder && messages.length > 0) {
      // Activities and notes from before the loaded messages wait for the older pages around them.
      const oldest = parseTimestamp(messages[0].created_at);
      activities = activities.filter((activity) => parseTimestamp(activity.created_at) >= oldest);
      notes = notes.filter((note) => parseTimestamp(note.created_at) >= oldest);
    }
    this.thread.renderMessages(conversation, messages, {
      scrollToEnd,
      activities,
      notes,
      agents: this.agents,
      prepended,
      older: { hasMore: hasOlder, loading: cache.loadingOlder, error: cache.olderError },
    });
  }

  renderTyping() {
    const typists = this.typing.get(this.selectedId);
    this.thread.showTyping(typists ? [...typists.values()].map((entry) => entry.name) : []);
  }

  renderPresence() {
    if (!this.presence) return;
    renderOnlineAgents(this.presence, [...this.onlineAgents.values()]);
  }

  showThreadPlaceholder() {
    this.thread.showPlaceholder(this.listReady && this.conversations.size === 0 ? 'empty' : 'none');
  }

  updateTitle() {
    let unread = 0;
    for (const conversation of this.conversations.values()) unread += Number(conversation.unread_count) || 0;
    document.title = unread > 0 ? `(${unread}) Inbox · Switchboard` : 'Inbox · Switchboard';
  }

  showConnectionStatus(status) {
    const labels = { connecting: 'Connecting…', live: 'Live', offline: 'Offline', unavailable: 'No live updates' };
    this.liveIndicator.className = `live live--${status}`;
    this.liveIndicator.querySelector('.live__label').textContent = labels[status];
    this.liveIndicator.title = status === 'live'
      ? 'New messages and status changes appear as they happen.'
      : 'New messages appear once the connection is back.';

    if (status === 'offline') {
      this.banner.textContent = 'Disconnected — retrying…';
      this.banner.hidden = false;
    } else if (status === 'unavailable') {
      this.banner.textContent = 'Live updates are unavailable because the Socket.IO client did not load. Reload the page to try again.';
      this.banner.hidden = false;
    } else if (status === 'live') {
      this.banner.hidden = true;
    }
  }

  announce(text) {
    // Clearing first makes screen readers read a repeated message again.
    this.announcer.textContent = '';
    window.requestAnimationFrame(() => { this.announcer.textContent = text; });
  }

  // ---- Keyboard --------------------------------------------------------------------------

  bindShortcuts() {
    const dialog = document.getElementById('shortcuts-dialog');
    document.getElementById('shortcuts-button')?.addEventListener('click', () => dialog?.showModal());
    dialog?.addEventListener('click', (event) => {
      if (event.target === dialog || event.target.closest('[data-close-dialog]')) dialog.close();
    });

    document.addEventListener('keydown', (event) => {
      if (event.defaultPrevented || event.isComposing) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (isEditableTarget(event.target) || dialog?.open) return;

      switch (event.key) {
        case 'j':
          event.preventDefault();
          this.moveSelection(1);
          break;
        case 'k':
          event.preventDefault();
          this.moveSelection(-1);
          break;
        case 'r':
        case 'n':
          if (this.selectedId === null) return;
          event.preventDefault();
          this.composer.focusMode(event.key === 'n');
          break;
        case 'e':
          event.preventDefault();
          this.resolveShortcut();
          break;
        case 'a':
          event.preventDefault();
          this.assignToMeShortcut();
          break;
        case 'x':
          if (this.selectedId === null) return;
          event.preventDefault();
          this.toggleChecked(this.selectedId);
          break;
        case '?':
          event.preventDefault();
          dialog?.showModal();
          break;
        case '/':
          if (!this.searchBox) return;
          event.preventDefault();
          this.searchBox.focus();
          break;
        case 'Escape':
          if (this.selectedId !== null && window.matchMedia('(max-width: 760px)').matches) this.deselect();
          break;
        default:
          break;
      }
    });
  }
}

function mergeIntoCache(cache, message, { fromEvent = false } = {}) {
  const existing = cache.messages.get(message.id);
  if (!existing) {
    cache.messages.set(message.id, message);
    return;
  }
  const keepStatus = !fromEvent && isOlderDelivery(message, existing);
  cache.messages.set(message.id, keepStatus
    ? {
      ...existing,
      ...message,
      delivery_status: existing.delivery_status,
      error: existing.error,
      retry: existing.retry,
      held: existing.held,
      cancelled: existing.cancelled,
      email_fallback: existing.email_fallback,
    }
    : { ...existing, ...message });
}

/**
 * True when `copy` of a conversation is older than the `current` one: the server changed it
 * earlier, or, between copies changed at the same time, its last message is older.
 */
function isOlderCopy(copy, current) {
  const changed = parseTimestamp(copy.updated_at) - parseTimestamp(current.updated_at);
  if (!Number.isNaN(changed) && changed !== 0) return changed < 0;
  return parseTimestamp(copy.last_message_at) < parseTimestamp(current.last_message_at);
}

/** True when `incoming` shows an earlier delivery state than `existing`: a lower status or fewer failed attempts. */
function isOlderDelivery(incoming, existing) {
  const incomingRank = DELIVERY_RANK[incoming.delivery_status] ?? 0;
  const existingRank = DELIVERY_RANK[existing.delivery_status] ?? 0;
  if (incomingRank !== existingRank) return incomingRank < existingRank;
  return (incoming.retry?.attempts ?? 0) < (existing.retry?.attempts ?? 0);
}

function compareConversations(a, b) {
  const difference = (parseTimestamp(b.last_message_at) || 0) - (parseTimestamp(a.last_message_at) || 0);
  return difference !== 0 ? difference : b.id - a.id;
}

function compareMessages(a, b) {
  const difference = (parseTimestamp(a.created_at) || 0) - (parseTimestamp(b.created_at) || 0);
  return difference !== 0 ? difference : a.id - b.id;
}

function conversationIdFromHash() {
  if (!window.location.hash.startsWith(HASH_PREFIX)) return null;
  const id = Number(window.location.hash.slice(HASH_PREFIX.length));
  return Number.isInteger(id) && id > 0 ? id : null;
}

function parseEventId(value) {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : null;
}

function agentDisplayName(agent) {
  return typeof agent.name === 'string' && agent.name.trim() ? agent.name.trim() : 'Another agent';
}

function truncate(text, length) {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

/** Rewrite every relative time under `root` from its datetime attribute. */
function refreshRelativeTimes(root) {
  const now = Date.now();
  for (const element of root.querySelectorAll('time[data-relative]')) {
    const iso = element.getAttribute('datetime');
    element.textContent = formatRelative(iso, now);
    if (!element.title) element.title = formatFullTimestamp(iso);
  }
}

