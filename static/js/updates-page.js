// Entry point of the managers' page for proactive update templates (/updates).
//
// Modules:
// - updates-api.js: the template routes of the JSON API
// - updates-editor.js: the form, the placeholder list and the problems beside each field
// This module contains the template list, saving, enabling and the preview.

import { h, replaceChildren } from './dom.js';
import { TemplateProblemsError, UpdatesApi } from './updates-api.js';
import { TemplateEditor, describeTrigger } from './updates-editor.js';

const CHANNEL_NAMES = { email: 'Email', whatsapp: 'WhatsApp' };

class UpdatesPage {
  constructor(root) {
    this.root = root;
    this.api = new UpdatesApi({
      root: root.dataset.apiRoot,
      csrfToken: document.querySelector('meta[name="csrf-token"]').content,
      loginUrl: root.dataset.loginUrl,
    });
    this.list = document.getElementById('template-list');
    this.editorRoot = document.getElementById('template-editor');
    this.announcer = document.getElementById('announcer');
    this.templates = [];
    this.current = null;
    // The preview section, kept while the same template stays open (a save or an enable
    // re-renders the form), with the conversation of the preview it shows.
    this.previewSection = null;
    this.previewedConversation = undefined;
    // One live region beside the Save button, moved into each re-rendered form, so that
    // screen readers announce its changes.
    this.saveStatus = h('span', { class: 'editor__status', role: 'status', id: 'save-status' });
    // The sticky site header and actions bar cover the top and the bottom of the window, and
    // each grows when its contents wrap, so the window's scroll padding (updates.css) follows
    // their heights.
    this.stickyBarObserver = new ResizeObserver((entries) => {
      for (const { target } of entries) {
        const property = target.classList.contains('topbar') ? '--updates-header-height' : '--editor-actions-height';
        document.documentElement.style.setProperty(property, `${target.offsetHeight}px`);
      }
    });
    const header = document.querySelector('.topbar');
    if (header) this.stickyBarObserver.observe(header);
    this.actionsBar = null;
  }

  async start() {
    replaceChildren(this.editorRoot, h('p', { class: 'state', role: 'status' }, 'Loading…'));
    try {
      const [catalogue, templates, teams, labels] = await Promise.all([
        this.api.getCatalogue(), this.api.listUpdateTemplates(), this.api.listTeams(), this.api.listLabels(),
      ]);
      this.templates = templates.items;
      this.editor = new TemplateEditor(this.editorRoot, { catalogue, teams: teams.items, labels: labels.items });
    } catch (error) {
      replaceChildren(this.editorRoot, h('p', { class: 'state state--error', role: 'alert' }, `Could not load the templates: ${error.message}`));
      return;
    }
    document.getElementById('new-template').addEventListener('click', () => this.openUnlessUnsaved(null));
    // Leaving the page (a site link, reload or closing the tab) with unsaved edits needs a confirmation.
    window.addEventListener('beforeunload', (event) => {
      if (this.hasUnsavedChanges()) event.preventDefault();
    });
    // "Saved." stops being true at the first edit after the save.
    this.editorRoot.addEventListener('input', (event) => {
      if (!event.target.closest('.preview')) this.saveStatus.textContent = '';
    });
    document.addEventListener('keydown', (event) => {
      // Ctrl+S or ⌘+S saves, as in most editors, instead of saving the page.
      if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 's') {
        event.preventDefault();
        this.save();
      }
    });
    this.renderList();
    this.open(this.templates[0] ?? null);
  }

  announce(text) {
    this.announcer.textContent = '';
    window.setTimeout(() => { this.announcer.textContent = text; }, 50);
  }

  // ---- The list ----------------------------------------------------------------------------

  renderList() {
    // The rows are rebuilt, so the focus moves to the same control of the new row.
    const focused = this.list.contains(document.activeElement) ? { ...document.activeElement.dataset } : null;
    if (this.templates.length === 0) {
      replaceChildren(this.list, h('li', { class: 'template-list__empty' }, 'No templates yet.'));
      return;
    }
    replaceChildren(this.list, this.templates.map((template) => {
      const selected = this.current?.id === template.id;
      return h('li', { class: `template-row${selected ? ' template-row--selected' : ''}` },
        h('button', {
          type: 'button', class: 'template-row__open', 'aria-current': selected ? 'true' : null,
          dataset: { templateId: String(template.id), control: 'open' },
          onClick: () => this.openUnlessUnsaved(template),
        },
        h('span', { class: 'template-row__name' }, template.name),
        h('span', { class: 'template-row__trigger' }, describeTrigger(template))),
        h('button', {
          type: 'button', role: 'switch', class: 'switch', 'aria-checked': template.enabled ? 'true' : 'false',
          'aria-label': `Enabled: ${template.name}`,
          dataset: { templateId: String(template.id), control: 'switch' },
          onClick: () => this.setEnabled(template, !template.enabled),
        }, h('span', { class: 'switch__knob', 'aria-hidden': 'true' })));
    }));
    if (focused?.templateId) {
      this.list.querySelector(`[data-template-id="${focused.templateId}"][data-control="${focused.control}"]`)?.focus();
    }
  }

  replaceTemplate(saved) {
    const index = this.templates.findIndex((template) => template.id === saved.id);
    if (index === -1) this.templates.push(saved);
    else this.templates[index] = saved;
    this.templates.sort((a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: 'base' }) || a.id - b.id);
  }

  // ---- The editor --------------------------------------------------------------------------

  /** Return whether the form differs from the template as it was opened or last saved. */
  hasUnsavedChanges() {
    return Boolean(this.editor && this.savedFields !== undefined
      && JSON.stringify(this.editor.collect()) !== this.savedFields);
  }

  /**
   * Return whether the edits in the form may be thrown away: true when there are none or the
   * manager confirms.
   */
  confirmDiscard() {
    if (!this.hasUnsavedChanges()) return true;
    const name = this.current ? `“${this.current.name}”` : 'the new template';
    return window.confirm(`Discard the unsaved changes to ${name}?`);
  }

  /** Open `template` from the list, after asking when the open one has unsaved edits. */
  openUnlessUnsaved(template) {
    if (template !== null && template.id === this.current?.id) return;
    if (!this.confirmDiscard()) return;
    this.open(template);
  }

  /**
   * Show `template` (null for a new one) in the editor. `keepPreview` keeps the preview's
   * conversation and result, and the field that placeholders go into, for the template that is
   * open already.
   */
  open(template, { keepPreview = false } = {}) {
    this.current = template;
    if (!keepPreview || !this.previewSection) {
      this.previewSection = this.previewPanel();
      this.previewedConversation = undefined;
    }
    this.saveStatus.textContent = '';
    this.saveButton = h('button', { type: 'button', class: 'button button--primary', onClick: () => this.save() }, 'Save');
    const actions = [
      this.saveButton,
      template ? h('button', {
        type: 'button', class: 'button', id: 'toggle-enabled', onClick: () => this.setEnabled(template, !template.enabled),
      }, template.enabled ? 'Disable' : 'Enable') : null,
      template ? h('button', { type: 'button', class: 'button button--danger', onClick: () => this.remove(template) }, 'Delete') : null,
      this.saveStatus,
    ];
    this.editor.render(template, { actions, preview: this.previewSection, keepInsertPoint: keepPreview });
    if (this.actionsBar) this.stickyBarObserver.unobserve(this.actionsBar);
    this.actionsBar = this.editorRoot.querySelector('.editor__actions');
    this.stickyBarObserver.observe(this.actionsBar);
    // The form as rendered, against which hasUnsavedChanges compares.
    this.savedFields = JSON.stringify(this.editor.collect());
    this.renderList();
  }

  async save() {
    if (!this.editor || this.saving) return;
    const empty = this.editor.findEmptyRequiredFields();
    if (empty.length) {
      this.editor.showProblems(empty);
      return;
    }
    this.saving = true;
    this.saveButton.disabled = true;
    const fields = this.editor.collect();
    // Ctrl+S saves from any field, and the focus returns there after the form is rebuilt.
    const focusedId = this.editorRoot.contains(document.activeElement) ? document.activeElement.id : '';
    try {
      const saved = this.current
        ? await this.api.changeUpdateTemplate(this.current.id, fields)
        : await this.api.createUpdateTemplate(fields);
      this.replaceTemplate(saved);
      this.open(saved, { keepPreview: true });
      // The form was rebuilt, so the focus would otherwise fall back to the page.
      const refocus = focusedId ? document.getElementById(focusedId) : null;
      (refocus && this.editorRoot.contains(refocus) ? refocus : this.saveButton).focus();
      this.showSaved();
      // A preview shown before the save rendered the form as it was then: show the saved version.
      if (this.previewedConversation !== undefined) this.preview(this.previewedConversation);
    } catch (error) {
      this.showError(error);
    } finally {
      this.saving = false;
      if (this.saveButton.isConnected) this.saveButton.disabled = false;
    }
  }

  /** Say "Saved" beside the Save button, which stays in view at the bottom of the window. */
  showSaved() {
    // Set after the re-rendered form is in place, so that the live region announces it.
    window.setTimeout(() => { this.saveStatus.textContent = 'Saved.'; }, 50);
  }

  async setEnabled(template, enabled) {
    // Enabling the open template renders the form again from the saved version.
    if (this.current?.id === template.id && !this.confirmDiscard()) return;
    try {
      const saved = await this.api.setUpdateTemplateEnabled(template.id, enabled);
      this.replaceTemplate(saved);
      if (this.current?.id === saved.id) this.open(saved, { keepPreview: true });
      else this.renderList();
      this.announce(`${saved.name} is ${saved.enabled ? 'enabled' : 'disabled'}.`);
    } catch (error) {
      if (this.current?.id !== template.id) this.open(template);
      this.showError(error, `${template.name} was not ${enabled ? 'enabled' : 'disabled'}`);
    }
  }

  async remove(template) {
    if (!window.confirm(`Delete the template “${template.name}”? Updates it holds for quiet hours are called off. Disabling it instead keeps it for later.`)) return;
    try {
      await this.api.deleteUpdateTemplate(template.id);
      this.templates = this.templates.filter((item) => item.id !== template.id);
      this.open(this.templates[0] ?? null);
      this.announce(`Deleted ${template.name}.`);
    } catch (error) {
      this.showError(error, 'The template was not deleted');
    }
  }

  showError(error, heading = undefined) {
    if (error instanceof TemplateProblemsError) {
      this.editor.showProblems(error.problems, heading);
    } else {
      this.editor.showProblems([{ field: error.field ?? 'template', line: null, reason: error.message }], heading);
    }
  }

  // ---- The preview -------------------------------------------------------------------------

  previewPanel() {
    this.previewInput = h('input', {
      class: 'field__input', id: 'preview-conversation', type: 'text', inputmode: 'numeric', autocomplete: 'off',
      placeholder: '#42', 'aria-describedby': 'preview-help',
    });
    this.previewOutput = h('div', { class: 'preview__output', id: 'preview-output', 'aria-live': 'polite' });
    const form = h('form', {
      class: 'preview__form',
      onSubmit: (event) => {
        event.preventDefault();
        this.preview(this.previewInput.value.trim() || null);
      },
    },
    h('div', { class: 'field' },
      h('label', { class: 'field__label', for: 'preview-conversation' }, 'Conversation id or reference'),
      this.previewInput,
      h('p', { class: 'field__help', id: 'preview-help' }, 'Leave empty to preview with sample data.')),
    h('div', { class: 'preview__buttons' },
      h('button', { type: 'submit', class: 'button button--small' }, 'Preview'),
      h('button', { type: 'button', class: 'button button--ghost button--small', onClick: () => this.preview(null) }, 'Use sample data')));
    return h('section', { class: 'preview', 'aria-labelledby': 'preview-heading' },
      h('h3', { id: 'preview-heading' }, 'Preview'), form, this.previewOutput);
  }

  async preview(conversation) {
    this.previewedConversation = conversation;
    // Only the newest request fills the output, because an older one can return later, with an older form.
    const request = (this.previewRequest = (this.previewRequest ?? 0) + 1);
    replaceChildren(this.previewOutput, h('p', { class: 'field__help' }, 'Rendering…'));
    try {
      const result = await this.api.previewUpdate(this.editor.collect(), conversation);
      if (request !== this.previewRequest) return;
      this.editor.clearProblems();
      this.renderPreview(result);
    } catch (error) {
      if (request !== this.previewRequest) return;
      if (error instanceof TemplateProblemsError) {
        // The summary above the form lists each problem under the field's label.
        replaceChildren(this.previewOutput,
          h('p', { class: 'field__error' }, 'No preview: fix the problems listed at the top of the form.'));
        this.editor.showProblems(error.problems, 'The preview failed');
      } else {
        replaceChildren(this.previewOutput, h('p', { class: 'field__error' }, `No preview: ${error.message}`));
      }
    }
  }

  renderPreview({ conversation, applies, sends, nothing_reason: nothingReason, deferred, rendered }) {
    const channel = conversation ? CHANNEL_NAMES[conversation.channel] ?? conversation.channel : null;
    const source = conversation
      ? h('p', { class: 'preview__source' },
        `${conversation.reference} · ${conversation.contact_name || 'Unnamed contact'} · ${channel}`)
      : h('p', { class: 'preview__source' }, 'Sample data');
    const verdict = applies === null ? null : h('p', { class: `preview__applies${applies ? '' : ' preview__applies--no'}` },
      applies ? 'This conversation meets the conditions.' : 'This conversation does not meet the conditions, so it would get no update.');
    // With sample data there is no channel, so both versions show, each under its own heading.
    const versions = conversation
      ? this.sentVersion(sends, channel, rendered, nothingReason)
      : [h('h4', {}, 'Email'), this.emailVersion(rendered), h('h4', {}, 'WhatsApp'), this.whatsappVersion(rendered)];
    const held = deferred ? h('p', { class: 'preview__applies preview__applies--no', id: 'preview-deferred' }, deferred.message) : null;
    replaceChildren(this.previewOutput, source, verdict, held, versions);
  }

  /**
   * Create the one version that the conversation's channel would get or, when it would get none,
   * the server's reason.
   */
  sentVersion(sends, channel, rendered, nothingReason) {
    if (sends === 'email') return [h('h4', {}, 'Sent by email'), this.emailVersion(rendered)];
    if (sends === 'whatsapp_body') {
      return [h('h4', {}, 'Sent on WhatsApp'), this.whatsappText(rendered),
        h('p', { class: 'preview__template' }, 'The customer wrote within the last 24 hours, so the text goes.')];
    }
    if (sends === 'whatsapp_template') {
      return [h('h4', {}, 'Sent on WhatsApp'), this.approvedTemplate(rendered),
        h('p', { class: 'preview__template' }, 'The customer’s last message is over 24 hours old, so only the approved template may go.')];
    }
    return [h('h4', {}, `Sent on ${channel}`),
      h('p', { class: 'field__help', id: 'preview-nothing' }, `Nothing. ${nothingReason?.message ?? ''}`.trim())];
  }

  emailVersion(rendered) {
    return rendered.email_body
      ? [h('p', { class: 'preview__subject' }, h('span', { class: 'visually-hidden' }, 'Subject: '), rendered.subject),
        h('pre', { class: 'preview__text', id: 'preview-email' }, rendered.email_body)]
      : h('p', { class: 'field__help' }, 'No email body.');
  }

  whatsappVersion(rendered) {
    return [
      rendered.whatsapp_body ? this.whatsappText(rendered) : h('p', { class: 'field__help' }, 'No WhatsApp body.'),
      rendered.whatsapp_content_sid ? this.approvedTemplate(rendered, 'Outside the window: ') : null,
    ];
  }

  whatsappText(rendered) {
    return h('pre', { class: 'preview__text', id: 'preview-whatsapp' }, rendered.whatsapp_body);
  }

  approvedTemplate(rendered, lead = 'Approved template ') {
    const variables = Object.entries(rendered.whatsapp_variables);
    return h('p', { class: 'preview__template', id: 'preview-template' }, `${lead}${rendered.whatsapp_content_sid}`,
      variables.length ? h('span', {}, ` with ${variables.map(([number, value]) => `{{${number}}} = ${value}`).join(', ')}`) : null);
  }
}

const root = document.getElementById('updates-app');
if (root) new UpdatesPage(root).start();
