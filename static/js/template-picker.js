// The WhatsApp template picker of the reply box: approved templates, a field per variable, and a
// preview of the message as the customer will read it.

import { h, replaceChildren } from './dom.js';

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

/**
 * Return the key of a listed template in the select: Twilio's Content SID, or for a Meta Cloud
 * API template its name and language code, which together identify it in a business account.
 */
function templateKey(template) {
  return template.content_sid ?? `${template.name}:${template.language}`;
}

/** Build the template object of a reply as POST /conversations/{id}/messages takes it for the provider. */
function replyTemplate(template, variables) {
  if (template.content_sid) return { content_sid: template.content_sid, variables };
  return { name: template.name, language: template.language, variables };
}

export class TemplatePicker {
  /**
   * @param {object} handlers
   * @param {(channelId: number, options: {refresh: boolean}) => Promise<object>} handlers.onLoad
   *   Returns the channel's approved templates as GET /channels/{id}/templates does.
   * @param {(conversationId: number, template: object) => Promise<void>} handlers.onSend
   *   Sends the template: {content_sid, variables} on Twilio channels, {name, language,
   *   variables} on Meta Cloud API channels.
   *   A rejection with an Error shows its message in the panel.
   * @param {() => void} handlers.onClose Called when the panel closes.
   */
  constructor({ onLoad, onSend, onClose }) {
    this.onLoad = onLoad;
    this.onSend = onSend;
    this.onClose = onClose;
    this.conversation = null;
    this.templates = [];
    this.sending = false;

    this.select = h('select', {
      id: 'template-select',
      class: 'template-picker__select',
      onChange: () => this.renderFields(),
    });
    this.fields = h('div', { class: 'template-picker__fields' });
    this.preview = h('p', { class: 'template-picker__preview', id: 'template-preview', 'aria-live': 'polite' });
    this.status = h('p', { class: 'template-picker__status', role: 'status' });
    this.error = h('p', { class: 'template-picker__error', role: 'alert' });
    // Disabled until the list has loaded and a template is chosen.
    this.sendButton = h('button', {
      type: 'submit', class: 'button button--primary button--small', disabled: true,
    }, 'Send template');
    this.element = h('form', {
      class: 'template-picker',
      id: 'template-panel',
      'aria-label': 'WhatsApp template',
      hidden: true,
      novalidate: true,
      onSubmit: (event) => { event.preventDefault(); this.send(); },
      onKeydown: (event) => {
        if (event.key === 'Escape') { event.preventDefault(); this.close(); }
      },
    },
    h('div', { class: 'template-picker__row' },
      h('label', { for: 'template-select', class: 'template-picker__label' }, 'Template'),
      this.select,
      h('button', { type: 'button', class: 'link-button', onClick: () => this.load({ refresh: true }) }, 'Reload list')),
    this.fields,
    this.previewBox = h('div', { class: 'template-picker__preview-box', hidden: true },
      h('span', { class: 'template-picker__label' }, 'Preview'),
      this.preview),
    this.status,
    this.error,
    h('div', { class: 'template-picker__actions' },
      h('button', { type: 'button', class: 'button button--ghost button--small', onClick: () => this.close() }, 'Close'),
      this.sendButton));
  }

  get isOpen() {
    return !this.element.hidden;
  }

  /** Open the panel for `conversation` and load its channel's templates. */
  async open(conversation) {
    this.conversation = conversation;
    this.element.hidden = false;
    await this.load({ refresh: false });
    this.select.focus();
  }

  /** Close the panel and tell the reply box, which takes the focus back. */
  close() {
    if (this.element.hidden) return;
    this.hide();
    this.onClose();
  }

  /** Close the panel without moving the focus, as when the agent opens another conversation. */
  hide() {
    this.element.hidden = true;
    this.error.textContent = '';
  }

  async load({ refresh }) {
    const channelId = this.conversation?.channel?.id;
    if (!channelId) return;
    this.status.textContent = 'Loading approved templates…';
    this.error.textContent = '';
    this.sendButton.disabled = true;
    let list;
    try {
      list = await this.onLoad(channelId, { refresh });
    } catch (error) {
      this.status.textContent = '';
      // The server's templates_unavailable message already names what could not be read.
      this.error.textContent = error.code === 'templates_unavailable'
        ? error.message
        : `Templates could not be loaded: ${error.message}`;
      this.templates = [];
      replaceChildren(this.select, h('option', { value: '' }, 'No templates loaded'));
      this.renderFields();
      return;
    }
    const previous = this.select.value;
    this.templates = Array.isArray(list?.items) ? list.items : [];
    this.status.textContent = list?.error ? `Showing the last list: ${list.error}` : '';
    replaceChildren(this.select, this.templates.length
      ? this.templates.map((template) => h('option', { value: templateKey(template) },
        [template.name, template.language].filter(Boolean).join(' · ')))
      : h('option', { value: '' }, 'No approved templates'));
    if (this.templates.some((template) => templateKey(template) === previous)) this.select.value = previous;
    this.renderFields();
  }

  selectedTemplate() {
    return this.templates.find((template) => templateKey(template) === this.select.value) ?? null;
  }

  renderFields() {
    const template = this.selectedTemplate();
    this.sendButton.disabled = template === null;
    this.previewBox.hidden = template === null;
    if (!template) {
      this.fields.replaceChildren();
      this.preview.replaceChildren();
      return;
    }
    replaceChildren(this.fields, (template.placeholders ?? []).map((name) => {
      const id = `template-variable-${name}`;
      return h('div', { class: 'template-picker__field' },
        h('label', { for: id, class: 'template-picker__label' }, `Variable {{${name}}}`),
        h('input', {
          id,
          type: 'text',
          class: 'template-picker__input',
          dataset: { variable: name },
          placeholder: template.variables?.[name] ?? '',
          maxlength: '1024',
          onInput: (event) => {
            this.error.textContent = '';
            event.target.removeAttribute('aria-invalid');
            this.renderPreview();
          },
        }));
    }));
    this.renderPreview();
  }

  variables() {
    const values = {};
    for (const input of this.fields.querySelectorAll('input[data-variable]')) {
      values[input.dataset.variable] = input.value.trim();
    }
    return values;
  }

  /** Show the body with each filled variable in place and each empty one marked. */
  renderPreview() {
    const template = this.selectedTemplate();
    if (!template) return;
    const values = this.variables();
    const body = template.body || `[Template ${template.name}]`;
    const parts = [];
    let last = 0;
    for (const match of body.matchAll(PLACEHOLDER)) {
      if (match.index > last) parts.push(body.slice(last, match.index));
      const value = values[match[1]];
      parts.push(value ? h('strong', {}, value) : h('mark', { class: 'template-picker__missing' }, match[0]));
      last = match.index + match[0].length;
    }
    if (last < body.length) parts.push(body.slice(last));
    replaceChildren(this.preview, parts);
  }

  /** Mark and focus the variable's field that the server named in a rejected send, if any. */
  markInvalidVariable(field) {
    const prefix = 'template.variables.';
    if (typeof field !== 'string' || !field.startsWith(prefix)) return;
    const name = field.slice(prefix.length);
    const input = this.fields.querySelector(`[data-variable="${CSS.escape(name)}"]`);
    if (!input) return;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }

  async send() {
    const template = this.selectedTemplate();
    const conversation = this.conversation;
    if (!template || !conversation || this.sending) return;
    const variables = this.variables();
    const missing = (template.placeholders ?? []).find((name) => !variables[name]);
    if (missing !== undefined) {
      this.error.textContent = `Fill in variable {{${missing}}}.`;
      this.fields.querySelector(`[data-variable="${CSS.escape(missing)}"]`)?.focus();
      return;
    }

    this.sending = true;
    this.sendButton.disabled = true;
    this.sendButton.textContent = 'Sending…';
    this.error.textContent = '';
    try {
      await this.onSend(conversation.id, replyTemplate(template, variables));
      for (const input of this.fields.querySelectorAll('input')) input.value = '';
      this.renderPreview();
      this.close();
    } catch (error) {
      this.error.textContent = `Not sent: ${error.message}`;
      this.markInvalidVariable(error.field);
    } finally {
      this.sending = false;
      this.sendButton.disabled = this.selectedTemplate() === null;
      this.sendButton.textContent = 'Send template';
    }
  }
}
