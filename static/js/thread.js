// The thread pane: conversation header, the messages of both channels in order, and the place
// where the reply box is mounted.

import { h, icon, replaceChildren } from './dom.js';
import { EstimatePanel } from './estimate-panel.js';
import { channelBadge, renderAvatar } from './conversation-list.js';
import {
  channelLabel, contactDisplayName, displayAddress, formatDayHeading, formatFullTimestamp, formatRelative, localDayKey,
  parseTimestamp,
} from './format.js';
import {
  bodySignature, renderFailingAddressWarning, renderMessage, renderOptOutNote, statusSignature, updateMessageStatus,
} from './message-view.js';
import { renderNote } from './note-view.js';
import { STATUS_LABELS, describeActivity } from './workflow.js';

// Within this many pixels of the end, the thread counts as "at the bottom" and follows new messages.
const STICK_TO_BOTTOM_PX = 96;
// Scrolled to within this many pixels of the top, the thread loads the page before the oldest message.
const LOAD_OLDER_PX = 300;

// The classes of the buttons in the thread header that a redraw gives the focus back to.
const HEADER_BUTTONS = ['thread__back', 'thread__rename', 'thread__contact-toggle'];

export class ThreadView {
  /**
   * @param {HTMLElement} root The thread pane.
   * @param {object} handlers
   * @param {() => void} handlers.onRetry Reload the open conversation after an error.
   * @param {() => void} handlers.onBack Leave the thread on narrow screens.
   * @param {(messageId: number) => Promise<void>} handlers.onCancelHeld Cancel a held WhatsApp reply.
   * @param {(messageId: number) => Promise<void>} handlers.onSendByEmail Resend a failed WhatsApp reply by email.
   * @param {(contact: object) => void} handlers.onRename Let the agent set the contact's name.
   * @param {() => void} handlers.onLoadOlder Load the page of messages before the oldest one shown.
   */
  constructor(root, { onRetry, onBack, onCancelHeld, onSendByEmail, onRename, onLoadOlder = () => {} }) {
    this.root = root;
    this.onRetry = onRetry;
    this.onBack = onBack;
    this.messageActions = { onCancelHeld, onSendByEmail };
    this.onRename = onRename;
    this.estimate = new EstimatePanel(document.getElementById('app')?.dataset.apiRoot ?? '/api/v1');
    this.onLoadOlder = onLoadOlder;
    // The top of a thread whose older messages are not loaded yet: a button, a spinner or an error.
    this.olderNode = h('div', { class: 'thread__older' });
    this.olderState = null;
    this.conversationId = null;
    this.nodes = new Map();
    this.bodySignatures = new Map();
    this.statusSignatures = new Map();
    // True while the agent is at the end of the thread, so content that grows (an email frame
    // sizing itself, an image loading) keeps the newest message in view.
    this.pinnedToEnd = true;

    this.headerMain = h('div', { class: 'thread__header-main' });
    // The workflow controls stay mounted while the header above them is redrawn.
    this.controlsHost = h('div', { class: 'thread__controls' });
    this.header = h('header', { class: 'thread__header' }, this.headerMain, this.controlsHost);
    this.messageList = h('div', { class: 'thread__messages' });
    this.newMessagesButton = h('button', {
      type: 'button',
      class: 'new-messages',
      hidden: true,
      onClick: () => this.scrollToEnd(),
    }, icon('down'), 'New messages');
    this.scroller = h('div', {
      class: 'thread__scroller',
      tabindex: '0',
      role: 'region',
      'aria-label': 'Messages',
      onScroll: () => {
        this.pinnedToEnd = this.isNearBottom();
        if (this.pinnedToEnd) this.newMessagesButton.hidden = true;
        this.loadOlderIfNearTop();
      },
    }, this.messageList);
    // The scroller itself shrinks when the reply box grows (the template picker, a held-reply
    // notice), which fires no scroll event, so its size is watched as well.
    const endObserver = new ResizeObserver(() => {
      if (this.pinnedToEnd && this.nodes.size > 0) this.scroller.scrollTop = this.scroller.scrollHeight;
    });
    endObserver.observe(this.messageList);
    endObserver.observe(this.scroller);
    this.typingIndicator = h('p', { class: 'typing', role: 'status', hidden: true });
    this.composerHost = h('div', { class: 'thread__composer' });
    this.body = h('div', { class: 'thread' },
      this.header,
      h('div', { class: 'thread__scroll-area' }, this.scroller, this.newMessagesButton, this.typingIndicator),
      this.composerHost);
    // The contact panel (contact-panel.js) sits beside the thread; wide screens show it at first.
    this.contactOpen = window.matchMedia('(min-width: 1360px)').matches;
    this.contactHost = h('aside', {
      class: 'contact-panel', id: 'contact-panel', 'aria-labelledby': 'contact-panel-title', hidden: !this.contactOpen,
    });
    // On a phone the panel covers the thread, so Esc inside it closes the panel instead of
    // leaving the conversation. A field or a dialog in the panel keeps its own use of Esc.
    this.contactHost.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape' || event.defaultPrevented || !this.contactOpen) return;
      if (!window.matchMedia('(max-width: 760px)').matches) return;
      if (event.target.closest('input, textarea, select, dialog')) return;
      event.preventDefault();
      event.stopPropagation();
      this.closeContact();
    });
    this.layout = h('div', { class: 'thread-layout' }, this.body, this.contactHost);
  }

  toggleContact() {
    this.contactOpen = !this.contactOpen;
    this.contactHost.hidden = !this.contactOpen;
    this.contactToggle()?.setAttribute('aria-expanded', String(this.contactOpen));
    if (this.contactOpen) this.contactHost.querySelector('button:not(.contact-panel__close), input, textarea')?.focus();
  }

  /** Hide the contact panel and give the focus back to the header's toggle. */
  closeContact() {
    if (!this.contactOpen) return;
    this.toggleContact();
    this.contactToggle()?.focus();
  }

  contactToggle() {
    return this.headerMain.querySelector('.thread__contact-toggle');
  }

  /** Show the placeholder of an empty pane: no conversation selected, or none at all. */
  showPlaceholder(kind) {
    this.conversationId = null;
    this.clearMessages();
    const content = kind === 'empty'
      ? [icon('inbox', 'state__icon'), h('p', { class: 'state__title' }, 'Nothing to answer'),
        h('p', { class: 'state__text' }, 'New conversations will open here.')]
      : [icon('chat', 'state__icon'), h('p', { class: 'state__title' }, 'Select a conversation'),
        h('p', { class: 'state__text' },
          'Pick one from the list, or press ', h('kbd', {}, 'j'), ' and ', h('kbd', {}, 'k'), ' to move through it.')];
    replaceChildren(this.root, h('div', { class: 'state state--placeholder' }, content));
  }

  /** Show the header of a conversation. The messages follow through showLoading or renderMessages. */
  showConversation(conversation) {
    this.attach(conversation.id);
    this.updateHeader(conversation);
  }

  /** Show the frame for a conversation whose details have not arrived yet. */
  showUnknown(id) {
    this.attach(id);
    this.controlsHost.hidden = true;
    replaceChildren(this.headerMain,
      h('button', { type: 'button', class: 'icon-button thread__back', 'aria-label': 'Back to conversations', onClick: () => this.onBack() },
        icon('back')),
      h('div', { class: 'thread__identity' }, h('h2', { class: 'thread__name', id: 'thread-title' }, 'Conversation')));
  }

  attach(id) {
    if (!this.root.contains(this.layout)) replaceChildren(this.root, this.layout);
    if (this.conversationId !== id) {
      this.conversationId = id;
      this.clearMessages();
    }
  }

  updateHeader(conversation) {
    const kind = conversation.channel?.kind;
    const name = contactDisplayName(conversation.contact);
    const address = displayAddress(conversation.contact?.address);
    const status = STATUS_LABELS[conversation.status] ?? conversation.status;
    this.controlsHost.hidden = false;
    // A redraw replaces the header's buttons, so the one that had the focus gets it back.
    const focused = this.headerMain.contains(document.activeElement)
      ? HEADER_BUTTONS.find((name) => document.activeElement.classList.contains(name))
      : undefined;

    replaceChildren(this.headerMain,
      h('button', { type: 'button', class: 'icon-button thread__back', 'aria-label': 'Back to conversations', onClick: () => this.onBack() },
        icon('back')),
      renderAvatar(conversation.contact, kind, 'avatar--large'),
      h('div', { class: 'thread__identity' },
        h('div', { class: 'thread__title-row' },
          h('h2', { class: 'thread__name', id: 'thread-title' }, name),
          conversation.contact?.id
            ? h('button', {
              type: 'button',
              class: 'link-button thread__rename',
              title: conversation.contact.name_set_by_agent
                ? 'Named by an agent'
                : 'The name comes from the channel until an agent sets one',
              onClick: () => this.onRename(conversation.contact),
            }, 'Rename')
            : null,
          h('button', {
            type: 'button',
            class: 'link-button thread__contact-toggle',
            'aria-controls': 'contact-panel',
            'aria-expanded': String(this.contactOpen),
            onClick: () => this.toggleContact(),
          }, 'Contact details')),
        h('p', { class: 'thread__details' },
          address && address !== name ? h('span', { class: 'thread__address' }, address) : null,
          channelInfo(conversation.channel),
          status ? h('span', { class: `status-pill status-pill--${conversation.status}` }, status) : null),
        this.estimate.element,
        kind === 'email' && conversation.subject
          ? h('p', { class: 'thread__subject' }, h('span', { class: 'visually-hidden' }, 'Subject: '), conversation.subject)
          : null,
        renderFailingAddressWarning(conversation),
        renderOptOutNote(conversation)));
    if (focused) this.headerMain.querySelector(`.${focused}`)?.focus();
    this.estimate.show(conversation);
  }

  /** Show which other agents are typing in this conversation, or nothing for an empty list. */
  showTyping(names) {
    const indicator = this.typingIndicator;
    if (names.length === 0) {
      indicator.hidden = true;
      indicator.replaceChildren();
      return;
    }
    // A long name is cut with "…" (the title has the whole text), so the line keeps the one
    // row that the thread leaves free below its last line and "is typing" stays in view.
    const name = (index) => h('span', { class: 'typing__name' }, names[index]);
    let parts;
    if (names.length === 1) parts = [name(0), ' is typing…'];
    else if (names.length === 2) parts = [name(0), ' and ', name(1), ' are typing…'];
    else parts = [`${names.length} agents are typing…`];
    const text = parts.map((part) => (typeof part === 'string' ? part : part.textContent)).join('');
    indicator.hidden = false;
    // The line is a live region: rewriting the same text would make screen readers repeat it
    // on every typing event.
    if (indicator.textContent === text) return;
    replaceChildren(indicator,
      h('span', { class: 'typing__dots', 'aria-hidden': 'true' }, h('span', {}), h('span', {}), h('span', {})),
      h('span', { class: 'typing__text', title: text }, parts));
  }

  showLoading() {
    this.clearMessages();
    replaceChildren(this.messageList, h('div', { class: 'state state--inline', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading messages…'));
  }

  showError(message) {
    this.clearMessages();
    replaceChildren(this.messageList, h('div', { class: 'state state--error', role: 'alert' },
      icon('alert', 'state__icon'),
      h('p', { class: 'state__title' }, 'Could not load this conversation'),
      h('p', { class: 'state__text' }, message),
      h('button', { type: 'button', class: 'button', onClick: () => this.onRetry() }, 'Try again')));
  }

  /**
   * Show `messages` (oldest first) with a heading per day. Existing message elements are reused,
   * so an email frame does not reload when another message arrives or a status changes.
   * @param {object} conversation
   * @param {object[]} messages
   * @param {object} options
   * @param {boolean} options.scrollToEnd Scroll to the newest message whatever the position.
   * @param {object[]} options.activities The conversation's activity log, shown between the messages by time.
   * @param {object[]} options.notes The conversation's internal notes, shown between the messages by time.
   * @param {object[]} options.agents The agents ({id, name, email}) whose @mentions notes mark.
   * @param {boolean} options.prepended The new messages are an older page, so the view keeps its place.
   * @param {{hasMore: boolean, loading: boolean, error: string|null}|null} options.older Whether older
   *   messages exist beyond the first one given, and the state of loading them.
   */
  renderMessages(conversation, messages, {
    scrollToEnd = false, activities = [], notes = [], agents = [], prepended = false, older = null,
  } = {}) {
    const wasNearBottom = this.isNearBottom();
    // Measured from the end, so the messages in view stay put when older ones are added above.
    const distanceFromEnd = this.scroller.scrollHeight - this.scroller.scrollTop;
    const firstRender = this.nodes.size === 0;
    if (firstRender) this.messageList.replaceChildren();

    if (messages.length === 0 && activities.length === 0 && notes.length === 0) {
      replaceChildren(this.messageList, h('div', { class: 'state state--inline' }, 'No messages in this conversation yet.'));
      return;
    }
    const stateNode = this.messageList.querySelector(':scope > .state');
    if (stateNode) stateNode.remove();

    const desiredNodes = [];
    this.renderOlder(older);
    if (older?.hasMore) desiredNodes.push(this.olderNode);
    else this.olderNode.remove();
    let added = 0;
    let previousDay = null;
    const taggedNotes = notes.map((note) => ({ ...note, kind: 'note' }));
    for (const item of interleave(foldReactions(messages), [...activities, ...taggedNotes])) {
      const day = localDayKey(item.created_at);
      if (day !== previousDay) {
        desiredNodes.push(this.dayNode(day, item.created_at));
        previousDay = day;
      }
      if (item.action !== undefined) {
        desiredNodes.push(this.activityNode(item));
        continue;
      }
      if (item.kind === 'note') {
        const key = `note:${item.id}`;
        if (!this.nodes.has(key)) {
          this.nodes.set(key, renderNote(item, agents));
          added += 1;
        }
        desiredNodes.push(this.nodes.get(key));
        continue;
      }
      const { node, isNew } = this.messageNode(item, conversation);
      if (isNew) added += 1;
      desiredNodes.push(node);
    }

    const keptNodes = new Set(desiredNodes);
    for (const [key, node] of this.nodes) {
      if (keptNodes.has(node)) continue;
      node.remove();
      this.nodes.delete(key);
    }
    desiredNodes.forEach((node, index) => {
      const current = this.messageList.children[index];
      if (current !== node) this.messageList.insertBefore(node, current ?? null);
    });

    if (prepended && !firstRender) {
      this.scroller.scrollTop = this.scroller.scrollHeight - distanceFromEnd;
    } else if (firstRender || scrollToEnd || (added > 0 && wasNearBottom)) {
      this.scrollToEnd();
    } else if (added > 0) {
      this.newMessagesButton.hidden = false;
    }
    // A page that ends near the top, or messages too few to fill the pane, call for the next
    // page without a scroll. Deferred, because loading renders this view again.
    queueMicrotask(() => this.loadOlderIfNearTop());
  }

  /**
   * Load the page before the oldest message when the view is within LOAD_OLDER_PX of the top.
   * Checked on every scroll and after every render, because an IntersectionObserver reports only
   * changes between frames. When the view moved down to keep its place after a page and was back
   * at the top before the next frame, the observer reported nothing and no further page loaded.
   */
  loadOlderIfNearTop() {
    const older = this.olderState;
    if (!older?.hasMore || older.loading || older.error) return;
    // A pane that is not laid out (hidden on a phone) has no position to go by.
    if (this.scroller.clientHeight === 0 || this.scroller.scrollTop >= LOAD_OLDER_PX) return;
    this.onLoadOlder();
  }

  renderOlder(older) {
    const signature = JSON.stringify(older);
    if (signature === JSON.stringify(this.olderState)) return;
    this.olderState = older;
    if (!older?.hasMore) {
      this.olderNode.replaceChildren();
    } else if (older.error) {
      replaceChildren(this.olderNode,
        h('span', { class: 'thread__older-error', role: 'alert' }, older.error),
        h('button', { type: 'button', class: 'button button--small', onClick: () => this.onLoadOlder() }, 'Try again'));
    } else if (older.loading) {
      replaceChildren(this.olderNode, h('span', { class: 'spinner', 'aria-hidden': 'true' }),
        h('span', { role: 'status' }, 'Loading earlier messages…'));
    } else {
      replaceChildren(this.olderNode, h('button', {
        type: 'button', class: 'button button--small button--ghost', onClick: () => this.onLoadOlder(),
      }, 'Load earlier messages'));
    }
  }

  dayNode(day, iso) {
    const key = `day:${day}`;
    let node = this.nodes.get(key);
    if (!node) {
      node = h('div', { class: 'day-divider', role: 'separator' }, h('span', {}, formatDayHeading(iso)));
      this.nodes.set(key, node);
    }
    return node;
  }

  activityNode(activity) {
    const key = `activity:${activity.id}`;
    let node = this.nodes.get(key);
    if (!node) {
      node = h('p', { class: 'activity' },
        h('span', { class: 'activity__text' }, describeActivity(activity)),
        h('time', {
          class: 'activity__time',
          datetime: activity.created_at,
          title: formatFullTimestamp(activity.created_at),
          dataset: { relative: '' },
        }, formatRelative(activity.created_at)));
      this.nodes.set(key, node);
    }
    return node;
  }

  messageNode(message, conversation) {
    const key = `message:${message.id}`;
    let node = this.nodes.get(key);
    const body = bodySignature(message);
    const status = statusSignature(message);
    let isNew = false;

    if (!node || this.bodySignatures.get(key) !== body) {
      const replacement = renderMessage(message, conversation, this.messageActions);
      if (node) node.replaceWith(replacement);
      else isNew = true;
      node = replacement;
      this.nodes.set(key, node);
      this.bodySignatures.set(key, body);
    } else if (this.statusSignatures.get(key) !== status) {
      updateMessageStatus(node, message);
    }
    this.statusSignatures.set(key, status);
    return { node, isNew };
  }

  clearMessages() {
    this.olderState = null;
    this.olderNode.remove();
    this.nodes.clear();
    this.bodySignatures.clear();
    this.statusSignatures.clear();
    this.messageList.replaceChildren();
    this.newMessagesButton.hidden = true;
  }

  isNearBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight < STICK_TO_BOTTOM_PX;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.pinnedToEnd = true;
    this.newMessagesButton.hidden = true;
  }
}

/**
 * Create the channel part of the header. The badge carries the kind. A channel name that already
 * names the kind ("Support WhatsApp") replaces the badge's label, so the kind is not read twice.
 * Any other name follows the badge as "via <name>".
 */
function channelInfo(channel) {
  const kind = channel?.kind;
  const name = typeof channel?.name === 'string' ? channel.name.trim() : '';
  if (!name) return channelBadge(kind);

  const label = channelLabel(kind);
  if (name.toLowerCase() === label.toLowerCase()) return channelBadge(kind);
  if (containsWord(name, label)) {
    const badge = channelBadge(kind, '', name);
    badge.title = `${label} channel`;
    return badge;
  }
  return [channelBadge(kind), h('span', { class: 'thread__channel-name' }, `via ${name}`)];
}

/** Return messages and activities in one list by time; at the same time a message comes first. */
function interleave(messages, activities) {
  if (activities.length === 0) return messages;
  return [...messages, ...activities].sort((a, b) => {
    const difference = (parseTimestamp(a.created_at) || 0) - (parseTimestamp(b.created_at) || 0);
    if (difference !== 0) return difference;
    return (a.action === undefined ? 0 : 1) - (b.action === undefined ? 0 : 1) || a.id - b.id;
  });
}

function containsWord(text, word) {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}])${escaped}($|[^\\p{L}\\p{N}])`, 'iu').test(text);
}

/**
 * Return `messages` with each WhatsApp reaction folded onto the message it reacts to, as that
 * message's `reactions`. The newest reaction counts, as in WhatsApp, and one without an emoji
 * removes it. A reaction to a message outside this thread stays a message of its own.
 */
export function foldReactions(messages) {
  const ids = new Set(messages.map((message) => message.id));
  const latest = new Map();
  for (const message of messages) {
    const target = message.reply_to?.id;
    if (message.content?.type === 'reaction' && ids.has(target)) latest.set(target, message.content.emoji);
  }
  return messages
    .filter((message) => !(message.content?.type === 'reaction' && ids.has(message.reply_to?.id)))
    .map((message) => {
      const emoji = latest.get(message.id);
      return emoji ? { ...message, reactions: [emoji] } : message;
    });
}
