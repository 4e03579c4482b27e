// The @mentions button in the top bar: the unread count, and a panel listing the notes that
// mention the signed-in agent. Opening one marks it read and opens its conversation.

import { h, replaceChildren } from './dom.js';
import { formatFullTimestamp, formatRelative } from './format.js';
import { listMentions, markMentionsRead } from './collab-api.js';

export class MentionsMenu {
  /**
   * @param {HTMLElement} host Where the button and the panel go.
   * @param {object} options
   * @param {object} options.api The inbox's ApiClient.
   * @param {(conversationId: number) => void} options.onOpen Opens a conversation.
   * @param {(text: string) => void} options.announce Says a text to screen readers.
   */
  constructor(host, { api, onOpen, announce }) {
    this.api = api;
    this.onOpen = onOpen;
    this.announce = announce;
    this.items = new Map();
    this.unread = 0;

    this.count = h('span', { class: 'mentions__count', hidden: true });
    this.button = h('button', {
      type: 'button', class: 'button button--ghost button--small mentions__button', id: 'mentions-button',
      'aria-expanded': 'false', 'aria-controls': 'mentions-panel', onClick: () => this.toggle(),
    }, '@', h('span', { class: 'mentions__label' }, ' Mentions'), this.count);
    this.list = h('ul', { class: 'mentions__list', 'aria-label': 'Mentions' });
    this.status = h('p', { class: 'mentions__status', role: 'status' });
    this.markAllButton = h('button', { type: 'button', class: 'link-button', onClick: () => this.markAllRead() }, 'Mark all read');
    this.panel = h('div', {
      class: 'mentions__panel', id: 'mentions-panel', role: 'region', 'aria-label': 'Mentions of you', hidden: true,
      onKeydown: (event) => {
        if (event.key === 'Escape') { event.preventDefault(); this.close(); this.button.focus(); }
      },
    },
    h('div', { class: 'mentions__header' }, h('span', { class: 'mentions__heading' }, 'Mentions of you'), this.markAllButton),
    this.status,
    this.list);
    replaceChildren(host, h('div', { class: 'mentions' }, this.button, this.panel));
    document.addEventListener('click', (event) => {
      if (!this.panel.hidden && !host.contains(event.target)) this.close();
    });
  }

  async load() {
    try {
      const result = await listMentions(this.api);
      this.items = new Map((result.items ?? []).map((item) => [item.id, item]));
      this.setUnread(result.unread_count ?? 0);
    } catch (error) {
      this.status.textContent = `Could not load mentions: ${error.message}`;
      return;
    }
    this.render();
  }

  /** Add a mention that arrived live (a mention.created event). */
  receive(mention) {
    if (!mention || this.items.has(mention.id)) return;
    this.items.set(mention.id, mention);
    if (!mention.read_at) this.setUnread(this.unread + 1);
    this.render();
    this.announce(`${mention.author?.name ?? 'An agent'} mentioned you: ${mention.snippet}`);
  }

  setUnread(count) {
    this.unread = Math.max(0, count);
    this.count.textContent = String(this.unread);
    this.count.hidden = this.unread === 0;
    this.button.setAttribute('aria-label', this.unread === 0 ? 'Mentions' : `Mentions, ${this.unread} unread`);
    this.button.classList.toggle('mentions__button--unread', this.unread > 0);
  }

  render() {
    const items = [...this.items.values()].sort((a, b) => b.id - a.id);
    this.status.textContent = items.length === 0 ? 'Nobody has mentioned you yet.' : '';
    this.markAllButton.hidden = this.unread === 0;
    replaceChildren(this.list, items.map((item) => h('li', {},
      h('button', {
        type: 'button',
        class: `mentions__item${item.read_at ? '' : ' mentions__item--unread'}`,
        onClick: () => this.openMention(item),
      },
      h('span', { class: 'mentions__line' },
        h('strong', {}, item.author?.name ?? 'An agent'),
        ` in ${item.contact_name || `conversation #${item.conversation_id}`}`,
        item.read_at ? null : h('span', { class: 'visually-hidden' }, ' (unread)')),
      h('span', { class: 'mentions__snippet' }, item.snippet),
      h('time', { class: 'mentions__time', datetime: item.created_at, title: formatFullTimestamp(item.created_at), dataset: { relative: '' } },
        formatRelative(item.created_at))))));
  }

  toggle() {
    if (this.panel.hidden) this.openPanel();
    else this.close();
  }

  openPanel() {
    this.panel.hidden = false;
    this.button.setAttribute('aria-expanded', 'true');
    this.load();
  }

  close() {
    this.panel.hidden = true;
    this.button.setAttribute('aria-expanded', 'false');
  }

  async openMention(item) {
    this.close();
    this.onOpen(item.conversation_id);
    if (item.read_at) return;
    try {
      const result = await markMentionsRead(this.api, [item.id]);
      this.items.set(item.id, { ...item, read_at: new Date().toISOString() });
      this.setUnread(result.unread_count);
      this.render();
    } catch (error) {
      this.announce(`Could not mark the mention read: ${error.message}`);
    }
  }

  async markAllRead() {
    try {
      const result = await markMentionsRead(this.api);
      const now = new Date().toISOString();
      for (const [id, item] of this.items) if (!item.read_at) this.items.set(id, { ...item, read_at: now });
      this.setUnread(result.unread_count);
      this.render();
      this.announce('All mentions marked read.');
    } catch (error) {
      this.status.textContent = `Could not mark them read: ${error.message}`;
    }
  }
}
