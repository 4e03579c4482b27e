// The search box above the conversation list, and the highlighted snippet of a search result.
//
// The server returns a result's snippet as plain text parts with a `match` flag, so the
// browser builds text nodes and <mark> elements and never parses customer text as HTML.

import { h } from './dom.js';

// The list reloads once typing has paused this long.
const SEARCH_DELAY_MS = 250;

export class SearchBox {
  /**
   * @param {HTMLFormElement} form The search form of the list pane, with an input[type=search].
   * @param {object} handlers
   * @param {(query: string, options: {force: boolean}) => void} handlers.onSearch Called with the
   *   trimmed text once typing pauses, and with '' when the box is cleared. Enter calls it with
   *   force true, which runs the search again even when the text did not change.
   * @param {() => void} handlers.onLeave Called when Escape leaves an empty box, to move focus to the list.
   */
  constructor(form, { onSearch, onLeave }) {
    this.form = form;
    this.input = form.querySelector('input[type="search"]');
    this.onSearch = onSearch;
    this.onLeave = onLeave;
    this.timer = null;
    this.current = '';

    this.input.addEventListener('input', () => this.schedule());
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.emit({ force: true });
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape') return;
      event.preventDefault();
      // The first Escape clears the search, and the next one leaves the box.
      if (this.input.value) this.clear();
      else this.onLeave();
    });
  }

  /** The search that the list shows now, '' for none. */
  get query() {
    return this.current;
  }

  focus() {
    this.input.focus();
    this.input.select();
  }

  clear() {
    this.input.value = '';
    this.emit();
  }

  schedule() {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.emit(), SEARCH_DELAY_MS);
  }

  emit({ force = false } = {}) {
    window.clearTimeout(this.timer);
    const query = this.input.value.trim();
    if (query === this.current && !force) return;
    this.current = query;
    this.form.classList.toggle('search--active', query !== '');
    this.onSearch(query, { force });
  }
}

/**
 * Create the snippet of a search result: the found words in <mark>, the rest as text.
 * @param {{message_id: number|null, parts: {text: string, match: boolean}[]}} hit
 */
export function renderSearchHit(hit) {
  const parts = Array.isArray(hit?.parts) ? hit.parts : [];
  return h('div', { class: 'conversation__hit' },
    hit?.message_id ? null : h('span', { class: 'conversation__hit-label' }, 'Contact: '),
    parts.map((part) => (part.match ? h('mark', {}, String(part.text)) : String(part.text))));
}

/** Return the plain text of a search result's snippet, for the option's accessible name. */
export function searchHitText(hit) {
  return (Array.isArray(hit?.parts) ? hit.parts : []).map((part) => String(part.text)).join('');
}
