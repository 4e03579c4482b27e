// Formatting of times, sizes, names and channel labels for display.

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const CHANNEL_LABELS = { whatsapp: 'WhatsApp', email: 'Email' };

const fullTimestampFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });
const longDateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'long' });
const shortDateFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const shortDateWithYearFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const dayHeadingFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const dayHeadingWithYearFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });

// An ISO-8601 string without "Z" or an offset would be read as local time by Date.parse.
// The API sends UTC, so such a string is read as UTC.
const HAS_ZONE = /(?:Z|[+-]\d{2}:?\d{2})$/i;

/** Parse an API timestamp into epoch milliseconds, or NaN when it is missing or invalid. */
export function parseTimestamp(iso) {
  if (typeof iso !== 'string' || iso === '') return Number.NaN;
  const value = HAS_ZONE.test(iso) || !iso.includes('T') ? iso : `${iso}Z`;
  return Date.parse(value);
}

/** Format a timestamp relative to `now`: "just now", "2 min ago", "3 h ago", "yesterday", "Mar 4". */
export function formatRelative(iso, now = Date.now()) {
  const time = parseTimestamp(iso);
  if (Number.isNaN(time)) return '';

  // A timestamp slightly in the future (client clock behind the server) still reads "just now".
  const elapsed = now - time;
  if (elapsed < 45 * 1000) return 'just now';
  if (elapsed < HOUR) return `${Math.max(1, Math.floor(elapsed / MINUTE))} min ago`;
  if (elapsed < DAY) return `${Math.floor(elapsed / HOUR)} h ago`;

  const days = calendarDaysBetween(time, now);
  if (days <= 1) return 'yesterday';
  if (days < 7) return `${days} days ago`;

  const sameYear = new Date(time).getFullYear() === new Date(now).getFullYear();
  return (sameYear ? shortDateFormat : shortDateWithYearFormat).format(time);
}

/** Format a timestamp in full, in the browser's time zone, for a tooltip. */
export function formatFullTimestamp(iso) {
  const time = parseTimestamp(iso);
  return Number.isNaN(time) ? '' : fullTimestampFormat.format(time);
}

/** Format the calendar date of a timestamp, "December 5, 2026", in the browser's time zone. */
export function formatDate(iso) {
  const time = parseTimestamp(iso);
  return Number.isNaN(time) ? '' : longDateFormat.format(time);
}

/** Return a key that is equal for two timestamps on the same local calendar day. */
export function localDayKey(iso) {
  const date = new Date(parseTimestamp(iso));
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

/** Format the heading of a day in a thread: "Today", "Yesterday" or a full date. */
export function formatDayHeading(iso, now = Date.now()) {
  const time = parseTimestamp(iso);
  if (Number.isNaN(time)) return '';

  const days = calendarDaysBetween(time, now);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';

  const sameYear = new Date(time).getFullYear() === new Date(now).getFullYear();
  return (sameYear ? dayHeadingFormat : dayHeadingWithYearFormat).format(time);
}

function calendarDaysBetween(earlier, later) {
  const start = new Date(earlier);
  const end = new Date(later);
  const startMidnight = new Date(start.getFullYear(), start.getMonth(), start.getDate()).getTime();
  const endMidnight = new Date(end.getFullYear(), end.getMonth(), end.getDate()).getTime();
  // Rounding absorbs the hour gained or lost on a daylight-saving change.
  return Math.round((endMidnight - startMidnight) / DAY);
}

/** Format a byte count as "512 B", "14 KB" or "2.3 MB". */
export function formatFileSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return `${bytes} B`;

  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = value < 10 ? 1 : 0;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** Return the label of a channel kind: "WhatsApp" or "Email". */
export function channelLabel(kind) {
  return CHANNEL_LABELS[kind] ?? kind ?? 'Unknown channel';
}

// In a server snippet the line breaks are already collapsed to spaces, so quoted text is found
// by its markers: the reply header ("On Mon, 3 Mar 2025 at 10:00, Marie <m@example.com> wrote:")
// and the "> " that started each quoted line.
const REPLY_HEADER_END = /\swrote:/;
const REPLY_HEADER_START = /(?:^|\s)On\s/g;
const QUOTE_MARKER = /(?:^|\s)>+(?=\s|$)/g;

/**
 * Remove the quoted earlier thread from an email snippet: everything from an "On … wrote:" header
 * that contains a digit (the date), or else from the first of two or more "> " markers. One lone
 * ">" may be a comparison in the text, so it stays. A snippet that is all quote is returned whole,
 * as the thread view shows such a message unfolded.
 * NOTE: a header cut off by the snippet's length limit, before "wrote:", is not recognised.
 */
export function snippetWithoutQuote(snippet) {
  let cut = -1;
  const headerEnd = snippet.search(REPLY_HEADER_END);
  if (headerEnd !== -1) {
    const starts = [...snippet.slice(0, headerEnd).matchAll(REPLY_HEADER_START)];
    const start = starts.length > 0 ? starts[starts.length - 1].index : -1;
    if (start !== -1 && /\d/.test(snippet.slice(start, headerEnd))) cut = start;
  }
  if (cut === -1) {
    const markers = [...snippet.matchAll(QUOTE_MARKER)];
    if (markers.length >= 2) cut = markers[0].index;
  }
  const body = cut === -1 ? snippet : snippet.slice(0, cut).trim();
  return body || snippet;
}

/** Return a contact address for display, without Twilio's "whatsapp:" prefix. */
export function displayAddress(address) {
  if (typeof address !== 'string') return '';
  return address.replace(/^whatsapp:/i, '');
}

/** Return the name to show for a contact: its name, or its address when it has none. */
export function contactDisplayName(contact) {
  if (!contact) return 'Unknown contact';
  const name = typeof contact.name === 'string' ? contact.name.trim() : '';
  return name || displayAddress(contact.address) || 'Unknown contact';
}

/** Return up to two initials of a name, for an avatar. */
export function initials(name) {
  const words = String(name ?? '')
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  if (words.length === 0) return '?';
  const letters = words.length === 1 ? [words[0][0]] : [words[0][0], words[words.length - 1][0]];
  return letters.join('').toUpperCase();
}

/** Pick one of a fixed set of avatar hues from a numeric id, so a contact keeps its colour. */
export function avatarHue(id) {
  const hues = [212, 262, 330, 24, 170, 140, 195, 290];
  const index = Math.abs(Number(id) || 0) % hues.length;
  return hues[index];
}
