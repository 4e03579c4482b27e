// The proactive update log page: reads /api/v1/proactive/sends with the form's filter, newest first.

import { h } from './dom.js';

const root = document.querySelector('main[data-api]');
const form = document.getElementById('log-filters');
const rows = document.getElementById('log-rows');
const status = document.getElementById('log-status');
const errorBox = document.getElementById('log-error');
const moreButton = document.getElementById('log-more');

// The inbox opens a conversation named in its hash (#conversation=<id>).
const inboxUrl = root.dataset.inbox;
let nextCursor = null;

// The message's delivery status in the words of the conversation's thread (message-view.js).
const DELIVERY_LABELS = {
  queued: 'Queued',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  undelivered: 'Not delivered',
  failed: 'Failed to send',
};

/** Return the form's non-empty fields as query parameters. */
function filterParams() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (String(value).trim()) params.set(name, String(value).trim());
  }
  return params;
}

/** Show the API's times as "2026-12-05 14:03:00", which the header labels as UTC. */
function formatTime(value) {
  return value ? value.slice(0, 19).replace('T', ' ') : '–';
}

/** Return the ids of deleted templates, which the template menu marks. */
function deletedTemplateIds() {
  const options = [...form.elements.template_id.options];
  return new Set(options.filter((option) => option.dataset.deleted !== undefined).map((option) => option.value));
}

function renderRow(send, deleted) {
  const name = deleted.has(String(send.template.id)) ? `${send.template.name} (deleted)` : send.template.name;
  return h('tr', {},
    h('td', {}, formatTime(send.created_at)),
    h('td', { title: `Template ${send.template.id}` }, name),
    h('td', {}, send.trigger.replaceAll('_', ' ')),
    h('td', {}, h('a', { href: `${inboxUrl}#conversation=${send.conversation_id}` }, `#${send.conversation_id}`)),
    h('td', {}, send.channel === 'email' ? 'Email' : 'WhatsApp'),
    h('td', { class: `result--${send.result}` }, send.result),
    h('td', { class: 'log-delivery' },
      send.delivery_status ? DELIVERY_LABELS[send.delivery_status] ?? send.delivery_status : ''),
    h('td', {}, send.reason || send.delivery_error || ''),
    h('td', {}, send.scheduled_for ? formatTime(send.scheduled_for) : ''),
  );
}

/** Load one page; `append` keeps the rows shown so far (the "Show older" button). */
async function load({ append }) {
  const params = filterParams();
  if (append && nextCursor) params.set('cursor', nextCursor);
  errorBox.hidden = true;
  status.textContent = 'Loading…';
  let body;
  try {
    const response = await fetch(`${root.dataset.api}?${params}`, {
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
    });
    body = await response.json();
    if (!response.ok) throw new Error(body?.error?.message || `The log could not be read (HTTP ${response.status}).`);
  } catch (error) {
    status.textContent = '';
    errorBox.textContent = error.message;
    errorBox.hidden = false;
    return;
  }
  if (!append) rows.replaceChildren();
  const deleted = deletedTemplateIds();
  rows.append(...body.items.map((send) => renderRow(send, deleted)));
  nextCursor = body.next_cursor;
  moreButton.hidden = !nextCursor;
  const shown = rows.childElementCount;
  status.textContent = shown === 0 ? 'No updates match this filter.' : `${shown} update${shown === 1 ? '' : 's'} shown.`;
}

/**
 * Fill the form from the page's address, so a filtered log can be bookmarked, shared and
 * reloaded. A value that a menu does not offer (a mistyped link, a template that never sent
 * anything) is added to it, so the log is filtered by it and reports what matched, or shows the
 * API's error, instead of quietly showing everything.
 */
function restoreFilter() {
  const params = new URLSearchParams(window.location.search);
  for (const field of form.elements) {
    if (!field.name) continue;
    const value = params.get(field.name) ?? '';
    if (field.tagName === 'SELECT' && ![...field.options].some((option) => option.value === value)) {
      field.append(new Option(field.name === 'template_id' ? `Template ${value}` : value, value));
    }
    field.value = value;
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const query = filterParams().toString();
  // A new history entry, so Back returns to the previous filter.
  window.history.pushState(null, '', query ? `?${query}` : window.location.pathname);
  load({ append: false });
});
window.addEventListener('popstate', () => {
  restoreFilter();
  load({ append: false });
});
moreButton.addEventListener('click', () => load({ append: true }));
restoreFilter();
load({ append: false });
