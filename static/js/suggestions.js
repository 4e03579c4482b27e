// A list of suggestions over the reply box, driven from the textarea: the arrow keys move,
// Enter or Tab picks, Escape closes. The textarea keeps the focus, as in a combobox.

import { h } from './dom.js';

let nextListId = 1;

export class SuggestionList {
  /**
   * @param {HTMLTextAreaElement} input The textarea the list completes.
   * @param {object} options
   * @param {string} options.label Accessible name of the list.
   * @param {(item: object) => Node|string|Array} options.renderItem Content of one option.
   * @param {(item: object) => void} options.onPick Called with the chosen item.
   */
  constructor(input, { label, renderItem, onPick }) {
    this.input = input;
    this.renderItem = renderItem;
    this.onPick = onPick;
    this.items = [];
    this.active = 0;
    this.id = `suggestions-${nextListId++}`;
    this.status = h('p', { class: 'suggestions__status' });
    this.list = h('ul', { class: 'suggestions__list', id: this.id, role: 'listbox', 'aria-label': label });
    this.element = h('div', { class: 'suggestions', hidden: true }, this.list, this.status);
  }

  get isOpen() {
    return !this.element.hidden;
  }

  /** Show `items`, or `emptyText` when there are none; an empty list without text closes. */
  show(items, emptyText = '') {
    this.items = items;
    this.active = 0;
    if (items.length === 0 && !emptyText) {
      this.close();
      return;
    }
    this.list.replaceChildren(...items.map((item, index) => h('li', {
      id: `${this.id}-${index}`,
      class: 'suggestions__item',
      role: 'option',
      'aria-selected': String(index === 0),
      // mousedown, not click: the textarea must not lose the focus first.
      onMousedown: (event) => { event.preventDefault(); this.pick(index); },
    }, this.renderItem(item))));
    this.status.textContent = items.length === 0 ? emptyText : '';
    this.status.hidden = items.length > 0;
    this.element.hidden = false;
    this.input.setAttribute('aria-controls', this.id);
    this.input.setAttribute('aria-expanded', 'true');
    this.highlight();
  }

  close() {
    if (this.element.hidden) return;
    this.element.hidden = true;
    this.items = [];
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
  }

  /** Handle a key pressed in the textarea; returns true when the list used it. */
  handleKeydown(event) {
    if (!this.isOpen || event.isComposing) return false;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      if (this.items.length === 0) return false;
      event.preventDefault();
      const step = event.key === 'ArrowDown' ? 1 : -1;
      this.active = (this.active + step + this.items.length) % this.items.length;
      this.highlight();
      return true;
    }
    if ((event.key === 'Enter' || event.key === 'Tab') && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      if (this.items.length === 0) return false;
      event.preventDefault();
      this.pick(this.active);
      return true;
    }
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      this.close();
      return true;
    }
    return false;
  }

  highlight() {
    [...this.list.children].forEach((node, index) => node.setAttribute('aria-selected', String(index === this.active)));
    const current = this.list.children[this.active];
    if (current) {
      this.input.setAttribute('aria-activedescendant', current.id);
      current.scrollIntoView({ block: 'nearest' });
    } else {
      this.input.removeAttribute('aria-activedescendant');
    }
  }

  pick(index) {
    const item = this.items[index];
    this.close();
    if (item !== undefined) this.onPick(item);
  }
}
