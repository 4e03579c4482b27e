// The canned responses dialog: the list of shared and personal responses, and a form to add,
// change or delete them. Managers and admins may share a response with every agent.

import { h, replaceChildren } from './dom.js';
import { deleteCannedResponse, listCannedResponses, saveCannedResponse } from './collab-api.js';

export class CannedManager {
  /**
   * @param {object} options
   * @param {object} options.api The inbox's ApiClient.
   * @param {() => boolean} options.canShare Whether the signed-in agent may share responses.
   * @param {() => void} options.onChange Called after a response was added, changed or deleted.
   * @param {() => void} options.onClose Called when the dialog closes.
   */
  constructor({ api, canShare, onChange, onClose }) {
    this.api = api;
    this.canShare = canShare;
    this.onChange = onChange;
    this.items = [];
    this.placeholders = [];
    this.editingId = null;

    this.list = h('ul', { class: 'canned__list', 'aria-label': 'Canned responses' });
    this.status = h('p', { class: 'canned__status', role: 'status' });
    this.formTitle = h('h3', { class: 'canned__form-title' }, 'New canned response');
    this.titleInput = h('input', { id: 'canned-title', class: 'input', maxlength: '80', required: true, autocomplete: 'off' });
    this.bodyInput = h('textarea', { id: 'canned-body', class: 'input canned__body', rows: '5', maxlength: '5000', required: true });
    this.sharedInput = h('input', { id: 'canned-shared', type: 'checkbox' });
    this.sharedRow = h('div', { class: 'canned__shared' }, this.sharedInput,
      h('label', { for: 'canned-shared' }, 'Shared with every agent'));
    this.error = h('p', { class: 'canned__error', role: 'alert' });
    this.placeholderList = h('p', { class: 'canned__placeholders' });
    this.saveButton = h('button', { type: 'submit', class: 'button button--primary button--small' }, 'Save');
    this.cancelButton = h('button', {
      type: 'button', class: 'button button--ghost button--small', hidden: true, onClick: () => this.editNew(),
    }, 'Cancel edit');
    this.form = h('form', {
      class: 'canned__form', novalidate: true, onSubmit: (event) => { event.preventDefault(); this.save(); },
    },
    this.formTitle,
    h('label', { for: 'canned-title', class: 'canned__label' }, 'Title'),
    this.titleInput,
    h('label', { for: 'canned-body', class: 'canned__label' }, 'Text'),
    this.bodyInput,
    this.placeholderList,
    this.sharedRow,
    this.error,
    h('div', { class: 'canned__actions' }, this.cancelButton, this.saveButton));

    this.element = h('dialog', { class: 'dialog dialog--wide', id: 'canned-dialog', 'aria-labelledby': 'canned-dialog-title' },
      h('div', { class: 'dialog__header' },
        h('h2', { id: 'canned-dialog-title' }, 'Canned responses'),
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', onClick: () => this.element.close() }, '×')),
      h('div', { class: 'canned' }, h('div', { class: 'canned__list-box' }, this.status, this.list), this.form));
    this.element.addEventListener('close', () => onClose());
    document.body.append(this.element);
  }

  async open() {
    this.editNew();
    this.element.showModal();
    this.titleInput.focus();
    await this.load();
  }

  async load() {
    this.status.textContent = 'Loading…';
    try {
      const result = await listCannedResponses(this.api);
      this.items = result.items ?? [];
      this.placeholders = result.placeholders ?? [];
    } catch (error) {
      this.status.textContent = `Could not load the canned responses: ${error.message}`;
      return;
    }
    this.status.textContent = this.items.length === 0 ? 'None yet. Add the first one with the form.' : '';
    this.renderList();
    replaceChildren(this.placeholderList, 'Placeholders: ',
      this.placeholders.map((placeholder, index) => [index > 0 ? ', ' : '',
        h('code', { title: placeholder.description }, `{{ ${placeholder.name} }}`)]),
      '. Add a fallback for empty values with ', h('code', {}, '{{ customer.first_name | default("there") }}'), '.');
  }

  renderList() {
    replaceChildren(this.list, this.items.map((item) => h('li', { class: 'canned__item' },
      h('div', { class: 'canned__item-head' },
        h('span', { class: 'canned__item-title' }, item.title),
        h('span', { class: `canned__scope canned__scope--${item.shared ? 'shared' : 'personal'}` }, item.shared ? 'Shared' : 'Personal')),
      h('p', { class: 'canned__item-body' }, item.body),
      item.editable
        ? h('div', { class: 'canned__item-actions' },
          h('button', { type: 'button', class: 'link-button', 'aria-label': `Edit ${item.title}`, onClick: () => this.edit(item) }, 'Edit'),
          h('button', { type: 'button', class: 'link-button link-button--danger', 'aria-label': `Delete ${item.title}`, onClick: () => this.remove(item) }, 'Delete'))
        : null)));
  }

  editNew() {
    this.editingId = null;
    this.formTitle.textContent = 'New canned response';
    this.titleInput.value = '';
    this.bodyInput.value = '';
    this.sharedInput.checked = false;
    this.sharedRow.hidden = !this.canShare();
    this.cancelButton.hidden = true;
    this.error.textContent = '';
  }

  edit(item) {
    this.editingId = item.id;
    this.formTitle.textContent = `Edit “${item.title}”`;
    this.titleInput.value = item.title;
    this.bodyInput.value = item.body;
    // Whether a response is shared is fixed when it is created.
    this.sharedRow.hidden = true;
    this.cancelButton.hidden = false;
    this.error.textContent = '';
    this.titleInput.focus();
  }

  async save() {
    const fields = { title: this.titleInput.value, body: this.bodyInput.value };
    if (this.editingId === null) fields.shared = this.canShare() && this.sharedInput.checked;
    this.saveButton.disabled = true;
    this.error.textContent = '';
    try {
      await saveCannedResponse(this.api, this.editingId, fields);
    } catch (error) {
      this.error.textContent = `Not saved: ${error.message}`;
      (error.field === 'body' ? this.bodyInput : this.titleInput).focus();
      return;
    } finally {
      this.saveButton.disabled = false;
    }
    this.status.textContent = this.editingId === null ? 'Added.' : 'Saved.';
    this.editNew();
    this.onChange();
    await this.load();
  }

  async remove(item) {
    if (!window.confirm(`Delete the canned response “${item.title}”?`)) return;
    try {
      await deleteCannedResponse(this.api, item.id);
    } catch (error) {
      this.status.textContent = `Not deleted: ${error.message}`;
      return;
    }
    if (this.editingId === item.id) this.editNew();
    this.onChange();
    await this.load();
  }
}
