// The contact panel beside the thread: the customer's addresses on every channel, their past
// conversations, the name and notes agents keep, and merging two contacts of one person.

import { h, icon, replaceChildren } from './dom.js';
import { channelBadge } from './conversation-list.js';
import { channelLabel, displayAddress, formatDate, formatFullTimestamp, formatRelative } from './format.js';
import { STATUS_LABELS } from './workflow.js';

const CONVERSATION_PAGE = 10;
const SEARCH_DELAY_MS = 250;
const NOTES_LENGTH = 10000;
const NAME_LENGTH = 200;
const TIME_ZONE_LENGTH = 64;
// The words that name each editable field in button labels and announcements.
const FIELD_LABELS = { name: 'name', notes: 'notes', time_zone: 'time zone' };
const ZONE_SOURCES = { contact: 'set for this contact', phone: 'from the phone number', workspace: 'the workspace\'s zone' };

/** Describe the zone that quiet hours follow for a contact without a zone of its own. */
function zoneInUse(inUse) {
  if (!inUse) return ['From the phone number or the workspace.'];
  return [inUse.name, h('span', { class: 'contact-panel__zone-source' }, `, ${ZONE_SOURCES[inUse.source] ?? inUse.source}`)];
}

export class ContactPanel {
  /**
   * @param {HTMLElement} root The panel element.
   * @param {object} options
   * @param {import('./api.js').ApiClient} options.api
   * @param {(conversationId: number) => void} options.onOpenConversation Open a past conversation.
   * @param {(text: string) => void} options.announce Tell screen reader users what happened.
   */
  constructor(root, { api, onOpenConversation, announce, onClose }) {
    this.root = root;
    this.api = api;
    this.onOpenConversation = onOpenConversation;
    this.announce = announce;
    this.onClose = onClose;
    this.contactId = null;
    this.conversationId = null;
    this.profile = null;
    // 'name' or 'notes' while that field is being edited: live updates then leave the form alone.
    this.editing = null;
    this.loadSequence = 0;
    this.moreCursor = null;
  }

  /** Show the contact of the open conversation; a new contact id loads its profile. */
  show(contactId, conversationId = null) {
    if (contactId === this.contactId && this.profile) {
      if (conversationId !== this.conversationId) {
        this.conversationId = conversationId;
        this.render();
      }
      return;
    }
    this.conversationId = conversationId;
    this.contactId = contactId;
    this.profile = null;
    this.editing = null;
    if (contactId === null || contactId === undefined) {
      replaceChildren(this.root, this.heading());
      return;
    }
    this.load();
  }

  async load() {
    const sequence = ++this.loadSequence;
    if (!this.profile) {
      replaceChildren(this.root, this.heading(),
        h('p', { class: 'contact-panel__state', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading the contact…'));
    }
    let profile;
    try {
      profile = await this.api.getContact(this.contactId, { limit: CONVERSATION_PAGE });
    } catch (error) {
      if (sequence !== this.loadSequence || this.api.redirecting) return;
      replaceChildren(this.root, this.heading(),
        h('div', { class: 'contact-panel__state', role: 'alert' },
          h('p', {}, `Could not load the contact: ${error.message}`),
          h('button', { type: 'button', class: 'button button--small', onClick: () => this.load() }, 'Try again')));
      return;
    }
    if (sequence !== this.loadSequence) return;
    this.profile = profile;
    this.moreCursor = profile.conversations?.next_cursor ?? null;
    this.render();
  }

  /** Apply a live event about contacts; other events are not for this panel. */
  receiveEvent(name, payload) {
    if (this.contactId === null) return;
    if (name === 'contact.updated' && payload.contact?.id === this.contactId && this.profile) {
      this.profile = { ...this.profile, ...payload.contact };
      this.render();
    } else if (name === 'contact.merged') {
      // The shown contact was merged away, or gained another's addresses and conversations.
      if (payload.merged_contact_id === this.contactId) {
        this.contactId = payload.contact?.id ?? null;
        this.editing = null;
        this.load();
      } else if (payload.contact?.id === this.contactId) {
        this.load();
      }
    }
  }

  /**
   * Update the entry of a conversation in the shown contact's list from a live event, or add
   * it at the top when it is new. The list keeps the newest message first.
   */
  updateConversation(conversation) {
    if (!this.profile || conversation.contact?.id !== this.contactId) return;
    const items = this.profile.conversations?.items ?? [];
    const entry = {
      id: conversation.id,
      channel: conversation.channel,
      subject: conversation.subject,
      snippet: conversation.snippet,
      status: conversation.status,
      last_message_at: conversation.last_message_at,
      created_at: conversation.created_at,
    };
    const known = items.find((item) => item.id === entry.id);
    // A copy older than the shown one, such as a late response to a status change that a
    // customer's message has overtaken, must not undo the newer state.
    if (known && Date.parse(entry.last_message_at ?? 0) < Date.parse(known.last_message_at ?? 0)) return;
    if (known && Object.keys(entry).every((key) => JSON.stringify(known[key]) === JSON.stringify(entry[key]))) return;
    let updated;
    if (known) {
      updated = items.map((item) => (item.id === entry.id ? { ...item, ...entry } : item));
    } else {
      updated = [entry, ...items];
    }
    updated.sort((a, b) => Date.parse(b.last_message_at ?? 0) - Date.parse(a.last_message_at ?? 0));
    this.profile = { ...this.profile, conversations: { ...this.profile.conversations, items: updated } };
    // An open edit form keeps its input and error; the list is drawn again when the edit ends.
    if (this.editing === null) this.render();
  }

  heading() {
    const title = h('h2', { class: 'contact-panel__title', id: 'contact-panel-title' }, 'Contact');
    if (!this.onClose) return title;
    // Shown only on a phone, where the panel covers the thread header and its toggle.
    return h('div', { class: 'contact-panel__head' }, title,
      h('button', {
        type: 'button', class: 'icon-button contact-panel__close', 'aria-label': 'Close contact details',
        onClick: () => this.onClose(),
      }, '×'));
  }

  render() {
    const profile = this.profile;
    if (!profile) return;
    // Keep what the agent is typing when a live update redraws the panel.
    const focusedField = this.root.contains(document.activeElement) ? document.activeElement?.name : null;
    // An Edit button keeps focus too, when a live update arrives just after a save.
    const focusedLabel = this.root.contains(document.activeElement) ? document.activeElement?.getAttribute('aria-label') : null;
    const draft = this.editing ? this.root.querySelector(`[name="${this.editing}"]`)?.value : null;

    replaceChildren(this.root,
      this.heading(),
      this.renderName(profile, draft),
      profile.merged_into_id
        ? h('p', { class: 'contact-panel__note', role: 'note' }, `This contact was merged into contact #${profile.merged_into_id}.`)
        : null,
      profile.opted_out
        ? h('p', { class: 'contact-panel__note', role: 'note' },
          `Opted out of proactive WhatsApp messages with “${profile.opted_out.keyword}” ${formatRelative(profile.opted_out.since)}.`)
        : null,
      this.renderIdentities(profile.identities ?? []),
      this.renderTimeZone(profile, draft),
      this.renderNotes(profile, draft),
      this.renderConversations(profile.conversations?.items ?? []),
      this.renderMerges(profile.merges ?? []),
      profile.merged_into_id
        ? null
        : h('button', { type: 'button', class: 'button button--small contact-panel__merge', 'aria-haspopup': 'dialog', onClick: () => this.openMergeDialog() },
          'Merge with…'),
      h('p', { class: 'contact-panel__created' }, 'Contact since ',
        h('time', { datetime: profile.created_at, title: formatFullTimestamp(profile.created_at) }, formatDate(profile.created_at))));

    if (focusedField) this.root.querySelector(`[name="${focusedField}"]`)?.focus();
    else if (focusedLabel?.startsWith('Edit ')) this.root.querySelector(`[aria-label="${focusedLabel}"]`)?.focus();
  }

  renderName(profile, draft) {
    const name = profile.name?.trim() || '';
    if (this.editing === 'name') {
      return this.editForm('name', 'Name', h('input', {
        type: 'text', name: 'name', id: 'contact-name-input', maxlength: String(NAME_LENGTH), autocomplete: 'off',
        value: draft ?? name, 'aria-describedby': 'contact-name-hint',
      }), h('p', { class: 'contact-panel__hint', id: 'contact-name-hint' }, 'Leave empty to use the name from WhatsApp or email.'));
    }
    return h('div', { class: 'contact-panel__field' },
      h('p', { class: 'contact-panel__name' }, name || h('span', { class: 'contact-panel__empty' }, 'No name')),
      profile.merged_into_id ? null : h('button', {
        type: 'button', class: 'link-button', 'aria-label': 'Edit name',
        title: profile.name_set_by_agent ? 'Named by an agent' : 'The name comes from the channel until an agent sets one',
        onClick: () => this.startEditing('name'),
      }, 'Edit'));
  }

  renderNotes(profile, draft) {
    const section = h('section', { class: 'contact-panel__section', 'aria-labelledby': 'contact-notes-title' },
      h('h3', { class: 'contact-panel__subtitle', id: 'contact-notes-title' }, 'Notes'));
    if (this.editing === 'notes') {
      section.append(this.editForm('notes', 'Notes', h('textarea', {
        name: 'notes', id: 'contact-notes-input', rows: '5', maxlength: String(NOTES_LENGTH),
      }, draft ?? profile.notes ?? '')));
      return section;
    }
    section.append(
      profile.notes
        ? h('p', { class: 'contact-panel__notes' }, profile.notes)
        : h('p', { class: 'contact-panel__empty' }, 'No notes yet.'),
      profile.merged_into_id ? null : h('button', {
        type: 'button', class: 'link-button', 'aria-label': 'Edit notes', onClick: () => this.startEditing('notes'),
      }, profile.notes ? 'Edit' : 'Add notes'));
    return section;
  }

  renderTimeZone(profile, draft) {
    const section = h('section', { class: 'contact-panel__section', 'aria-labelledby': 'contact-time-zone-title' },
      h('h3', { class: 'contact-panel__subtitle', id: 'contact-time-zone-title' }, 'Time zone'));
    if (this.editing === 'time_zone') {
      section.append(this.editForm('time_zone', 'Time zone', h('input', {
        type: 'text', name: 'time_zone', id: 'contact-time-zone-input', maxlength: String(TIME_ZONE_LENGTH),
        autocomplete: 'off', spellcheck: 'false', value: draft ?? profile.time_zone ?? '',
        'aria-describedby': 'contact-time-zone-hint',
      }), h('p', { class: 'contact-panel__hint', id: 'contact-time-zone-hint' },
        'An IANA name such as Europe/Berlin. Leave empty to use the phone number\'s zone, else the workspace\'s.')));
      return section;
    }
    section.append(
      profile.time_zone
        ? h('p', { class: 'contact-panel__time-zone' }, profile.time_zone)
        : h('p', { class: 'contact-panel__time-zone', id: 'contact-time-zone-in-use' }, ...zoneInUse(profile.time_zone_in_use)),
      profile.merged_into_id ? null : h('button', {
        type: 'button', class: 'link-button', 'aria-label': 'Edit time zone', onClick: () => this.startEditing('time_zone'),
      }, profile.time_zone ? 'Edit' : 'Set'));
    return section;
  }

  /** Create the edit form of one field, with Save and Cancel. Escape cancels too. */
  editForm(field, label, control, hint = null) {
    const error = h('p', { class: 'contact-panel__error', role: 'alert' });
    const save = h('button', { type: 'submit', class: 'button button--primary button--small' }, 'Save');
    const form = h('form', {
      class: 'contact-panel__form',
      onKeydown: (event) => {
        if (event.key === 'Escape') {
          event.preventDefault();
          event.stopPropagation();
          this.stopEditing(field);
        }
      },
      onSubmit: async (event) => {
        event.preventDefault();
        save.disabled = true;
        error.textContent = '';
        const value = control.value.trim();
        try {
          const changed = await this.api.updateContact(this.contactId, { [field]: value || null });
          this.profile = { ...this.profile, ...changed };
          this.editing = null;
          this.render();
          this.root.querySelector(`[aria-label="Edit ${FIELD_LABELS[field]}"]`)?.focus();
          const label = FIELD_LABELS[field];
          this.announce(`${label[0].toUpperCase()}${label.slice(1)} saved.`);
        } catch (failure) {
          error.textContent = `Not saved: ${failure.message}`;
          save.disabled = false;
        }
      },
    },
    h('label', { class: 'contact-panel__label', for: control.id }, label),
    control,
    hint,
    error,
    h('div', { class: 'contact-panel__actions' },
      h('button', { type: 'button', class: 'button button--small', onClick: () => this.stopEditing(field) }, 'Cancel'),
      save));
    return form;
  }

  startEditing(field) {
    this.editing = field;
    this.render();
    const control = this.root.querySelector(`[name="${field}"]`);
    control?.focus();
    if (control?.select) control.select();
  }

  stopEditing(field) {
    this.editing = null;
    this.render();
    this.root.querySelector(`[aria-label="Edit ${FIELD_LABELS[field]}"]`)?.focus();
  }

  renderIdentities(identities) {
    return h('section', { class: 'contact-panel__section', 'aria-labelledby': 'contact-addresses-title' },
      h('h3', { class: 'contact-panel__subtitle', id: 'contact-addresses-title' }, 'Addresses'),
      identities.length === 0
        ? h('p', { class: 'contact-panel__empty' }, 'No addresses.')
        : h('ul', { class: 'contact-panel__list' }, identities.map((identity) => h('li', { class: 'contact-panel__identity' },
          channelBadge(identity.kind === 'phone' ? 'whatsapp' : 'email', '', identity.kind === 'phone' ? 'Phone' : 'Email'),
          h('span', { class: 'contact-panel__address' }, displayAddress(identity.value)),
          identity.failing
            ? h('span', { class: 'contact-panel__failing', title: formatFullTimestamp(identity.failing.since) },
              icon('alert'), `Failing: ${identity.failing.reason || 'mail bounced'}`)
            : null))));
  }

  renderConversations(items) {
    const more = this.moreCursor
      ? h('button', { type: 'button', class: 'link-button', onClick: (event) => this.loadMoreConversations(event.currentTarget) }, 'Show older conversations')
      : null;
    return h('section', { class: 'contact-panel__section', 'aria-labelledby': 'contact-conversations-title' },
      h('h3', { class: 'contact-panel__subtitle', id: 'contact-conversations-title' }, 'Conversations'),
      items.length === 0
        ? h('p', { class: 'contact-panel__empty' }, 'No conversations.')
        : h('ul', { class: 'contact-panel__list' }, items.map((item) => h('li', {},
          h('button', {
            type: 'button',
            class: 'contact-panel__conversation',
            'aria-current': item.id === this.conversationId ? 'true' : null,
            onClick: () => this.onOpenConversation(item.id),
          },
          h('span', { class: 'contact-panel__conversation-top' },
            channelBadge(item.channel?.kind),
            h('span', {}, `#${item.id} · ${STATUS_LABELS[item.status] ?? item.status}`),
            h('time', { datetime: item.last_message_at, title: formatFullTimestamp(item.last_message_at) }, formatRelative(item.last_message_at))),
          h('span', { class: 'contact-panel__snippet' }, item.subject || item.snippet || `${channelLabel(item.channel?.kind)} conversation`))))),
      more);
  }

  async loadMoreConversations(button) {
    button.disabled = true;
    try {
      const page = await this.api.listContactConversations(this.contactId, { cursor: this.moreCursor, limit: CONVERSATION_PAGE });
      const known = new Set((this.profile.conversations?.items ?? []).map((item) => item.id));
      const items = [...(this.profile.conversations?.items ?? []), ...(page.items ?? []).filter((item) => !known.has(item.id))];
      this.profile = { ...this.profile, conversations: { items, next_cursor: page.next_cursor ?? null } };
      this.moreCursor = page.next_cursor ?? null;
      this.render();
    } catch (error) {
      button.disabled = false;
      this.announce(`Could not load more conversations: ${error.message}`);
    }
  }

  renderMerges(merges) {
    if (merges.length === 0) return null;
    return h('section', { class: 'contact-panel__section', 'aria-labelledby': 'contact-merges-title' },
      h('h3', { class: 'contact-panel__subtitle', id: 'contact-merges-title' }, 'Merged contacts'),
      h('ul', { class: 'contact-panel__list' }, merges.map((merge) => h('li', { class: 'contact-panel__merge-record' },
        `${merge.merged_name || `Contact #${merge.merged_contact_id}`} (${addressList(merge.merged_identities)}), merged by ${merge.agent?.name ?? 'Switchboard'} `,
        h('time', { datetime: merge.created_at, title: formatFullTimestamp(merge.created_at) }, formatRelative(merge.created_at))))));
  }

  // ---- Merge ----------------------------------------------------------------------------

  /** Find the other contact of this person, show what moves, and merge it into this one. */
  openMergeDialog() {
    const kept = this.profile;
    const keptName = kept.name?.trim() || addressList(kept.identities) || `contact #${kept.id}`;
    const input = h('input', { type: 'search', id: 'contact-merge-search', name: 'q', autocomplete: 'off', placeholder: 'Name, email or phone number' });
    const results = h('div', { class: 'contact-merge__results', 'aria-live': 'polite' });
    const confirm = h('div', { class: 'contact-merge__confirm', hidden: true });
    const error = h('p', { class: 'contact-panel__error', role: 'alert' });
    const dialog = h('dialog', { class: 'dialog contact-merge', 'aria-labelledby': 'contact-merge-title' },
      h('div', { class: 'dialog__header' },
        h('h2', { id: 'contact-merge-title' }, `Merge another contact into ${keptName}`),
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', onClick: () => dialog.close() }, '×')),
      h('div', { class: 'contact-merge__body' },
        h('label', { class: 'contact-panel__label', for: 'contact-merge-search' }, 'Find the other contact'),
        input, results, confirm, error));
    dialog.addEventListener('close', () => dialog.remove());

    let timer = null;
    let sequence = 0;
    const search = async () => {
      const query = input.value.trim();
      const current = ++sequence;
      if (!query) {
        replaceChildren(results);
        return;
      }
      try {
        const found = await this.api.searchContacts(query);
        if (current !== sequence) return;
        const candidates = (found.items ?? []).filter((contact) => contact.id !== kept.id);
        replaceChildren(results, candidates.length === 0
          ? h('p', { class: 'contact-panel__empty' }, 'No other contact matches.')
          : h('ul', { class: 'contact-panel__list', 'aria-label': 'Matching contacts' }, candidates.map((contact) => {
            // Marked from the panel's copy of this contact; the confirm step checks fresh profiles.
            const clash = addressClash(kept.identities, contact.identities);
            return h('li', {},
              h('button', {
                type: 'button',
                class: `contact-merge__candidate${clash ? ' contact-merge__candidate--blocked' : ''}`,
                onClick: () => showConfirm(contact),
              },
              h('span', { class: 'contact-merge__candidate-name' }, contact.name?.trim() || `Contact #${contact.id}`),
              h('span', { class: 'contact-merge__candidate-addresses' }, addressList(contact.identities)),
              clash ? h('span', { class: 'contact-merge__candidate-blocked' }, `Cannot merge: both have ${kindPhrase(clash.kind)}`) : null));
          })));
      } catch (failure) {
        if (current === sequence) replaceChildren(results, h('p', { class: 'contact-panel__error' }, `Could not search: ${failure.message}`));
      }
    };
    input.addEventListener('input', () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(search, SEARCH_DELAY_MS);
    });

    const showConfirm = async (candidate) => {
      error.textContent = '';
      let page;
      let keptNow;
      let other;
      try {
        // Both profiles are read again, because an address may have moved since the search.
        [page, keptNow, other] = await Promise.all([
          this.api.listContactConversations(candidate.id, { limit: 50 }),
          this.api.getContact(kept.id, { limit: 1 }),
          this.api.getContact(candidate.id, { limit: 1 }),
        ]);
      } catch (failure) {
        error.textContent = `Could not read that contact: ${failure.message}`;
        return;
      }

      const count = (page.items ?? []).length;
      const conversations = page.next_cursor ? `more than ${count} conversations` : plural(count, 'conversation');
      const otherName = other.name?.trim() || `Contact #${other.id}`;
      const moving = [
        `${plural(other.identities?.length ?? 0, 'address', 'addresses')} (${addressList(other.identities) || 'none'})`,
        `${conversations} with their messages`,
        other.notes ? 'the notes, added below these' : null,
        other.opted_out ? 'the opt-out from proactive WhatsApp messages' : null,
      ].filter(Boolean);

      const clash = addressClash(keptNow.identities, other.identities);
      const mergeButton = h('button', { type: 'button', class: 'button button--primary', disabled: Boolean(clash) }, `Merge into ${keptName}`);
      const backButton = h('button', { type: 'button', class: 'button', onClick: () => { confirm.hidden = true; results.hidden = false; input.focus(); } }, 'Back');
      const explanation = clash
        ? [h('p', { id: 'contact-merge-summary', class: 'contact-merge__blocked', role: 'alert' },
          `${otherName} cannot be merged into ${keptName}: both have ${kindPhrase(clash.kind)} `
          + `(${displayAddress(clash.keptValue)} and ${displayAddress(clash.otherValue)}). `
          + 'A contact has one address of each kind, and replies on that kind of channel go to it.')]
        : [h('p', { id: 'contact-merge-summary' }, `Merging moves these from ${otherName} to ${keptName}:`),
          h('ul', { class: 'contact-merge__moves' }, moving.map((line) => h('li', {}, line))),
          h('p', { class: 'contact-panel__hint' }, `${keptName} keeps its name. Each conversation's history records the merge.`)];
      replaceChildren(confirm, ...explanation, h('div', { class: 'contact-panel__actions' }, backButton, mergeButton));

      mergeButton.setAttribute('aria-describedby', 'contact-merge-summary');
      mergeButton.addEventListener('click', async () => {
        mergeButton.disabled = true;
        error.textContent = '';
        try {
          await this.api.mergeContacts(kept.id, other.id);
          dialog.close();
          this.announce(`Merged ${otherName} into ${keptName}.`);
          this.load();
        } catch (failure) {
          error.textContent = `Not merged: ${failure.message}`;
          mergeButton.disabled = false;
        }
      });

      results.hidden = true;
      confirm.hidden = false;
      // A disabled button cannot take focus, so a blocked merge puts it on Back.
      (clash ? backButton : mergeButton).focus();
    };

    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  }
}

/**
 * Return the first address kind that both contacts have, as `{ kind, keptValue, otherValue }`,
 * or null. The server rejects such a merge (422 address_kind_taken), so the dialog blocks it first.
 */
function addressClash(keptIdentities, otherIdentities) {
  const keptByKind = new Map((keptIdentities ?? []).map((identity) => [identity.kind, identity.value]));
  const shared = (otherIdentities ?? []).find((identity) => keptByKind.has(identity.kind));
  return shared ? { kind: shared.kind, keptValue: keptByKind.get(shared.kind), otherValue: shared.value } : null;
}

function kindPhrase(kind) {
  if (kind === 'email') return 'an email address';
  if (kind === 'phone') return 'a phone number';
  return `an address of the kind ${kind}`;
}

function addressList(identities) {
  return (identities ?? []).map((identity) => displayAddress(identity.value)).join(', ');
}

function plural(count, word, many = `${word}s`) {
  return `${count} ${count === 1 ? word : many}`;
}
