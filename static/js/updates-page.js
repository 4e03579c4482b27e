// Entry point of the managers' page for proactive update templates (/updates).
//
// Modules:
// - updates-api.js: the template routes of the JSON API
// - updates-editor.js: the form, the placeholder list and the problems beside each field
// This module contains the template list, saving, enabling and the preview.

import { h, replaceChildren } from './dom.js';
import { TemplateProblemsError, UpdatesApi } from './updates-api.js';
import { TemplateEditor, describeTrigger } from './updates-editor.js';

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
    document.getElementById('new-template').addEventListener('click', () => this.open(null));
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
          onClick: () => this.open(template),
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

  open(template) {
    this.current = template;
    this.saveButton = h('button', { type: 'button', class: 'button button--primary', onClick: () => this.save() }, 'Save');
    const actions = [
      this.saveButton,
      template ? h('button', {
        type: 'button', class: 'button', id: 'toggle-enabled', onClick: () => this.setEnabled(template, !template.enabled),
      }, template.enabled ? 'Disable' : 'Enable') : null,
      template ? h('button', { type: 'button', class: 'button button--danger', onClick: () => this.remove(template) }, 'Delete') : null,
      h('span', { class: 'editor__status', role: 'status', id: 'save-status' }),
    ];
    this.editor.render(template, { actions, preview: this.previewPanel() });
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
    try {
      const saved = this.current
        ? await this.api.changeUpdateTemplate(this.current.id, fields)
        : await this.api.createUpdateTemplate(fields);
      this.replaceTemplate(saved);
      this.open(saved);
      // The form was rebuilt, so the focus would otherwise fall back to the page.
      this.saveButton.focus();
      document.getElementById('save-status').textContent = 'Saved.';
      this.announce(`Saved ${saved.name}.`);
    } catch (error) {
      this.showError(error);
    } finally {
      this.saving = false;
      if (this.saveButton.isConnected) this.saveButton.disabled = false;
    }
  }

  async setEnabled(template, enabled) {
    try {
      const saved = await this.api.setUpdateTemplateEnabled(template.id, enabled);
      this.replaceTemplate(saved);
      if (this.current?.id === saved.id) this.open(saved);
      else this.renderList();
      this.announce(`${saved.name} is ${saved.enabled ? 'enabled' : 'disabled'}.`);
    } catch (error) {
      if (this.current?.id !== template.id) this.open(template);
      this.showError(error, `${template.name} was not ${enabled ? 'enabled' : 'disabled'}`);
    }
  }

  async remove(template) {
    if (!window.confirm(`Delete the template “${template.name}”? Disabling it keeps it for later.`)) return;
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
    replaceChildren(this.previewOutput, h('p', { class: 'field__help' }, 'Rendering…'));
    try {
      const result = await this.api.previewUpdate(this.editor.collect(), conversation);
      this.editor.clearProblems();
      this.renderPreview(result);
    } catch (error) {
      replaceChildren(this.previewOutput, h('p', { class: 'field__error' }, `No preview: ${error.message}`));
      if (error instanceof TemplateProblemsError) this.editor.showProblems(error.problems, 'The preview failed');
    }
  }

  renderPreview({ conversation, applies, rendered }) {
    const source = conversation
      ? h('p', { class: 'preview__source' },
        `${conversation.reference} · ${conversation.contact_name || 'Unnamed contact'} · ${conversation.channel === 'email' ? 'Email' : 'WhatsApp'}`)
      : h('p', { class: 'preview__source' }, 'Sample data');
    const verdict = applies === null ? null : h('p', { class: `preview__applies${applies ? '' : ' preview__applies--no'}` },
      applies ? 'This conversation meets the conditions.' : 'This conversation does not meet the conditions, so it would get no update.');
    const variables = Object.entries(rendered.whatsapp_variables);
    replaceChildren(this.previewOutput,
      source,
      verdict,
      h('h4', {}, 'Email'),
      rendered.email_body
        ? [h('p', { class: 'preview__subject' }, h('span', { class: 'visually-hidden' }, 'Subject: '), rendered.subject),
          h('pre', { class: 'preview__text', id: 'preview-email' }, rendered.email_body)]
        : h('p', { class: 'field__help' }, 'No email body.'),
      h('h4', {}, 'WhatsApp'),
      rendered.whatsapp_body
        ? h('pre', { class: 'preview__text', id: 'preview-whatsapp' }, rendered.whatsapp_body)
        : h('p', { class: 'field__help' }, 'No WhatsApp body.'),
      rendered.whatsapp_content_sid
        ? h('p', { class: 'preview__template' }, `Outside the window: ${rendered.whatsapp_content_sid}`,
          variables.length ? h('span', {}, ` with ${variables.map(([number, value]) => `{{${number}}} = ${value}`).join(', ')}`) : null)
        : null);
  }
}

const root = document.getElementById('updates-app');
if (root) new UpdatesPage(root).start();
