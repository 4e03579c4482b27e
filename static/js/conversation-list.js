// The conversation list: a listbox whose selection follows the keyboard focus.

import { h, icon, replaceChildren } from './dom.js';
import {
  avatarHue, channelLabel, contactDisplayName, formatFullTimestamp, formatRelative, initials, snippetWithoutQuote,
} from './format.js';
import { renderSearchHit, searchHitText } from './search.js';
import { PRIORITY_LABELS, STATUS_LABELS } from './workflow.js';

const OPTION_ID_PREFIX = 'conversation-option-';
const SKELETON_ROWS = 7;

export class ConversationList {
  /**
   * @param {HTMLElement} container Scrollable element that receives the list.
   * @param {object} handlers
   * @param {(id: number) => void} handlers.onSelect Called when the agent picks a conversation.
   * @param {() => void} handlers.onLoadMore Called when the end of the list scrolls into view.
   * @param {() => void} handlers.onRetry Called by the "Try again" button of the error state.
   * @param {(id: number) => void} handlers.onToggleCheck Called when the agent checks or unchecks
   *   a conversation for a bulk action (its check box, or Ctrl/⌘-click on the row).
   */
  constructor(container, { onSelect, onLoadMore, onRetry, onToggleCheck }) {
    this.container = container;
    this.onSelect = onSelect;
    this.onLoadMore = onLoadMore;
    this.onRetry = onRetry;
    this.onToggleCheck = onToggleCheck;
    this.options = new Map();
    this.signatures = new Map();
    this.order = [];
    this.selectedId = null;
    this.hasMore = false;
    this.loadingMore = false;

    this.listbox = h('ul', {
      class: 'conversation-list',
      role: 'listbox',
      tabindex: '0',
      'aria-label': 'Conversations',
      onKeydown: (event) => this.handleKeydown(event),
      onClick: (event) => this.handleClick(event),
    });
    this.footer = h('div', { class: 'list-footer' });

    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting) && this.hasMore && !this.loadingMore) this.onLoadMore();
    }, { root: container, rootMargin: '200px 0px' });
    this.observer.observe(this.footer);
  }

  showLoading() {
    const rows = Array.from({ length: SKELETON_ROWS }, () =>
      h('li', { class: 'skeleton-row' },
        h('span', { class: 'skeleton skeleton--avatar' }),
        h('span', { class: 'skeleton-lines' },
          h('span', { class: 'skeleton skeleton--line' }),
          h('span', { class: 'skeleton skeleton--line skeleton--short' }))));
    replaceChildren(this.container,
      h('ul', { class: 'skeleton-list', 'aria-hidden': 'true' }, rows),
      h('p', { class: 'visually-hidden', role: 'status' }, 'Loading conversations…'));
  }

  showError(message) {
    replaceChildren(this.container, h('div', { class: 'state state--error', role: 'alert' },
      icon('alert', 'state__icon'),
      h('p', { class: 'state__title' }, 'Could not load conversations'),
      h('p', { class: 'state__text' }, message),
      h('button', { type: 'button', class: 'button', onClick: () => this.onRetry() }, 'Try again')));
  }

  /**
   * Show `conversations` in the given order, reusing the option element of each id.
   * @param {object[]} conversations
   * @param {object} view
   * @param {number|null} view.selectedId
   * @param {boolean} view.hasMore Another page can be loaded.
   * @param {boolean} view.loadingMore A page is being loaded.
   * @param {string|null} view.loadMoreError Message of the last failed page load.
   * @param {Set<number>} view.checkedIds The conversations checked for a bulk action.
   * @param {boolean} view.filtered The list shows a view other than everything, which changes the empty text.
   * @param {string} view.query The search the list shows, '' for none.
   */
  render(conversations, {
    selectedId, hasMore, loadingMore, loadMoreError, checkedIds = new Set(), filtered = false, query = '',
  }) {
    this.hasMore = hasMore;
    this.loadingMore = loadingMore;
    this.order = conversations.map((conversation) => conversation.id);

    if (conversations.length === 0 && !hasMore) {
      this.renderEmpty(filtered, query);
      return;
    }
    if (!this.container.contains(this.listbox)) replaceChildren(this.container, this.listbox, this.footer);

    this.reconcile(conversations, selectedId, checkedIds);
    this.renderFooter(hasMore, loadingMore, loadMoreError);
    this.setSelected(selectedId);
  }

  renderEmpty(filtered, query = '') {
    this.options.clear();
    this.signatures.clear();
    this.listbox.replaceChildren();
    let [title, text] = filtered
      ? ['Nothing in this view.', 'Conversations that match it appear here as they change.']
      : ['No conversations yet.', 'Messages from WhatsApp and email will appear here as they arrive.'];
    if (query) {
      [title, text] = [`No conversations match “${query}”.`, 'Try fewer or shorter words, or press Esc to clear the search.'];
    }
    replaceChildren(this.container, h('div', { class: 'state state--empty' },
      icon('inbox', 'state__icon'),
      h('p', { class: 'state__title' }, title),
      h('p', { class: 'state__text' }, text)));
  }

  reconcile(conversations, selectedId, checkedIds) {
    const keptIds = new Set(this.order);
    for (const [id, option] of this.options) {
      if (keptIds.has(id)) continue;
      option.remove();
      this.options.delete(id);
      this.signatures.delete(id);
    }

    conversations.forEach((conversation, index) => {
      const signature = optionSignature(conversation);
      let option = this.options.get(conversation.id);
      if (!option) {
        option = h('li', { id: `${OPTION_ID_PREFIX}${conversation.id}`, role: 'option', class: 'conversation' });
        option.dataset.id = String(conversation.id);
        this.options.set(conversation.id, option);
      }
      if (this.signatures.get(conversation.id) !== signature) {
        fillOption(option, conversation);
        this.signatures.set(conversation.id, signature);
      }
      option.setAttribute('aria-selected', String(conversation.id === selectedId));
      option.setAttribute('aria-checked', String(checkedIds.has(conversation.id)));

      // Move a node only when it is out of place, so unchanged rows keep their position.
      const current = this.listbox.children[index];
      if (current !== option) this.listbox.insertBefore(option, current ?? null);
    });
  }

  renderFooter(hasMore, loadingMore, loadMoreError) {
    if (loadMoreError) {
      replaceChildren(this.footer,
        h('span', { class: 'list-footer__error', role: 'alert' }, loadMoreError),
        h('button', { type: 'button', class: 'button button--small', onClick: () => this.onLoadMore() }, 'Try again'));
    } else if (loadingMore) {
      replaceChildren(this.footer, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading more…');
    } else if (hasMore) {
      replaceChildren(this.footer,
        h('button', { type: 'button', class: 'button button--small button--ghost', onClick: () => this.onLoadMore() }, 'Load more'));
    } else {
      this.footer.replaceChildren();
    }
  }

  /** Mark `id` as selected, point the listbox's active descendant at it and scroll it into view. */
  setSelected(id) {
    const previous = this.options.get(this.selectedId);
    if (previous) previous.setAttribute('aria-selected', 'false');
    this.selectedId = id;

    const option = this.options.get(id);
    if (option) {
      option.setAttribute('aria-selected', 'true');
      this.listbox.setAttribute('aria-activedescendant', option.id);
      option.scrollIntoView({ block: 'nearest' });
    } else {
      this.listbox.removeAttribute('aria-activedescendant');
    }
  }

  /** Return the id `step` rows away from the selection (the first row when none is selected). */
  neighbourId(step) {
    if (this.order.length === 0) return null;
    const index = this.order.indexOf(this.selectedId);
    if (index === -1) return step > 0 ? this.order[0] : this.order[this.order.length - 1];
    const next = Math.min(this.order.length - 1, Math.max(0, index + step));
    return this.order[next];
  }

  focus() {
    if (this.container.contains(this.listbox)) this.listbox.focus();
  }

  handleClick(event) {
    const option = event.target.closest('[role="option"]');
    if (!option) return;
    const id = Number(option.dataset.id);
    if (event.target.closest('.conversation__check') || event.ctrlKey || event.metaKey) {
      this.onToggleCheck(id);
      return;
    }
    this.onSelect(id);
  }

  /** Show which conversations are checked, without redrawing the rows. */
  setChecked(checkedIds) {
    for (const [id, option] of this.options) option.setAttribute('aria-checked', String(checkedIds.has(id)));
  }

  handleKeydown(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;

    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10 };
    let targetId = null;
    if (event.key in moves) targetId = this.neighbourId(moves[event.key]);
    else if (event.key === 'Home') targetId = this.order[0] ?? null;
    else if (event.key === 'End') targetId = this.order[this.order.length - 1] ?? null;
    else if ((event.key === 'Enter' || event.key === ' ') && this.selectedId === null) targetId = this.order[0] ?? null;
    else return;

    event.preventDefault();
    if (targetId !== null && targetId !== this.selectedId) this.onSelect(targetId);
  }
}

function optionSignature(conversation) {
  return JSON.stringify([
    conversation.channel?.kind,
    conversation.contact?.name,
    conversation.contact?.address,
    conversation.subject,
    conversation.snippet,
    conversation.status,
    conversation.unread_count,
    conversation.last_message_at,
    conversation.priority,
    conversation.assignee?.name,
    (conversation.labels ?? []).map((label) => label.name),
    conversation.search ?? null,
  ]);
}

function fillOption(option, conversation) {
  const kind = conversation.channel?.kind;
  const name = contactDisplayName(conversation.contact);
  const unread = Number(conversation.unread_count) || 0;
  const subject = kind === 'email' && conversation.subject ? conversation.subject : null;
  // Email snippets lose the quoted earlier thread, which the thread view folds away too.
  const snippet = kind === 'email' ? snippetWithoutQuote(conversation.snippet || '') : conversation.snippet || '';

  option.classList.toggle('conversation--unread', unread > 0);
  option.classList.toggle('conversation--resolved', conversation.status === 'resolved');

  const status = conversation.status !== 'open' ? STATUS_LABELS[conversation.status] ?? conversation.status : null;
  const priority = conversation.priority === 'high' || conversation.priority === 'urgent' ? conversation.priority : null;
  const labels = (conversation.labels ?? []).map((label) => label.name);

  // The accessible name is one short sentence, while the visible layout uses several lines.
  const labelParts = [name, channelLabel(kind)];
  if (unread > 0) labelParts.push(`${unread} unread`);
  if (status) labelParts.push(status);
  if (priority) labelParts.push(`${PRIORITY_LABELS[priority]} priority`);
  if (conversation.assignee) labelParts.push(`assigned to ${conversation.assignee.name}`);
  if (labels.length > 0) labelParts.push(`labels ${labels.join(', ')}`);
  if (subject) labelParts.push(subject);
  if (conversation.search) labelParts.push(`found: ${searchHitText(conversation.search)}`);
  else if (snippet) labelParts.push(snippet);
  labelParts.push(formatRelative(conversation.last_message_at));
  option.setAttribute('aria-label', labelParts.join(', '));

  replaceChildren(option,
    h('span', { class: 'conversation__check', 'aria-hidden': 'true', title: 'Select for a bulk action' }),
    renderAvatar(conversation.contact, kind),
    h('div', { class: 'conversation__body' },
      h('div', { class: 'conversation__row' },
        h('span', { class: 'conversation__name' }, name),
        h('time', {
          class: 'conversation__time',
          datetime: conversation.last_message_at,
          title: formatFullTimestamp(conversation.last_message_at),
          dataset: { relative: '' },
        }, formatRelative(conversation.last_message_at))),
      h('div', { class: 'conversation__row' },
        h('span', { class: 'conversation__preview' },
          channelBadge(kind),
          h('span', { class: subject ? 'conversation__subject' : 'conversation__snippet' }, subject ?? snippet)),
        unread > 0 ? h('span', { class: 'unread-badge', 'aria-hidden': 'true' }, unread > 99 ? '99+' : String(unread)) : null),
      subject && snippet && !conversation.search
        ? h('div', { class: 'conversation__snippet conversation__snippet--secondary' }, snippet) : null,
      conversation.search ? renderSearchHit(conversation.search) : null,
      renderTags(conversation, status, priority, labels)));
}

/** Create the row of status, priority, assignee and labels, or nothing for an open, unlabelled conversation. */
function renderTags(conversation, status, priority, labels) {
  if (!status && !priority && !conversation.assignee && labels.length === 0) return null;
  return h('div', { class: 'conversation__tags', 'aria-hidden': 'true' },
    status ? h('span', { class: `status-pill status-pill--${conversation.status}` }, status) : null,
    priority ? h('span', { class: `priority-pill priority-pill--${priority}` }, PRIORITY_LABELS[priority]) : null,
    conversation.assignee ? h('span', { class: 'conversation__assignee', title: `Assigned to ${conversation.assignee.name}` },
      initials(conversation.assignee.name)) : null,
    labels.map((label) => h('span', { class: 'label-pill', title: label }, label)));
}

/** Create the round avatar of a contact, with the initials or a channel icon when it has no name. */
export function renderAvatar(contact, kind, size = '') {
  const hasName = Boolean(contact?.name && contact.name.trim());
  const avatar = h('span', { class: `avatar avatar--contact ${size}`.trim(), 'aria-hidden': 'true' },
    hasName ? initials(contact.name) : icon(kind === 'email' ? 'email' : 'chat'));
  // Set through the CSSOM, which a Content-Security-Policy without 'unsafe-inline' still allows.
  avatar.style.setProperty('--avatar-hue', String(avatarHue(contact?.id)));
  return avatar;
}

/** Create the badge of a channel kind, labelled "WhatsApp" / "Email" unless `text` is given. */
export function channelBadge(kind, extraClass = '', text = channelLabel(kind)) {
  const known = kind === 'whatsapp' || kind === 'email';
  return h('span', { class: `channel-badge channel-badge--${known ? kind : 'other'} ${extraClass}`.trim() },
    icon(kind === 'email' ? 'email' : 'whatsapp'),
    text);
}
