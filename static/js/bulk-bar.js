// The bulk action bar above the conversation list: one action for every checked conversation,
// which the server applies to all of them or to none.

import { h, replaceChildren } from './dom.js';
import { PRIORITY_LABELS } from './workflow.js';

export class BulkBar {
  /**
   * @param {HTMLElement} host Element that receives the bar.
   * @param {object} handlers
   * @param {(changes: object) => Promise<void>} handlers.onApply Sends the change for the
   *   checked conversations; a rejection with an Error shows its message.
   * @param {() => void} handlers.onSelectAll Checks every conversation in the list.
   * @param {() => void} handlers.onClear Unchecks every conversation.
   */
  constructor(host, { onApply, onSelectAll, onClear }) {
    this.onApply = onApply;
    this.count = 0;
    this.busy = false;
    this.context = { agents: [], teams: [], labels: [], agentId: null };

    this.summary = h('span', { class: 'bulk__count', role: 'status' });
    this.action = h('select', { class: 'control__select', id: 'bulk-action', 'aria-label': 'Action for the selected conversations' });
    this.apply = h('button', { type: 'submit', class: 'button button--small button--primary' }, 'Apply');
    this.error = h('p', { class: 'controls__error bulk__error', role: 'alert' });
    this.form = h('form', {
      class: 'bulk',
      role: 'toolbar',
      'aria-label': 'Bulk actions',
      hidden: true,
      onSubmit: (event) => { event.preventDefault(); this.submit(); },
    },
    h('div', { class: 'bulk__row' },
      this.summary,
      h('button', { type: 'button', class: 'link-button', onClick: () => onSelectAll() }, 'Select all'),
      h('button', { type: 'button', class: 'link-button', onClick: () => onClear() }, 'Clear')),
    h('div', { class: 'bulk__row' }, this.action, this.apply),
    this.error);
    host.replaceChildren(this.form);
    this.fillActions();
  }

  /** Set the agents, teams and labels the actions offer. */
  setContext(context) {
    this.context = { ...this.context, ...context };
    this.fillActions();
  }

  /** Show the bar for `count` checked conversations, or hide it for none. */
  setCount(count) {
    this.count = count;
    this.form.hidden = count === 0;
    this.summary.textContent = count === 1 ? '1 conversation selected' : `${count} conversations selected`;
    if (count === 0) this.error.textContent = '';
  }

  fillActions() {
    const { agents, teams, labels, agentId } = this.context;
    const selected = this.action.value;
    replaceChildren(this.action,
      h('option', { value: '' }, 'Choose an action…'),
      h('optgroup', { label: 'Status' },
        h('option', { value: 'status:open' }, 'Set status: Open'),
        h('option', { value: 'status:pending' }, 'Set status: Pending'),
        h('option', { value: 'status:resolved' }, 'Set status: Resolved')),
      h('optgroup', { label: 'Priority' },
        Object.entries(PRIORITY_LABELS).map(([value, label]) => h('option', { value: `priority:${value}` }, `Set priority: ${label}`))),
      h('optgroup', { label: 'Assign' },
        h('option', { value: `assignee:${agentId}` }, 'Assign to me'),
        agents.filter((agent) => agent.id !== agentId)
          .map((agent) => h('option', { value: `assignee:${agent.id}` }, `Assign to ${agent.name}`)),
        h('option', { value: 'assignee:none' }, 'Unassign'),
        teams.map((team) => h('option', { value: `team:${team.id}` }, `Move to team ${team.name}`))),
      labels.length > 0 ? h('optgroup', { label: 'Add label' },
        labels.map((label) => h('option', { value: `add_label:${label.name}` }, `Add label: ${label.name}`))) : null,
      labels.length > 0 ? h('optgroup', { label: 'Remove label' },
        labels.map((label) => h('option', { value: `remove_label:${label.name}` }, `Remove label: ${label.name}`))) : null);
    this.action.value = selected;
    if (this.action.value !== selected) this.action.value = '';
  }

  async submit() {
    const changes = changesFor(this.action.value);
    if (!changes || this.busy) {
      if (!changes) this.error.textContent = 'Choose an action first.';
      return;
    }
    this.busy = true;
    this.apply.disabled = true;
    this.apply.textContent = 'Applying…';
    this.error.textContent = '';
    try {
      await this.onApply(changes);
      this.action.value = '';
    } catch (error) {
      const reasons = (error.items ?? []).map((item) => item.message);
      this.error.textContent = reasons.length > 0
        ? `Nothing was changed. ${reasons.join(' ')}`
        : `Nothing was changed: ${error.message}`;
    } finally {
      this.busy = false;
      this.apply.disabled = false;
      this.apply.textContent = 'Apply';
    }
  }
}

/** Return the API change for an action value such as "status:resolved", or null for none. */
function changesFor(value) {
  const separator = value.indexOf(':');
  if (separator === -1) return null;
  const kind = value.slice(0, separator);
  const argument = value.slice(separator + 1);
  switch (kind) {
    case 'status': return { status: argument };
    case 'priority': return { priority: argument };
    case 'assignee': return { assignee_id: argument === 'none' ? null : Number(argument) };
    case 'team': return { team_id: Number(argument) };
    case 'add_label': return { add_labels: [argument] };
    case 'remove_label': return { remove_labels: [argument] };
    default: return null;
  }
}
