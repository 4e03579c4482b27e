// API calls for working together: notes, @mentions, canned responses and replies that carry
// the newest message the agent had seen. They go through the inbox's ApiClient.

/** Add an internal note; @mentions in `text` notify the agents named. */
export function addNote(api, conversationId, text) {
  return api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/notes`, { text });
}

/**
 * Queue a reply that the server holds back (409 stale_reply) when messages newer than
 * `seenMessageId` arrived, unless `confirmStale` is true. Without `seenMessageId` there is no check.
 */
export function sendCheckedReply(api, conversationId, text, files, { seenMessageId = null, confirmStale = false } = {}) {
  let body = { text };
  if (seenMessageId !== null) body.seen_message_id = seenMessageId;
  if (confirmStale) body.confirm_stale = true;
  if (files.length > 0) {
    const form = new FormData();
    for (const [name, value] of Object.entries(body)) form.append(name, String(value));
    for (const file of files) form.append('attachments', file, file.name);
    body = form;
  }
  return api.request('POST', `/conversations/${encodeURIComponent(conversationId)}/messages`, body);
}

export function listMentions(api, { unreadOnly = false } = {}) {
  return api.request('GET', `/mentions${unreadOnly ? '?unread=1' : ''}`);
}

/** Mark mentions read: the given ids, or with none every unread mention. */
export function markMentionsRead(api, mentionIds = null) {
  return api.request('POST', '/mentions/read', mentionIds ? { mention_ids: mentionIds } : {});
}

/** List the shared and personal canned responses; with a conversation each carries `rendered`. */
export function listCannedResponses(api, conversationId = null) {
  const query = conversationId === null ? '' : `?conversation_id=${encodeURIComponent(conversationId)}`;
  return api.request('GET', `/canned-responses${query}`);
}

export function saveCannedResponse(api, id, fields) {
  return id === null
    ? api.request('POST', '/canned-responses', fields)
    : api.request('PATCH', `/canned-responses/${encodeURIComponent(id)}`, fields);
}

export function deleteCannedResponse(api, id) {
  return api.request('DELETE', `/canned-responses/${encodeURIComponent(id)}`);
}

export function getMe(api) {
  return api.request('GET', '/me');
}
