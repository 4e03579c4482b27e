// Unsent replies and notes, one per conversation. Each draft is also written to the tab's
// sessionStorage, so a reload or a trip through the sign-in page (an expired sign-in, a disabled
// account) does not lose it. sessionStorage belongs to one tab and is gone when the tab closes.

const KEY_PREFIX = 'switchboard.draft';

export class DraftStore {
  /**
   * @param {number|null} agentId The signed-in agent. Drafts are kept per agent, so another agent
   *   who signs in in the same tab does not get them.
   * @param {Storage|null} storage Where drafts outlive the page; null keeps them in memory only.
   */
  constructor(agentId, storage = sessionStorageOrNull()) {
    this.prefix = `${KEY_PREFIX}.${agentId}.`;
    this.storage = agentId === null ? null : storage;
    // Conversation id → {text, note, seenMessageId}, also when the storage rejected a write.
    this.memory = new Map();
  }

  /** Return the draft of a conversation as {text, note, seenMessageId}, or undefined. */
  get(conversationId) {
    if (!this.memory.has(conversationId)) {
      const stored = this.read(conversationId);
      if (stored) this.memory.set(conversationId, stored);
    }
    return this.memory.get(conversationId);
  }

  /**
   * Keep `draft` for a conversation.
   * @param {number} conversationId
   * @param {{text: string, note: boolean, seenMessageId: ?number}} draft The text, whether it is
   *   an internal note, and the newest message on screen when the agent started it.
   */
  set(conversationId, draft) {
    this.memory.set(conversationId, draft);
    try {
      this.storage?.setItem(this.prefix + conversationId, JSON.stringify(draft));
    } catch {
      // NOTE: a full or disabled storage keeps the draft for this page only.
    }
  }

  delete(conversationId) {
    this.memory.delete(conversationId);
    try {
      this.storage?.removeItem(this.prefix + conversationId);
    } catch {
      // A storage that the browser does not allow contains nothing to remove.
    }
  }

  read(conversationId) {
    let value;
    try {
      value = JSON.parse(this.storage?.getItem(this.prefix + conversationId) ?? 'null');
    } catch {
      return undefined;
    }
    if (typeof value?.text !== 'string' || !value.text.trim()) return undefined;
    return {
      text: value.text,
      note: value.note === true,
      seenMessageId: Number.isInteger(value.seenMessageId) ? value.seenMessageId : null,
    };
  }
}

/** Remove the drafts of every agent from the tab's sessionStorage, when someone signs out on purpose. */
export function forgetSavedDrafts(storage = sessionStorageOrNull()) {
  if (!storage) return;
  try {
    const keys = [];
    for (let index = 0; index < storage.length; index += 1) {
      const key = storage.key(index);
      if (key?.startsWith(`${KEY_PREFIX}.`)) keys.push(key);
    }
    keys.forEach((key) => storage.removeItem(key));
  } catch {
    // A storage that the browser does not allow contains nothing to remove.
  }
}

/** Return the tab's sessionStorage, or null where the browser does not allow it (blocked site data). */
function sessionStorageOrNull() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}
