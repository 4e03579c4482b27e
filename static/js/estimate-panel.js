// The open conversation's estimate in the thread header: its queue position and the expected
// first-response and resolution times, read from GET /conversations/{id}/estimate.

import { h, replaceChildren } from './dom.js';

// The estimate changes slowly, so the header reads it again after a minute at the soonest,
// or at once when the conversation's status, priority, team or assignee changes.
const REFRESH_MS = 60_000;

export class EstimatePanel {
  /** @param {string} apiRoot URL prefix of the API, such as "/api/v1". */
  constructor(apiRoot) {
    this.apiRoot = apiRoot.replace(/\/$/, '');
    this.element = h('dl', { class: 'thread__estimate', 'aria-label': 'Estimate', hidden: true });
    this.key = null;
    this.loadedAt = 0;
    this.sequence = 0;
  }

  /** Show the estimate of `conversation`, reading it again only when it may have changed. */
  show(conversation) {
    const key = [conversation.id, conversation.status, conversation.priority, conversation.team?.id,
      conversation.assignee?.id].join(':');
    if (key === this.key && Date.now() - this.loadedAt < REFRESH_MS) return;
    if (this.key?.split(':')[0] !== String(conversation.id)) this.element.hidden = true;
    this.key = key;
    this.loadedAt = Date.now();
    const sequence = ++this.sequence;
    fetch(`${this.apiRoot}/conversations/${encodeURIComponent(conversation.id)}/estimate`, {
      headers: { Accept: 'application/json' }, credentials: 'same-origin',
    })
      .then((response) => (response.ok ? response.json() : null))
      .catch(() => null)
      // A slower response for a conversation the agent has left must not overwrite the newer one.
      .then((estimate) => { if (sequence === this.sequence) this.render(estimate); });
  }

  render(estimate) {
    if (!estimate || (estimate.queue_position === 0 && !estimate.first_response && !estimate.resolution)) {
      this.element.hidden = true;
      return;
    }
    const history = estimate.basis === 'team' ? "the team's" : "the workspace's";
    this.element.title = estimate.basis
      ? `Estimated from ${history} history of up to 4 weeks (${estimate.samples} conversations)`
      : 'Too little history for estimated times';
    replaceChildren(this.element,
      estimate.queue_position > 0
        ? item('Queue position', `${estimate.queue_position}${estimate.queue_position === 1 ? ' (next)' : ''}`)
        : null,
      estimate.first_response ? item('First reply', `in ${estimate.first_response.text}`) : null,
      estimate.resolution ? item('Resolution', `in ${estimate.resolution.text}`) : null);
    this.element.hidden = false;
  }
}

function item(term, value) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, value));
}
