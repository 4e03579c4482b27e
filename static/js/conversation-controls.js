// The workflow controls in the thread header: status (with a snooze time picker), priority,
// assignee, team, labels and merge. Each control sends its change at once and shows the
// server's reason when it was rejected.

import { h, icon, replaceChildren } from './dom.js';
import { formatRelative } from './format.js';
import {
  AGENT_STATUSES, PRIORITY_LABELS, STATUS_LABELS, formatSnooze, snoozePresets, toLocalInputValue,
} from './workflow.js';

export class ConversationControls {
  /**
   * @param {HTMLElement} host Element that receives the controls.
   * @param {object} handlers
   * @param {(id: number, changes: object) => Promise<void>} handlers.onChange Sends a change;
   *   a rejection with an Error shows its message.
   * @param {(conversation: object) => void} handlers.onMerge Opens the merge dialog.
   * @param {(id: number) => void} handlers.onOpen Opens another conversation.
   */
  constructor(host, { onChange, onMerge, onOpen }) {
    this.host = host;
    this.onChange = onChange;
    this.onMerge = onMerge;
    this.onOpen = onOpen;
    this.conversation = null;
    this.context = { agents: [], teams: [], labels: [], onlineIds: new Set(), agentId: null };
    // Changes are sent one after another: `queue` settles when the last one has.
    this.queue = Promise.resolve(true);
    this.pending = 0;
    this.optionSignature = '';
    this.labelSignature = '';

    this.statusButtons = new Map(AGENT_STATUSES.map((status) => [status, h('button', {
      type: 'button',
      class: `segment segment--${status}`,
      'aria-pressed': 'false',
      onClick: () => this.pickStatus(status),
    }, STATUS_LABELS[status])]));
    this.priority = h('select', { class: 'control__select', id: 'control-priority', onChange: () => this.send({ priority: this.priority.value }) },
      Object.entries(PRIORITY_LABELS).map(([value, label]) => h('option', { value }, label)));
    this.assignee = h('select', { class: 'control__select', id: 'control-assignee', onChange: () => this.sendAssignee() });
    this.team = h('select', { class: 'control__select', id: 'control-team', onChange: () => this.sendTeam() });
    this.labelList = h('ul', { class: 'labels', 'aria-label': 'Labels' });
    this.labelOptions = h('datalist', { id: 'label-options' });
    this.labelInput = h('input', {
      type: 'text',
      class: 'labels__input',
      list: 'label-options',
      maxlength: '50',
      placeholder: 'Add label…',
      'aria-label': 'Add label',
      onKeydown: (event) => {
        if (event.key === 'Enter' && !event.isComposing) {
          event.preventDefault();
          this.addLabel();
        }
      },
    });
    this.mergeButton = h('button', { type: 'button', class: 'button button--small button--ghost', onClick: () => this.onMerge(this.conversation) },
      'Merge…');
    this.snoozeInput = h('input', { type: 'datetime-local', class: 'control__input', id: 'snooze-until' });
    this.snooze = h('form', {
      class: 'snooze',
      hidden: true,
      'aria-label': 'Snooze',
      onSubmit: (event) => { event.preventDefault(); this.sendSnooze(); },
      onKeydown: (event) => { if (event.key === 'Escape') { event.preventDefault(); this.closeSnooze(); } },
    });
    this.note = h('p', { class: 'controls__note' });
    this.error = h('p', { class: 'controls__error', role: 'alert' });
    this.merged = h('div', { class: 'controls__merged', hidden: true });

    this.controls = h('div', { class: 'controls', role: 'group', 'aria-label': 'Conversation settings' },
      h('div', { class: 'controls__row' },
        h('div', { class: 'segments', role: 'group', 'aria-label': 'Conversation status' }, [...this.statusButtons.values()]),
        control('Priority', this.priority),
        control('Assignee', this.assignee),
        control('Team', this.team),
        this.mergeButton),
      h('div', { class: 'controls__row controls__row--labels' },
        this.labelList, this.labelInput, this.labelOptions),
      this.snooze,
      this.note,
      this.error);
    replaceChildren(host, this.controls, this.merged);
  }

  /** Set the lists the selects offer: agents, teams, labels, who is online and who is signed in. */
  setContext(context) {
    this.context = { ...this.context, ...context };
    if (this.conversation) this.update(this.conversation);
  }

  /** Show the state of `conversation`, keeping the element that has the focus. */
  update(conversation) {
    const switched = this.conversation?.id !== conversation.id;
    this.conversation = conversation;
    if (switched) {
      this.clearError();
      this.closeSnooze();
    }

    const closed = conversation.status === 'closed';
    this.controls.hidden = closed;
    this.merged.hidden = !closed;
    if (closed) {
      replaceChildren(this.merged,
        icon('alert'),
        h('span', {}, `This conversation was merged into conversation #${conversation.merged_into_id}, where its messages are now.`),
        h('button', { type: 'button', class: 'button button--small', onClick: () => this.onOpen(conversation.merged_into_id) },
          `Open #${conversation.merged_into_id}`));
      return;
    }

    for (const [status, button] of this.statusButtons) {
      button.setAttribute('aria-pressed', String(status === conversation.status));
    }
    this.priority.value = conversation.priority ?? 'normal';
    this.fillOptions();
    this.assignee.value = conversation.assignee ? String(conversation.assignee.id) : '';
    this.team.value = conversation.team ? String(conversation.team.id) : '';
    this.renderLabels();
    this.note.textContent = conversation.status === 'snoozed' && conversation.snoozed_until
      ? `Snoozed until ${formatSnooze(conversation.snoozed_until)}. It opens again then, or when the customer writes.`
      : '';
  }

  fillOptions() {
    const { agents, teams, onlineIds, agentId } = this.context;
    const conversation = this.conversation;
    const signature = JSON.stringify([agents, teams, [...onlineIds].sort(), conversation.assignee, conversation.team]);
    if (signature === this.optionSignature) return;
    this.optionSignature = signature;

    const others = agents.filter((agent) => agent.id !== agentId);
    const me = agents.find((agent) => agent.id === agentId);
    const known = new Set(agents.map((agent) => agent.id));
    replaceChildren(this.assignee,
      h('option', { value: '' }, 'Unassigned'),
      me ? h('option', { value: String(me.id) }, `Me (${me.name})`) : null,
      others.map((agent) => h('option', { value: String(agent.id) }, onlineIds.has(agent.id) ? `${agent.name} · online` : agent.name)),
      // An assignee who is no longer listed (deactivated) still shows as the current value.
      conversation.assignee && !known.has(conversation.assignee.id)
        ? h('option', { value: String(conversation.assignee.id) }, conversation.assignee.name) : null,
      conversation.team ? h('option', { value: 'auto' }, `Next available in ${conversation.team.name}`) : null);
    replaceChildren(this.team,
      h('option', { value: '' }, 'No team'),
      teams.map((team) => h('option', { value: String(team.id) }, team.name)));
  }

  renderLabels() {
    const labels = this.conversation.labels ?? [];
    const signature = JSON.stringify([labels, this.context.labels]);
    if (signature === this.labelSignature) return;
    this.labelSignature = signature;

    replaceChildren(this.labelList, labels.map((label) => h('li', { class: 'label-chip' },
      h('span', { class: 'label-chip__name', title: label.name }, label.name),
      h('button', {
        type: 'button',
        class: 'label-chip__remove',
        'aria-label': `Remove label ${label.name}`,
        onClick: () => this.send({ remove_labels: [label.name] }),
      }, '×'))));
    const present = new Set(labels.map((label) => label.name.toLowerCase()));
    replaceChildren(this.labelOptions, this.context.labels
      .filter((label) => !present.has(label.name.toLowerCase()))
      .map((label) => h('option', { value: label.name })));
  }

  // ---- Sending changes -------------------------------------------------------------------

  pickStatus(status) {
    if (status === 'snoozed') {
      this.openSnooze();
      return;
    }
    this.closeSnooze();
    if (status !== this.conversation.status) this.send({ status });
  }

  sendAssignee() {
    const value = this.assignee.value;
    let assigneeId = Number(value);
    if (value === '') assigneeId = null;
    else if (value === 'auto') assigneeId = 'auto';
    this.send({ assignee_id: assigneeId });
  }

  sendTeam() {
    const value = this.team.value;
    this.send({ team_id: value === '' ? null : Number(value) });
  }

  addLabel() {
    const name = this.labelInput.value.trim();
    if (!name) return;
    this.send({ add_labels: [name] }).then((sent) => {
      if (sent) this.labelInput.value = '';
    });
  }

  openSnooze() {
    const presets = snoozePresets();
    this.snoozeInput.min = toLocalInputValue(new Date());
    if (!this.snoozeInput.value) this.snoozeInput.value = toLocalInputValue(presets[1].time);
    replaceChildren(this.snooze,
      h('label', { class: 'control', for: 'snooze-until' }, h('span', { class: 'control__label' }, 'Snooze until'), this.snoozeInput),
      h('div', { class: 'snooze__presets', role: 'group', 'aria-label': 'Quick choices' },
        presets.map((preset) => h('button', {
          type: 'button',
          class: 'button button--small button--ghost',
          title: formatSnooze(preset.time.toISOString()),
          onClick: () => { this.snoozeInput.value = toLocalInputValue(preset.time); this.sendSnooze(); },
        }, preset.label))),
      h('button', { type: 'submit', class: 'button button--small button--primary' }, 'Snooze'),
      h('button', { type: 'button', class: 'button button--small', onClick: () => this.closeSnooze() }, 'Cancel'));
    this.snooze.hidden = false;
    this.snoozeInput.focus();
  }

  closeSnooze() {
    if (this.snooze.hidden) return;
    // Focus inside a hidden form would swallow the keyboard shortcuts, so it goes back to the button.
    const hadFocus = this.snooze.contains(document.activeElement);
    this.snooze.hidden = true;
    this.snoozeInput.value = '';
    if (hadFocus) this.statusButtons.get('snoozed').focus();
  }

  sendSnooze() {
    // The input's value is a local time without a zone, so Date reads it in the browser's zone.
    const until = new Date(this.snoozeInput.value);
    if (Number.isNaN(until.getTime())) {
      this.showError('Pick a date and time to snooze until.');
      return;
    }
    this.send({ status: 'snoozed', snoozed_until: until.toISOString() }).then((sent) => {
      if (sent) this.closeSnooze();
    });
  }

  /**
   * Send `changes` for the shown conversation, after any change still in flight, so quick
   * successive changes arrive in order. Resolves to true once the server accepted them.
   */
  send(changes) {
    const conversation = this.conversation;
    if (!conversation) return Promise.resolve(false);
    this.pending += 1;
    this.setBusy(true);
    const sent = this.queue.then(() => this.sendNow(conversation, changes));
    this.queue = sent;
    return sent;
  }

  async sendNow(conversation, changes) {
    this.clearError();
    try {
      await this.onChange(conversation.id, changes);
      return true;
    } catch (error) {
      if (this.conversation?.id === conversation.id) {
        this.showError(`Not changed: ${error.message}`);
        // The selects go back to the conversation's real state.
        this.optionSignature = '';
        this.update(this.conversation);
      }
      return false;
    } finally {
      this.pending -= 1;
      if (this.pending === 0) this.setBusy(false);
    }
  }

  setBusy(busy) {
    this.controls.setAttribute('aria-busy', String(busy));
    this.controls.classList.toggle('controls--busy', busy);
  }

  showError(message) {
    this.error.textContent = message;
  }

  clearError() {
    this.error.textContent = '';
  }
}

function control(label, select) {
  return h('label', { class: 'control', for: select.id }, h('span', { class: 'control__label' }, label), select);
}

/**
 * Show the merge dialog for `conversation`: the other conversations of the same customer on the
 * same channel, one of which receives its messages. `loadCandidates` returns them;
 * `merge(targetId)` performs the merge and rejects with an Error to show.
 */
export function openMergeDialog(conversation, { loadCandidates, merge }) {
  const list = h('div', { class: 'merge__list', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading conversations…');
  const error = h('p', { class: 'controls__error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'button button--primary', disabled: true }, 'Merge');
  const form = h('form', { class: 'merge', method: 'dialog' },
    h('p', { class: 'merge__text' },
      'Every message of this conversation moves into the one you pick, and this conversation is closed. ',
      'Only conversations of the same customer on the same channel can merge.'),
    list,
    error,
    h('div', { class: 'merge__actions' },
      h('button', { type: 'button', class: 'button', onClick: () => dialog.close() }, 'Cancel'),
      submit));
  const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'merge-title' },
    h('div', { class: 'dialog__header' },
      h('h2', { id: 'merge-title' }, `Merge conversation #${conversation.id}`),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', onClick: () => dialog.close() }, '×')),
    form);
  dialog.addEventListener('close', () => dialog.remove());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const picked = form.querySelector('input[name="merge-target"]:checked');
    if (!picked) return;
    submit.disabled = true;
    error.textContent = '';
    try {
      await merge(Number(picked.value));
      dialog.close();
    } catch (failure) {
      error.textContent = `Not merged: ${failure.message}`;
      submit.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();

  loadCandidates().then((candidates) => {
    if (candidates.length === 0) {
      replaceChildren(list, h('p', {}, 'This customer has no other conversation on this channel.'));
      list.removeAttribute('role');
      return;
    }
    replaceChildren(list, h('fieldset', { class: 'merge__choices' },
      h('legend', {}, 'Merge into'),
      candidates.map((candidate) => h('label', { class: 'merge__choice' },
        h('input', { type: 'radio', name: 'merge-target', value: String(candidate.id), onChange: () => { submit.disabled = false; } }),
        h('span', {}, `#${candidate.id} · ${STATUS_LABELS[candidate.status] ?? candidate.status} · ${formatRelative(candidate.last_message_at)}`),
        h('span', { class: 'merge__snippet' }, candidate.snippet || '')))));
    list.removeAttribute('role');
  }, (failure) => {
    replaceChildren(list, h('p', { class: 'controls__error' }, `Could not load the conversations: ${failure.message}`));
  });
}
