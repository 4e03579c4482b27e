// The reply box: one draft per conversation, Ctrl/Cmd+Enter to send, inline errors that keep the text.

import { h } from './dom.js';

const IS_APPLE = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
const MAX_TEXTAREA_HEIGHT_PX = 240;

export class Composer {
  /**
   * @param {HTMLElement} host Element that receives the form.
   * @param {object} handlers
   * @param {(conversationId: number, text: string) => Promise<void>} handlers.onSend
   *   Sends the reply; a rejection with an Error shows its message under the box.
   * @param {() => void} handlers.onEscape Called when the agent presses Escape in the box.
   * @param {(conversationId: number) => void} handlers.onTyping Called on every edit that leaves
   *   text in the box; the caller limits how often it notifies the other agents.
   */
  constructor(host, { onSend, onEscape, onTyping }) {
    this.onSend = onSend;
    this.onEscape = onEscape;
    this.onTyping = onTyping;
    this.conversation = null;
    this.drafts = new Map();
    this.sending = false;

    this.label = h('label', { class: 'composer__label', for: 'reply-text' }, 'Reply');
    this.textarea = h('textarea', {
      id: 'reply-text',
      class: 'composer__input',
      rows: '2',
      placeholder: 'Write a reply…',
      'aria-describedby': 'reply-hint reply-error',
      onInput: () => this.handleInput(),
      onKeydown: (event) => this.handleKeydown(event),
    });
    this.error = h('p', { class: 'composer__error', id: 'reply-error', role: 'alert' });
    this.button = h('button', { type: 'submit', class: 'button button--primary composer__send', disabled: true },
      'Send');
    this.form = h('form', {
      class: 'composer',
      'aria-label': 'Reply',
      novalidate: true,
      onSubmit: (event) => { event.preventDefault(); this.send(); },
    },
    h('div', { class: 'composer__top' },
      this.label,
      h('span', { class: 'composer__hint', id: 'reply-hint' },
        h('kbd', {}, IS_APPLE ? '⌘' : 'Ctrl'), '+', h('kbd', {}, 'Enter'), ' to send · ', h('kbd', {}, 'Esc'), ' to leave')),
    h('div', { class: 'composer__box' }, this.textarea, this.button),
    this.error);

    host.replaceChildren(this.form);
  }

  /**
   * Switch to `conversation`, keeping the draft of the one that was open. With null the box is
   * disabled, so nothing can be sent to a conversation that is no longer on screen.
   */
  setConversation(conversation) {
    if (this.conversation && this.conversation.id !== conversation?.id) {
      this.saveDraft();
      this.clearError();
    }
    const switched = this.conversation?.id !== conversation?.id;
    this.conversation = conversation;
    this.textarea.disabled = conversation === null;
    this.form.hidden = conversation === null;

    if (conversation === null) {
      this.label.textContent = 'Reply';
      this.textarea.value = '';
      this.updateButton();
      return;
    }

    const email = conversation.channel?.kind === 'email';
    this.label.textContent = email ? 'Reply by email' : 'Reply by WhatsApp';
    this.textarea.placeholder = email
      ? `Write an email reply${conversation.subject ? ` to “${conversation.subject}”` : ''}…`
      : 'Write a WhatsApp message…';

    if (switched) {
      this.textarea.value = this.drafts.get(conversation.id) ?? '';
      this.resize();
      this.updateButton();
    }
  }

  focus() {
    this.textarea.focus();
  }

  contains(element) {
    return this.form.contains(element);
  }

  saveDraft() {
    if (!this.conversation) return;
    const text = this.textarea.value;
    if (text.trim()) this.drafts.set(this.conversation.id, text);
    else this.drafts.delete(this.conversation.id);
  }

  async send() {
    const conversation = this.conversation;
    const text = this.textarea.value;
    if (!conversation || this.sending || !text.trim()) return;

    this.setSending(true);
    this.clearError();
    try {
      await this.onSend(conversation.id, text.trim());
      this.drafts.delete(conversation.id);
      if (this.conversation?.id === conversation.id) {
        this.textarea.value = '';
        this.resize();
      }
    } catch (error) {
      // The text stays in the box, or in the draft when the agent has moved on, for a retry.
      if (this.conversation?.id === conversation.id) {
        this.showError(`Not sent: ${error.message}`);
      } else {
        this.drafts.set(conversation.id, text);
      }
    } finally {
      this.setSending(false);
    }
  }

  setSending(sending) {
    this.sending = sending;
    this.form.setAttribute('aria-busy', String(sending));
    this.textarea.readOnly = sending;
    this.button.textContent = sending ? 'Sending…' : 'Send';
    this.updateButton();
  }

  updateButton() {
    this.button.disabled = this.sending || !this.conversation || !this.textarea.value.trim();
  }

  showError(message) {
    this.error.textContent = message;
    this.form.classList.add('composer--error');
  }

  clearError() {
    this.error.textContent = '';
    this.form.classList.remove('composer--error');
  }

  handleInput() {
    this.resize();
    this.updateButton();
    if (this.conversation && this.textarea.value.trim()) this.onTyping(this.conversation.id);
  }

  handleKeydown(event) {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && !event.isComposing) {
      event.preventDefault();
      this.send();
    } else if (event.key === 'Escape' && !event.isComposing) {
      event.preventDefault();
      this.saveDraft();
      this.textarea.blur();
      this.onEscape();
    }
  }

  // Grow with the text up to a limit, then scroll inside the box.
  resize() {
    this.textarea.style.height = 'auto';
    // A box that is not laid out (hidden pane) measures 0 and keeps its CSS height.
    if (this.textarea.scrollHeight === 0) {
      this.textarea.style.height = '';
      return;
    }
    this.textarea.style.height = `${Math.min(this.textarea.scrollHeight + 2, MAX_TEXTAREA_HEIGHT_PX)}px`;
  }
}
