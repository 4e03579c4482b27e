// JSON client for the Switchboard API under /api/v1.

/** An API request that failed, with the server's error code and message when it sent them. */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export class ApiClient {
  /**
   * @param {object} options
   * @param {string} options.root URL prefix of the API, such as "/api/v1".
   * @param {string} options.csrfToken Token sent in the X-CSRF-Token header of every POST.
   * @param {string} options.loginUrl Page to send the browser to when the session has expired.
   */
  constructor({ root, csrfToken, loginUrl }) {
    this.root = root.replace(/\/$/, '');
    this.csrfToken = csrfToken;
    this.loginUrl = loginUrl;
    this.redirecting = false;
  }

  /** List one page of conversations; `filters` are the view's query parameters ({ status, assignee, … }). */
  listConversations({ limit = 50, cursor = null, filters = {} } = {}) {
    const query = new URLSearchParams({ ...filters, limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/conversations?${query}`);
  }

  countViews() {
    return this.request('GET', '/conversations/counts');
  }

  /** Change one conversation: { status, snoozed_until, priority, assignee_id, team_id, add_labels, remove_labels }. */
  changeConversation(id, changes) {
    return this.request('PATCH', `/conversations/${encodeURIComponent(id)}`, changes);
  }

  /** Change many conversations at once; the server applies the change to all of them or to none. */
  changeConversations(ids, changes) {
    return this.request('POST', '/conversations/bulk', { conversation_ids: ids, changes });
  }

  mergeConversation(id, targetId) {
    return this.request('POST', `/conversations/${encodeURIComponent(id)}/merge`, { target_id: targetId });
  }

  listTeams() {
    return this.request('GET', '/teams');
  }

  listLabels() {
    return this.request('GET', '/labels');
  }

  listAgents() {
    return this.request('GET', '/agents');
  }

  getConversation(id) {
    return this.request('GET', `/conversations/${encodeURIComponent(id)}`);
  }

  /** Queue a reply; with `files` it goes as a multipart form with the files as "attachments". */
  sendMessage(conversationId, text, files = []) {
    let body = { text };
    if (files.length > 0) {
      body = new FormData();
      body.append('text', text);
      for (const file of files) body.append('attachments', file, file.name);
    }
    return this.request('POST', `/conversations/${encodeURIComponent(conversationId)}/messages`, body);
  }

  /** Set a contact's name; null gives the name back to the channel (the WhatsApp profile name). */
  renameContact(contactId, name) {
    return this.request('PATCH', `/contacts/${encodeURIComponent(contactId)}`, { name });
  }

  /** Read a contact's profile: addresses, notes, merges and the first page of conversations. */
  getContact(contactId, { limit = 20 } = {}) {
    return this.request('GET', `/contacts/${encodeURIComponent(contactId)}?limit=${encodeURIComponent(limit)}`);
  }

  listContactConversations(contactId, { cursor = null, limit = 20 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/contacts/${encodeURIComponent(contactId)}/conversations?${query}`);
  }

  searchContacts(text, { limit = 20 } = {}) {
    return this.request('GET', `/contacts?${new URLSearchParams({ q: text, limit: String(limit) })}`);
  }

  /** Change a contact's `name` and/or `notes`; the response contains the id and the changed fields. */
  updateContact(contactId, changes) {
    return this.request('PATCH', `/contacts/${encodeURIComponent(contactId)}`, changes);
  }

  /** Merge contact `otherId` into `contactId`, which is kept. */
  mergeContacts(contactId, otherId) {
    return this.request('POST', `/contacts/${encodeURIComponent(contactId)}/merge`, { other_id: otherId });
  }

  sendTemplate(conversationId, template) {
    return this.request('POST', `/conversations/${encodeURIComponent(conversationId)}/messages`, { template });
  }

  cancelHeld(messageId) {
    return this.request('POST', `/messages/${encodeURIComponent(messageId)}/cancel`);
  }

  sendByEmail(messageId) {
    return this.request('POST', `/messages/${encodeURIComponent(messageId)}/email`);
  }

  listTemplates(channelId, { refresh = false } = {}) {
    const query = refresh ? '?refresh=1' : '';
    return this.request('GET', `/channels/${encodeURIComponent(channelId)}/templates${query}`);
  }

  markRead(conversationId) {
    return this.request('POST', `/conversations/${encodeURIComponent(conversationId)}/read`);
  }

  /**
   * Send one request and return the decoded JSON body (null for 204).
   * Throws ApiError on a network failure or a 4xx/5xx response. A 401 also sends the browser
   * to the login page, with the current page as the place to return to.
   */
  async request(method, path, body = undefined) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin' };
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = this.csrfToken;
    if (body instanceof FormData) {
      init.body = body; // the browser sets the multipart Content-Type with its boundary
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }

    let response;
    try {
      response = await fetch(`${this.root}${path}`, init);
    } catch {
      throw new ApiError(0, 'network_error', 'Could not reach the server. Check the connection and try again.');
    }

    if (response.status === 401) {
      this.redirectToLogin();
      throw new ApiError(401, 'unauthorized', 'The session has expired. Redirecting to the sign-in page…');
    }
    if (response.status === 204) return null;

    const data = await readJson(response);
    if (!response.ok) {
      const error = data && typeof data.error === 'object' ? data.error : null;
      const failure = new ApiError(
        response.status,
        error?.code ?? `http_${response.status}`,
        error?.message ?? `The server returned ${response.status} ${response.statusText}.`.replace(' .', '.'),
        error?.field ?? null,
      );
      // A rejected bulk change lists the reason of every conversation that could not take it.
      failure.items = Array.isArray(error?.items) ? error.items : [];
      // The whole error object, for errors that carry more, such as stale_reply's messages.
      failure.details = error ?? {};
      throw failure;
    }
    return data;
  }

  redirectToLogin() {
    if (this.redirecting) return;
    this.redirecting = true;
    const next = `${window.location.pathname}${window.location.search}${window.location.hash}`;
    window.location.assign(`${this.loginUrl}?next=${encodeURIComponent(next)}`);
  }
}

async function readJson(response) {
  const type = response.headers.get('Content-Type') ?? '';
  if (!type.includes('json')) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}
