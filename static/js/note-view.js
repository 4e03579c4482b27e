// One internal note in the thread: styled apart from customer messages, with @mentions marked.

import { h } from './dom.js';
import { formatFullTimestamp, formatRelative } from './format.js';
import { findMentions } from './mentions.js';

/**
 * Create the element of `note` ({id, author, text, mentions, created_at}). `agents` ({id, name,
 * email}) are the agents whose @mentions are marked; the note's own `mentions` are always among them.
 */
export function renderNote(note, agents) {
  const author = note.author?.name || 'An agent';
  const known = new Map(agents.map((agent) => [agent.id, agent]));
  for (const agent of note.mentions ?? []) if (!known.has(agent.id)) known.set(agent.id, agent);

  return h('div', { class: 'message-row message-row--note' },
    h('article', {
      id: `note-${note.id}`,
      class: 'note',
      'aria-label': `Internal note from ${author}, ${formatRelative(note.created_at)}`,
    },
    h('header', { class: 'note__meta' },
      h('span', { class: 'note__badge' }, 'Internal note'),
      h('span', { class: 'note__author', title: author }, author),
      h('time', {
        class: 'note__time',
        datetime: note.created_at,
        title: formatFullTimestamp(note.created_at),
        dataset: { relative: '' },
      }, formatRelative(note.created_at))),
    h('p', { class: 'note__text' }, markMentions(note.text, [...known.values()])),
    h('p', { class: 'visually-hidden' }, 'Only agents see this note.')));
}

/** Return `text` as text nodes with each mention of a known agent in a <mark>. */
function markMentions(text, agents) {
  const parts = [];
  let position = 0;
  for (const mention of findMentions(text, agents)) {
    if (mention.start > position) parts.push(text.slice(position, mention.start));
    parts.push(h('mark', { class: 'note__mention' }, text.slice(mention.start, mention.end)));
    position = mention.end;
  }
  if (position < text.length) parts.push(text.slice(position));
  return parts;
}
