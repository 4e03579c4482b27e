// The reply box: one draft per conversation, Ctrl/Cmd+Enter to send, inline errors that keep the text.
// On WhatsApp it also counts down the 24-hour window for free text and offers approved templates.

import { h, icon } from './dom.js';
import { DraftStore } from './drafts.js';
import { parseTimestamp } from './format.js';
import { TemplatePicker } from './template-picker.js';

const IS_APPLE = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
const MAX_TEXTAREA_HEIGHT_PX = 240;
const COUNTDOWN_TICK_MS = 1000;
// The reply box's placeholder in each WhatsApp mode; email conversations name their subject.
const MODE_PLACEHOLDERS = {
  open: 'Write a WhatsApp message…',
  hold: 'Write a reply to send when the customer writes…',
  reject: 'Choose a template to reach this customer.',
};

export class Composer {
  /**
   * @param {HTMLElement} host Element that receives the form.
   * @param {object} handlers
   * @param {(conversationId: number, text: string, files: File[]) => Promise<void>} handlers.onSend
   *   Sends the reply; a rejection with an Error shows its message under the box.
   * @param {() => void} handlers.onEscape Called when the agent presses Escape in the box.
   * @param {(conversationId: number) => void} handlers.onTyping Called on every edit that leaves
   *   text in the box; the caller limits how often it notifies the other agents.
   * @param {(channelId: number, options: {refresh: boolean}) => Promise<object>} handlers.onLoadTemplates
   *   Returns the approved WhatsApp templates of a channel.
   * @param {(conversationId: number, template: object) => Promise<void>} handlers.onSendTemplate
   *   Sends a WhatsApp template: {content_sid, variables}.
   * @param {DraftStore} handlers.drafts Where the unsent text of each conversation is kept, on
   *   every edit; by default in memory only.
   */
  constructor(host, { onSend, onEscape, onTyping, onLoadTemplates, onSendTemplate, drafts = new DraftStore(null) }) {
    this.onSend = onSend;
    this.onEscape = onEscape;
    this.onTyping = onTyping;
    this.conversation = null;
    this.drafts = drafts;
    this.sending = false;
    // 'email', or on WhatsApp 'open' (free text allowed), 'hold' or 'reject' (window closed).
    this.mode = 'email';
    this.countdown = null;
    // Files picked for the open conversation's reply.
    this.files = [];

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
    this.windowNote = h('p', { class: 'composer__window', id: 'reply-window' });
    this.templates = new TemplatePicker({
      onLoad: onLoadTemplates,
      onSend: onSendTemplate,
      onClose: () => {
        this.templateButton.setAttribute('aria-expanded', 'false');
        this.textarea.focus();
      },
    });
    this.templateButton = h('button', {
      type: 'button',
      class: 'button button--small composer__template-toggle',
      'aria-expanded': 'false',
      'aria-controls': 'template-panel',
      onClick: () => this.toggleTemplates(),
    }, 'Template');
    this.windowRow = h('div', { class: 'composer__window-row', hidden: true }, this.windowNote, this.templateButton);
    // The button opens this input, so the input never takes focus and screen readers skip it.
    // Hiding the button therefore removes the only way to attach files.
    this.fileInput = h('input', {
      type: 'file',
      class: 'visually-hidden',
      multiple: true,
      tabindex: '-1',
      'aria-hidden': 'true',
      onChange: () => this.addFiles(),
    });
    this.attachButton = h('button', {
      type: 'button',
      class: 'icon-button composer__attach',
      title: 'Attach files',
      'aria-label': 'Attach files',
      onClick: () => this.fileInput.click(),
    }, icon('attachment'));
    this.fileList = h('ul', { class: 'composer__files', 'aria-label': 'Files to send', hidden: true });
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
    this.windowRow,
    h('div', { class: 'composer__box' }, this.attachButton, this.fileInput, this.textarea, this.button),
    this.fileList,
    this.error);

    host.replaceChildren(this.form, this.templates.element);
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

    if (switched) {
      this.templates.hide();
      this.templateButton.setAttribute('aria-expanded', 'false');
    }
    if (conversation === null) {
      this.label.textContent = 'Reply';
      this.textarea.value = '';
      this.updateWindow();
      this.updateButton();
      return;
    }

    const email = conversation.channel?.kind === 'email';
    this.setAttachAllowed(true);
    if (switched) this.setFiles([]);
    this.label.textContent = email ? 'Reply by email' : 'Reply by WhatsApp';
    if (email) {
      this.textarea.placeholder = `Write an email reply${conversation.subject ? ` to “${conversation.subject}”` : ''}…`;
    }

    if (switched) {
      this.textarea.value = this.drafts.get(conversation.id)?.text ?? '';
      this.resize();
    }
    this.updateWindow();
    this.updateButton();
  }

  /**
   * Show the time left in the WhatsApp window, or what happens to free text after it, and tick
   * once a second while a WhatsApp conversation is open.
   */
  updateWindow() {
    const info = this.conversation?.whatsapp ?? null;
    this.windowRow.hidden = info === null;
    if (info === null) {
      this.setMode('email');
      this.stopCountdown();
      return;
    }
    if (this.countdown === null) this.countdown = window.setInterval(() => this.updateWindow(), COUNTDOWN_TICK_MS);

    const closesAt = parseTimestamp(info.window_closes_at);
    const left = closesAt ? closesAt - Date.now() : 0;
    let text;
    if (left > 0) {
      text = `Free-text replies possible for ${formatDuration(left)}`;
      this.setMode('open');
    } else if (info.outside_window === 'reject') {
      text = 'The 24-hour window has closed: WhatsApp delivers only approved templates until the customer writes.';
      this.setMode('reject');
    } else {
      text = 'The 24-hour window has closed: a reply is held until the customer writes. Send a template to reach them now.';
      this.setMode('hold');
    }
    if (this.windowNote.textContent !== text) this.windowNote.textContent = text;
  }

  /** Apply `mode` to the box: whether free text can be typed, its placeholder and the button. */
  setMode(mode) {
    this.mode = mode;
    const noteClass = `composer__window composer__window--${mode}`;
    if (this.windowNote.className !== noteClass) this.windowNote.className = noteClass;
    this.textarea.disabled = this.conversation === null || mode === 'reject';
    const placeholder = MODE_PLACEHOLDERS[mode];
    if (placeholder && this.textarea.placeholder !== placeholder) this.textarea.placeholder = placeholder;
    this.updateButton();
  }

  stopCountdown() {
    if (this.countdown === null) return;
    window.clearInterval(this.countdown);
    this.countdown = null;
  }

  toggleTemplates() {
    if (this.templates.isOpen) {
      this.templates.close();
      return;
    }
    this.templateButton.setAttribute('aria-expanded', 'true');
    this.templates.open(this.conversation);
  }

  focus() {
    this.textarea.focus();
  }

  contains(element) {
    return this.form.contains(element);
  }

  /** Keep the box's text as the open conversation's draft, or drop the draft when the box is empty. */
  saveDraft() {
    if (!this.conversation) return;
    const text = this.textarea.value;
    if (text.trim()) this.drafts.set(this.conversation.id, this.draftOf(this.conversation.id, text));
    else this.drafts.delete(this.conversation.id);
  }

  /** Return the draft to keep for `text`: a reply here, and CollabComposer adds its mode and stale check. */
  draftOf(conversationId, text, note = false) {
    return { text, note, seenMessageId: null };
  }

  /** Show or hide the attach button. A hidden button also disables its file input. */
  setAttachAllowed(allowed) {
    this.attachButton.hidden = !allowed;
    this.fileInput.disabled = !allowed;
  }

  addFiles() {
    this.setFiles([...this.files, ...this.fileInput.files]);
    this.fileInput.value = '';
  }

  setFiles(files) {
    this.files = files;
    this.fileList.hidden = files.length === 0;
    this.fileList.replaceChildren(...files.map((file, index) => h('li', { class: 'composer__file' },
      h('span', {}, file.name),
      h('button', {
        type: 'button',
        class: 'link-button',
        'aria-label': `Remove ${file.name}`,
        onClick: () => this.setFiles(this.files.filter((_, kept) => kept !== index)),
      }, 'Remove'))));
    this.updateButton();
  }

  async send() {
    const conversation = this.conversation;
    const text = this.textarea.value;
    const files = this.files;
    if (!conversation || this.sending || this.mode === 'reject' || (!text.trim() && files.length === 0)) return;

    this.setSending(true);
    this.clearError();
    try {
      await this.onSend(conversation.id, text.trim(), files);
      this.drafts.delete(conversation.id);
      if (this.conversation?.id === conversation.id) {
        this.textarea.value = '';
        this.setFiles([]);
        this.resize();
      }
    } catch (error) {
      // The text stays in the box, or in the draft when the agent has moved on, for a retry.
      if (this.conversation?.id === conversation.id) {
        this.showError(`Not sent: ${error.message}`);
      } else {
        this.drafts.set(conversation.id, this.draftOf(conversation.id, text, false));
      }
    } finally {
      this.setSending(false);
    }
  }

  setSending(sending) {
    this.sending = sending;
    this.form.setAttribute('aria-busy', String(sending));
    this.textarea.readOnly = sending;
    this.updateButton();
  }

  updateButton() {
    this.button.textContent = this.sending ? 'Sending…' : (this.mode === 'hold' ? 'Hold reply' : 'Send');
    this.button.disabled = this.sending || !this.conversation || this.mode === 'reject'
      || (!this.textarea.value.trim() && this.files.length === 0);
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
    // Kept on every edit, so that text typed just before the page goes (a reload, an ended
    // sign-in that sends the browser to the sign-in page) is still there when it comes back.
    this.saveDraft();
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

/** Return a time span for the window countdown: hours and minutes, or minutes and seconds under an hour. */
function formatDuration(milliseconds) {
  const seconds = Math.floor(milliseconds / 1000);
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (hours > 0) return `${hours} h ${String(minutes).padStart(2, '0')} min`;
  return `${minutes} min ${String(seconds % 60).padStart(2, '0')} s`;
}
