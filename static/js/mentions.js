// @mentions in note text, found the way the server finds them (inbox/mentions.py): "@" and an
// agent's full name or email local part, any case, the longest match first. A handle that
// several agents share is not a mention.

const HANDLE_CHARACTER = /[\p{L}\p{N}_.+-]/u;
const WORD_CHARACTER = /[\p{L}\p{N}_]/u;

/** Return the handles of an agent ({name, email}): the name with single spaces, and the email's local part. */
export function handlesOf(agent) {
  const handles = [];
  const name = typeof agent.name === 'string' ? agent.name.trim().split(/\s+/).join(' ') : '';
  if (name) handles.push(name);
  const at = typeof agent.email === 'string' ? agent.email.lastIndexOf('@') : -1;
  if (at > 0) handles.push(agent.email.slice(0, at));
  return handles;
}

/**
 * Return the mentions in `text`, in order: [{agentId, start, end}] where text.slice(start, end)
 * is "@handle". `agents` are {id, name, email}.
 */
export function findMentions(text, agents) {
  const owners = new Map();
  for (const agent of agents) {
    for (const handle of handlesOf(agent)) {
      const key = handle.toLowerCase();
      if (!owners.has(key)) owners.set(key, new Set());
      owners.get(key).add(agent.id);
    }
  }
  const patterns = [...owners.keys()]
    .sort((a, b) => b.length - a.length)
    .map((handle) => ({
      handle,
      pattern: new RegExp(handle.split(' ').map(escapeRegExp).join('\\s+'), 'iuy'),
    }));

  const found = [];
  let position = 0;
  for (;;) {
    const at = text.indexOf('@', position);
    if (at === -1) break;
    position = at + 1;
    if (at > 0 && WORD_CHARACTER.test(text[at - 1])) continue;
    for (const { handle, pattern } of patterns) {
      pattern.lastIndex = at + 1;
      const match = pattern.exec(text);
      if (!match || !endsHandle(text, at + 1 + match[0].length)) continue;
      const ids = owners.get(handle);
      if (ids.size === 1) {
        const end = at + 1 + match[0].length;
        found.push({ agentId: [...ids][0], start: at, end });
        position = end;
      }
      break;
    }
  }
  return found;
}

function endsHandle(text, end) {
  if (end >= text.length || !HANDLE_CHARACTER.test(text[end])) return true;
  if ('.-+'.includes(text[end])) return end + 1 >= text.length || !HANDLE_CHARACTER.test(text[end + 1]);
  return false;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Return the "@…" being typed just before `caret` in `text`, as {start, query}, or null. The
 * query may contain one space followed by more text, so "@Ada Lo" still completes a full name.
 */
export function mentionQueryAt(text, caret) {
  const before = text.slice(0, caret);
  const match = /(^|[^\p{L}\p{N}_])@([\p{L}\p{N}_.+-]*(?: [\p{L}\p{N}_.+-]+)?)$/u.exec(before);
  if (!match) return null;
  return { start: match.index + match[1].length, query: match[2] };
}

/**
 * Return the agents whose name or email local part starts with `query` (any case), or whose name
 * has a word starting with it, best matches first.
 */
export function matchAgents(query, agents, limit = 8) {
  const wanted = query.trim().toLowerCase();
  const scored = [];
  for (const agent of agents) {
    const [name = '', local = ''] = [agent.name ?? '', (agent.email ?? '').split('@')[0]].map((value) => value.toLowerCase());
    let score = -1;
    if (!wanted || name.startsWith(wanted) || local.startsWith(wanted)) score = 0;
    else if (name.split(/\s+/).some((word) => word.startsWith(wanted))) score = 1;
    if (score >= 0) scored.push({ agent, score });
  }
  scored.sort((a, b) => a.score - b.score || (a.agent.name ?? '').localeCompare(b.agent.name ?? ''));
  return scored.slice(0, limit).map((entry) => entry.agent);
}

/** Return the handle to insert for `agent`: the full name when no other agent has it, else the email local part. */
export function preferredHandle(agent, agents) {
  const name = (agent.name ?? '').trim().split(/\s+/).join(' ');
  const local = (agent.email ?? '').split('@')[0];
  if (!name) return local;
  const clash = agents.some((other) => other.id !== agent.id && (other.name ?? '').trim().toLowerCase() === name.toLowerCase());
  return clash && local ? local : name;
}
