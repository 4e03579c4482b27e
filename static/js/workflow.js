// The conversation workflow in the browser: labels of statuses and priorities, whether a
// conversation belongs to a view, how an activity reads, and the snooze presets.

export const STATUS_LABELS = {
  open: 'Open', pending: 'Pending', snoozed: 'Snoozed', resolved: 'Resolved', closed: 'Merged',
};
export const AGENT_STATUSES = ['open', 'pending', 'snoozed', 'resolved'];
export const PRIORITY_LABELS = { low: 'Low', normal: 'Normal', high: 'High', urgent: 'Urgent' };

const snoozeFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: 'numeric', minute: '2-digit' });

/**
 * True when `conversation` belongs to the view with these list parameters, by the same rules
 * as the server's filter: without a status every status but closed, "me" is `agentId`.
 */
export function matchesView(conversation, params, agentId) {
  if (params.status ? conversation.status !== params.status : conversation.status === 'closed') return false;
  if (params.assignee !== undefined) {
    const assigneeId = conversation.assignee?.id ?? null;
    if (params.assignee === 'me' && assigneeId !== agentId) return false;
    if (params.assignee === 'unassigned' && assigneeId !== null) return false;
    if (/^\d+$/.test(params.assignee) && assigneeId !== Number(params.assignee)) return false;
  }
  if (params.team !== undefined && conversation.team?.id !== Number(params.team)) return false;
  if (params.channel !== undefined && conversation.channel?.id !== Number(params.channel)) return false;
  if (params.priority !== undefined && conversation.priority !== params.priority) return false;
  if (params.label !== undefined && !(conversation.labels ?? []).some((label) => label.id === Number(params.label))) return false;
  return true;
}

/** Format a snooze end time for display: "Mon, 3 Mar, 09:00". */
export function formatSnooze(iso) {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? '' : snoozeFormat.format(time);
}

/** Return the snooze presets from `now`: in 1 hour, tomorrow 09:00, next Monday 09:00. */
export function snoozePresets(now = new Date()) {
  const inOneHour = new Date(now.getTime() + 60 * 60 * 1000);
  const tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 9, 0);
  const daysToMonday = ((8 - now.getDay()) % 7) || 7;
  const nextWeek = new Date(now.getFullYear(), now.getMonth(), now.getDate() + daysToMonday, 9, 0);
  return [
    { label: '1 hour', time: inOneHour },
    { label: 'Tomorrow 9:00', time: tomorrow },
    { label: 'Monday 9:00', time: nextWeek },
  ];
}

/** Return the value of a datetime-local input for a Date, in the browser's time zone. */
export function toLocalInputValue(date) {
  const pad = (value) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Return one sentence that describes what an activity changed and who changed it. */
export function describeActivity(activity) {
  const who = activity.agent?.name ?? null;
  const details = activity.details ?? {};
  switch (activity.action) {
    case 'status':
      return describeStatus(who, details);
    case 'priority':
      return `${who ?? 'Switchboard'} set the priority to ${PRIORITY_LABELS[details.to] ?? details.to}`;
    case 'assignee': {
      let target = 'unassigned this';
      if (details.to) target = details.to.id === activity.agent?.id ? 'assigned this to themselves' : `assigned this to ${details.to.name}`;
      if (details.automatic) return who ? `${who} ${target} automatically` : `Automatically ${target}`;
      return `${who ?? 'Switchboard'} ${target}`;
    }
    case 'team':
      return details.to
        ? `${who ?? 'Switchboard'} moved this to team ${details.to.name}`
        : `${who ?? 'Switchboard'} removed the team`;
    case 'label_added':
      return `${who ?? 'Switchboard'} added the label ${details.label?.name}`;
    case 'label_removed':
      return `${who ?? 'Switchboard'} removed the label ${details.label?.name}`;
    case 'merged_from':
      return `${who ?? 'Switchboard'} merged conversation #${details.conversation_id} into this one (${plural(details.message_count, 'message')})`;
    case 'merged_into':
      return `${who ?? 'Switchboard'} merged this into conversation #${details.conversation_id}`;
    case 'contact_merged': {
      const addresses = (details.merged_identities ?? []).map((identity) => identity.value).join(', ');
      const merged = details.merged_name ? `${details.merged_name} (${addresses})` : addresses || `contact #${details.merged_contact_id}`;
      return `${who ?? 'Switchboard'} merged the contact ${merged} into this customer`;
    }
    default:
      return `${who ?? 'Switchboard'} changed ${activity.action}`;
  }
}

function describeStatus(who, details) {
  const status = STATUS_LABELS[details.to] ?? details.to;
  if (details.reason === 'snooze_ended') return 'The snooze ended, so this is open again';
  if (details.reason === 'customer_message') return `The customer wrote, so this is open again (was ${(STATUS_LABELS[details.from] ?? details.from).toLowerCase()})`;
  if (details.reason === 'reply_failed') return `A reply could not be delivered, so this is open again (was ${(STATUS_LABELS[details.from] ?? details.from).toLowerCase()})`;
  if (details.to === 'snoozed') return `${who ?? 'Switchboard'} snoozed this until ${formatSnooze(details.snoozed_until)}`;
  return `${who ?? 'Switchboard'} set the status to ${status}`;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}
