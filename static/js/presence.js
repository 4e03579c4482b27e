// The other agents online, shown in the top bar as small avatars with their names in a tooltip.

import { h, replaceChildren } from './dom.js';
import { avatarHue, initials } from './format.js';

// More agents than this show as a "+N" counter after the avatars.
const MAX_AVATARS = 3;

/**
 * Show `agents` ({ id, name }, without the signed-in agent) in `container`, or hide it when
 * nobody else is online.
 */
export function renderOnlineAgents(container, agents) {
  if (agents.length === 0) {
    container.hidden = true;
    container.removeAttribute('title');
    container.replaceChildren();
    return;
  }

  const sorted = [...agents].sort((a, b) => a.name.localeCompare(b.name));
  const names = sorted.map((agent) => agent.name).join(', ');
  const count = sorted.length === 1 ? '1 other agent' : `${sorted.length} other agents`;
  const hidden = sorted.length - MAX_AVATARS;

  container.hidden = false;
  container.title = `Online now: ${names}`;
  replaceChildren(container,
    h('span', { class: 'presence__avatars', 'aria-hidden': 'true' },
      sorted.slice(0, MAX_AVATARS).map((agent) => presenceAvatar(agent)),
      hidden > 0 ? h('span', { class: 'presence__more' }, `+${hidden}`) : null),
    h('span', { class: 'visually-hidden' }, `${count} online: ${names}`));
}

function presenceAvatar(agent) {
  const avatar = h('span', { class: 'avatar avatar--contact avatar--presence' }, initials(agent.name));
  avatar.style.setProperty('--avatar-hue', String(avatarHue(agent.id)));
  return avatar;
}
