// The left pane of views (Mine, Unassigned, All, one per status, one per team) with live counts.

import { h, icon, replaceChildren } from './dom.js';

const GROUP_TITLES = { inbox: 'Inbox', status: 'Status', team: 'Teams' };

export class ViewsPane {
  /**
   * @param {HTMLElement} root The pane that receives the views.
   * @param {object} handlers
   * @param {(view: object) => void} handlers.onSelect Called with the view the agent picked.
   * @param {() => void} handlers.onRetry Called by the "Try again" button of the error state.
   */
  constructor(root, { onSelect, onRetry }) {
    this.root = root;
    this.onSelect = onSelect;
    this.onRetry = onRetry;
    this.views = [];
    this.activeKey = null;
    this.buttons = new Map();
  }

  showLoading() {
    replaceChildren(this.root, h('div', { class: 'views__state', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading views…'));
  }

  showError(message) {
    // Views already on screen stay usable; only a pane that has none shows the error in their place.
    if (this.views.length > 0) return;
    replaceChildren(this.root, h('div', { class: 'views__state views__state--error', role: 'alert' },
      icon('alert'),
      h('span', {}, `Could not load the views: ${message}`),
      h('button', { type: 'button', class: 'button button--small', onClick: () => this.onRetry() }, 'Try again')));
  }

  /** Show `views` ({ key, name, group, params, count }) with `activeKey` marked as current. */
  render(views, activeKey) {
    this.views = views;
    this.activeKey = activeKey;
    this.buttons.clear();

    const groups = [];
    for (const group of ['inbox', 'status', 'team']) {
      const members = views.filter((view) => view.group === group);
      if (members.length === 0) continue;
      const headingId = `views-${group}`;
      groups.push(h('div', { class: 'views__group', role: 'group', 'aria-labelledby': headingId },
        h('h2', { class: 'views__title', id: headingId }, GROUP_TITLES[group]),
        h('ul', { class: 'views__list' }, members.map((view) => h('li', {}, this.viewButton(view))))));
    }
    replaceChildren(this.root, groups);
  }

  viewButton(view) {
    const button = h('button', {
      type: 'button',
      class: 'views__item',
      'aria-current': view.key === this.activeKey ? 'true' : null,
      dataset: { view: view.key },
      onClick: () => this.onSelect(view),
    },
    h('span', { class: 'views__name' }, view.name),
    h('span', { class: 'views__count' }, String(view.count),
      h('span', { class: 'visually-hidden' }, view.count === 1 ? ' conversation' : ' conversations')));
    this.buttons.set(view.key, button);
    return button;
  }

  /** Mark `key` as the current view. */
  setActive(key) {
    this.activeKey = key;
    for (const [viewKey, button] of this.buttons) {
      if (viewKey === key) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }
  }
}
