// Rendering of one message in a thread: author, channel, time, body, attachments, delivery status.

import { h, icon, replaceChildren } from './dom.js';
import { channelBadge } from './conversation-list.js';
import { contactDisplayName, formatFileSize, formatFullTimestamp, formatRelative } from './format.js';

const STATUS_VIEW = {
  queued: { label: 'Queued', icon: 'clock', tone: 'muted' },
  sent: { label: 'Sent', icon: 'check', tone: 'muted' },
  delivered: { label: 'Delivered', icon: 'checks', tone: 'muted' },
  read: { label: 'Read', icon: 'checks', tone: 'accent' },
  undelivered: { label: 'Not delivered', icon: 'alert', tone: 'danger' },
  failed: { label: 'Failed to send', icon: 'alert', tone: 'danger' },
};

// Inbound mail that a machine sent. The server never answers such mail automatically.
const AUTOMATIC_VIEW = {
  auto_reply: { label: 'Auto-reply', title: 'Sent automatically, for example an out-of-office reply' },
  bounce: { label: 'Bounce', title: 'A mail server returned a message as undeliverable' },
  proactive: { label: 'Automatic update', title: 'Sent by a proactive update template, not by an agent' },
};

// Hover text of each threading rule (the message's thread_reason) that placed an inbound message.
const THREAD_REASON_TITLE = {
  in_reply_to: 'Threaded by In-Reply-To',
  references: 'Threaded by References',
  reply_to_token: 'Threaded by the conversation address in our Reply-To',
  subject_reference: 'Threaded by the [#id] reference in the subject',
  thread_index: "Threaded by Outlook's Thread-Index",
  new: 'Started a new conversation',
  reopened: 'Reopened this resolved conversation',
  whatsapp_open: 'Joined the open WhatsApp conversation',
  whatsapp_new: 'Started a new WhatsApp conversation',
  bounce: 'Returned mail of a reply in this conversation',
  reaction: 'A reaction to a message in this conversation',
};

// WhatsApp content beside the text (message.content.type): the label of its badge.
const CONTENT_LABELS = {
  location: 'Location',
  contacts: 'Contact card',
  button: 'Button reply',
  list: 'List choice',
  reaction: 'Reaction',
};

// Raster formats that an <img> shows as a thumbnail. SVG attachments stay download links.
const THUMBNAIL_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

// An email frame grows to fit its document up to this height, and scrolls inside beyond it.
const MAX_FRAME_HEIGHT_PX = 1600;

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]}]/gi;

// Styles of the email document inside the sandboxed frame. Emails are written for a light page,
// so the frame stays light in dark mode too.
const FRAME_STYLE = `
  html { color-scheme: light; }
  body > :first-child { margin-top: 0; }
  body > :last-child { margin-bottom: 0; }
  body { margin: 0; padding: 12px 14px; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: #1d2330; background: #fff; overflow-wrap: anywhere; }
  img { max-width: 100%; height: auto; }
  table { max-width: 100%; }
  pre { white-space: pre-wrap; }
  blockquote { margin: 8px 0; padding-left: 12px; border-left: 3px solid #d5d9e0; color: #5f6b7a; }
  a { color: #3b3fd8; }
  .remote-image { display: inline-block; padding: 2px 6px; border: 1px dashed #c4c9d2; border-radius: 4px;
                  color: #5f6b7a; font-size: 12px; }
`;

// The status line of a held WhatsApp reply, by its held.reason.
const HELD_TEXT = {
  outside_window: 'Held until the customer writes',
  window_error: 'Held until the customer writes: WhatsApp refused it outside the 24-hour window',
};

/**
 * Create the element of one message.
 * @param {object} message Message as the API returns it.
 * @param {object} conversation The conversation the message belongs to, for the contact's name.
 * @param {object} actions Handlers of the buttons on a reply's status line, each given the message id.
 * @param {(messageId: number) => void} [actions.onCancelHeld] Cancel a held WhatsApp reply.
 * @param {(messageId: number) => void} [actions.onSendByEmail] Resend a failed WhatsApp reply by email.
 */
export function renderMessage(message, conversation, actions = {}) {
  const outbound = message.direction === 'outbound';
  const author = authorName(message, conversation);

  const statusSlot = h('div', { class: 'message__status' });
  const satisfaction = satisfactionLabel(message.satisfaction);
  const low = satisfaction !== null && message.satisfaction.low === true;
  const article = h('article', {
    id: `message-${message.id}`,
    class: `message message--${outbound ? 'outbound' : 'inbound'}${low ? ' message--low-satisfaction' : ''}`,
    'aria-label': `${outbound ? 'Reply' : 'Message'} from ${author}, ${formatRelative(message.created_at)}`
      + (satisfaction ? `, ${satisfaction}` : ''),
  },
  h('header', { class: 'message__meta' },
    h('span', {
      class: 'message__author',
      title: THREAD_REASON_TITLE[message.thread_reason] ?? AUTOMATIC_VIEW[message.automatic]?.title ?? author,
    }, author),
    channelBadge(message.channel_kind, 'channel-badge--small'),
    // An update without an author already has the badge's label as its name, so no badge repeats it.
    author === AUTOMATIC_VIEW[message.automatic]?.label ? null : automaticBadge(message.automatic),
    contentBadge(message.content),
    satisfaction === null ? null : h('span', {
      class: `satisfaction-badge${low ? ' satisfaction-badge--low' : ''}`,
      title: 'The customer\'s answer to the satisfaction question sent when the conversation was resolved',
    }, satisfaction),
    h('time', {
      class: 'message__time',
      datetime: message.created_at,
      title: formatFullTimestamp(message.created_at),
      dataset: { relative: '' },
    }, formatRelative(message.created_at))),
  h('div', { class: 'message__bubble' },
    renderReplyQuote(message.reply_to),
    message.subject && message.channel_kind === 'email'
      ? h('p', { class: 'message__subject' }, h('span', { class: 'visually-hidden' }, 'Subject: '), message.subject)
      : null,
    renderBody(message),
    renderAttachments(message.attachments)),
  renderReactions(message.reactions),
  statusSlot);

  const row = h('div', { class: `message-row message-row--${outbound ? 'outbound' : 'inbound'}` }, article);
  row.statusSlot = statusSlot;
  row.actions = actions;
  updateMessageStatus(row, message);
  return row;
}

/**
 * Create the warning line for a thread header when mail to the contact's address bounced, or
 * return null when the address is not marked failing.
 * @param {object} conversation Conversation as the API returns it.
 */
export function renderFailingAddressWarning(conversation) {
  const failing = conversation?.contact?.failing;
  if (!failing) return null;
  const since = formatFullTimestamp(failing.since);
  return h('p', { class: 'thread__warning', role: 'note', title: since ? `Failing since ${since}` : '' },
    icon('alert'),
    h('span', {}, `Mail to this address bounced${failing.reason ? `: ${failing.reason}` : '.'}`));
}

/**
 * Return the words for a satisfaction answer ("Low rating: 2 of 5", "Answered yes"), or null
 * for a message that is no answer. A low answer is a rating under 4 or a no.
 */
function satisfactionLabel(answer) {
  if (!answer || !Number.isInteger(answer.score)) return null;
  if (answer.kind === 'rating') return `${answer.low ? 'Low rating' : 'Rating'}: ${answer.score} of 5`;
  if (answer.kind === 'yes_no') return answer.score ? 'Answered yes' : 'Answered no';
  return null;
}

function contentBadge(content) {
  const label = CONTENT_LABELS[content?.type];
  if (!label) return null;
  let title = '';
  if (content.type === 'button' && content.payload) title = `Button id: ${content.payload}`;
  if (content.type === 'list' && content.id) title = `Item id: ${content.id}`;
  return h('span', { class: `content-badge content-badge--${content.type}`, title: title || null }, label);
}

/**
 * Create the quote of the message that this one replies or reacts to: a link that scrolls to
 * it when it is in this thread, or null without one.
 */
function renderReplyQuote(replyTo) {
  if (!replyTo || typeof replyTo !== 'object' || !Number.isInteger(replyTo.id)) return null;
  const quoted = replyTo.direction === 'outbound' ? 'your reply' : 'an earlier message';
  return h('a', {
    class: 'message__quote',
    href: `#message-${replyTo.id}`,
    title: `Replying to ${quoted}`,
    onClick: (event) => {
      const target = document.getElementById(`message-${replyTo.id}`);
      if (!target) return; // in an older conversation: the link has nowhere to go
      event.preventDefault();
      target.scrollIntoView({ block: 'center', behavior: 'smooth' });
      target.classList.add('message--highlight');
      window.setTimeout(() => target.classList.remove('message--highlight'), 1600);
    },
  },
  h('span', { class: 'visually-hidden' }, `Replying to ${quoted}: `),
  replyTo.snippet || '(no text)');
}

/** Create the customer's reactions under a message, from the thread's folded reaction messages. */
function renderReactions(reactions) {
  if (!Array.isArray(reactions) || reactions.length === 0) return null;
  return h('p', { class: 'message__reactions', 'aria-label': `Reactions: ${reactions.join(' ')}` },
    reactions.map((emoji) => h('span', { class: 'reaction' }, emoji)));
}

function automaticBadge(kind) {
  const view = AUTOMATIC_VIEW[kind];
  if (!view) return null;
  return h('span', { class: `automatic-badge automatic-badge--${kind}`, title: view.title }, view.label);
}

/**
 * Create the warning line for a thread header when the contact opted out of proactive messages,
 * or return null when they did not.
 * @param {object} conversation Conversation as the API returns it.
 */
export function renderOptOutNote(conversation) {
  const optedOut = conversation?.contact?.opted_out;
  if (!optedOut) return null;
  const since = formatFullTimestamp(optedOut.since);
  return h('p', { class: 'thread__warning thread__opt-out', role: 'note', title: since ? `Opted out ${since}` : '' },
    icon('alert'),
    h('span', {}, `Opted out: wrote ${optedOut.keyword || 'STOP'}, so no template goes to them after the 24-hour window. Replies still go out.`));
}

/** Redraw the delivery status of a message element made by renderMessage. */
export function updateMessageStatus(row, message) {
  const outbound = message.direction === 'outbound';
  const view = outbound ? STATUS_VIEW[message.delivery_status] : null;
  const failed = view?.tone === 'danger';
  const retry = message.delivery_status === 'queued' ? retryView(message.retry) : null;
  const held = outbound && message.held ? message.held : null;
  row.classList.toggle('message-row--failed', failed && !held);
  row.classList.toggle('message-row--retrying', retry !== null);
  row.classList.toggle('message-row--held', held !== null);

  if (held) {
    row.statusSlot.hidden = false;
    replaceChildren(row.statusSlot, renderHeld(message, held, row.actions));
    return;
  }
  if (outbound && message.cancelled) {
    row.statusSlot.hidden = false;
    replaceChildren(row.statusSlot, h('span', { class: 'delivery delivery--muted' }, 'Cancelled, not sent'));
    return;
  }

  if (!view) {
    row.statusSlot.replaceChildren();
    row.statusSlot.hidden = true;
    return;
  }

  row.statusSlot.hidden = false;
  if (retry) {
    // The queued reply failed at least once and waits for its next attempt.
    replaceChildren(row.statusSlot,
      h('p', { class: 'message__retry', title: retry.title }, icon('refresh'), h('span', {}, retry.text)));
    return;
  }
  replaceChildren(row.statusSlot,
    h('span', { class: `delivery delivery--${view.tone}` }, icon(view.icon), view.label),
    renderParts(message.parts),
    failed
      ? h('p', { class: 'message__error' }, message.error || 'The provider gave no reason.')
      : null,
    failed ? renderEmailFallback(message, row.actions) : null);
}

function renderHeld(message, held, actions) {
  const since = formatFullTimestamp(held.since);
  return h('p', { class: 'message__held', title: [since && `Held since ${since}`, message.error].filter(Boolean).join('. ') },
    icon('clock'),
    h('span', {}, HELD_TEXT[held.reason] ?? 'Held until the customer writes'),
    actions?.onCancelHeld
      ? h('button', {
        type: 'button',
        class: 'link-button',
        // The inbox announces a failure, and the reply stays held.
        onClick: () => Promise.resolve(actions.onCancelHeld(message.id)).catch(() => {}),
      }, 'Cancel')
      : null);
}

// A failed WhatsApp reply: the button that resends it by email, or the note that it was.
function renderEmailFallback(message, actions) {
  const fallback = message.email_fallback;
  if (!fallback) return null;
  if (fallback.message_id) return h('p', { class: 'message__fallback' }, icon('email'), 'Resent by email');
  if (!fallback.available || !actions?.onSendByEmail) return null;
  return h('button', {
    type: 'button',
    class: 'button button--small message__fallback-button',
    onClick: (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      // On success the message.updated event replaces the button with the note.
      Promise.resolve(actions.onSendByEmail(message.id)).catch(() => { button.disabled = false; });
    },
  }, icon('email'), 'Deliver by email');
}

/** Create the list of a reply's parts and their states, or null for a reply sent in one piece. */
function renderParts(parts) {
  if (!Array.isArray(parts) || parts.length < 2) return null;
  return h('span', { class: 'message__parts' },
    `in ${parts.length} parts: `,
    parts.map((part, index) => {
      const view = STATUS_VIEW[part.delivery_status] ?? STATUS_VIEW.queued;
      return h('span', {
        class: `message__part delivery--${view.tone}`,
        title: part.error || `Part ${index + 1}: ${view.label}`,
      }, `${index + 1} ${view.label.toLowerCase()}`, index < parts.length - 1 ? ' · ' : '');
    }));
}

/** Return a key that changes when the delivery status of a message changes. */
export function statusSignature(message) {
  return JSON.stringify([
    message.delivery_status ?? '', message.error ?? '', message.retry ?? null,
    message.held ?? null, Boolean(message.cancelled), message.email_fallback ?? null,
    (message.parts ?? []).map((part) => [part.delivery_status, part.error]),
  ]);
}

/**
 * Return the text and tooltip of a reply's pending retry, or null when there is none.
 * `retry.attempts` counts the failed attempts, so the attempt that is waiting is one more.
 */
function retryView(retry) {
  if (!retry || typeof retry !== 'object' || !Number.isInteger(retry.attempts)) return null;
  const reason = typeof retry.last_error === 'string' ? retry.last_error.trim() : '';
  const next = formatFullTimestamp(retry.next_attempt_at);
  return {
    text: `Retrying (attempt ${retry.attempts + 1})${reason ? ` — ${reason}` : ''}`,
    title: next ? `Next attempt: ${next}` : 'Waiting for the next attempt',
  };
}

/** Return a key that changes when anything but the delivery status of a message changes,
 * including an attachment's download finishing. */
export function bodySignature(message) {
  return JSON.stringify([
    message.subject, message.text, message.html, message.created_at, message.author?.name,
    (message.attachments ?? []).map((attachment) => [attachment.id, attachment.status]),
    message.reply_to?.id ?? null, message.reactions ?? [], message.satisfaction ?? null,
  ]);
}

function authorName(message, conversation) {
  if (message.author?.name) return message.author.name;
  if (message.direction === 'inbound') return contactDisplayName(conversation?.contact);
  // The scheduler sends proactive updates with no agent behind them.
  if (message.automatic === 'proactive') return 'Automatic update';
  return message.author?.type === 'agent' ? 'Agent' : 'Switchboard';
}

function renderBody(message) {
  if (message.channel_kind === 'email' && message.html) return renderEmailFrame(message);
  if (!message.text) return null;
  return message.channel_kind === 'email' ? renderEmailText(message) : renderText(message.text);
}

function renderText(text) {
  return h('div', { class: 'message__text' }, linkify(text));
}

// Plain-text email: the quoted history and signature fold away. The server's split in
// visible_text comes first, and without it a trailing quote ("On … wrote:" and "> " lines) folds.
function renderEmailText(message) {
  const text = message.text || '';
  const { body, quoted } = splitEmailText(message.visible_text, text);
  if (!quoted) return renderText(text);
  return h('div', { class: 'message__text' },
    linkify(body),
    h('details', { class: 'quoted' },
      h('summary', {}, 'Show quoted text'),
      h('div', { class: 'quoted__text' }, linkify(quoted))));
}

// The server's visible_text is the text between two cuts, with the surrounding whitespace stripped.
// It opens the text unless the reply was written below the quote, so then it is the last match.
function splitEmailText(visibleText, text) {
  if (typeof visibleText !== 'string' || visibleText === '') return splitQuotedTail(text);
  const start = text.trimStart().startsWith(visibleText) ? text.indexOf(visibleText) : text.lastIndexOf(visibleText);
  if (start === -1) return splitQuotedTail(text);
  const quoted = [text.slice(0, start), text.slice(start + visibleText.length)]
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join('\n\n');
  return quoted ? { body: visibleText, quoted } : { body: text, quoted: null };
}

function splitQuotedTail(text) {
  const lines = text.split(/\r?\n/);
  let start = lines.length;
  while (start > 0) {
    const line = lines[start - 1].trim();
    if (line !== '' && !line.startsWith('>')) break;
    start -= 1;
  }
  const tail = lines.slice(start);
  if (!tail.some((line) => line.trim().startsWith('>'))) return { body: text, quoted: null };

  if (start > 0 && /wrote:\s*$/i.test(lines[start - 1])) start -= 1;
  if (start === 0) return { body: text, quoted: null };
  return { body: lines.slice(0, start).join('\n').trimEnd(), quoted: lines.slice(start).join('\n').trim() };
}

/** Split text into text nodes and links, so URLs in customer text can be opened. */
function linkify(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    if (match.index > last) nodes.push(text.slice(last, match.index));
    nodes.push(h('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer nofollow' }, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

/**
 * Show sanitized email HTML in a sandboxed iframe that runs no script and fits its height to the
 * document. Images from other hosts stay hidden until the agent clicks "Show images", because
 * loading them reveals to the sender that the email was read.
 */
function renderEmailFrame(message) {
  const wrapper = h('div', { class: 'email' });
  let remoteImagesAllowed = false;
  let showingText = false;

  const draw = () => {
    const toolbarItems = [];
    let content;

    if (showingText) {
      content = renderEmailText(message);
    } else {
      const { documentHtml, hiddenImages, estimatedHeight } = buildEmailDocument(message.html, remoteImagesAllowed);
      const frame = h('iframe', {
        class: 'email__frame',
        // Safe because "allow-scripts" is absent: nothing in the email runs (no <script>, no
        // on… attributes, no javascript: links), and it cannot submit forms, open popups or
        // navigate this page. "allow-same-origin" only lets this page read the frame's document
        // to measure its height. Never add "allow-scripts" too: a script in a same-origin frame
        // can remove its own sandbox.
        sandbox: 'allow-same-origin',
        srcdoc: documentHtml,
        title: `Email${message.subject ? `: ${message.subject}` : ''}`,
        referrerpolicy: 'no-referrer',
        loading: 'lazy',
      });
      content = h('div', { class: 'email__frame-box' }, frame);
      // The estimate reserves the space until the document has loaded and can be measured.
      content.style.height = `${estimatedHeight}px`;
      frame.addEventListener('load', () => fitFrameToDocument(content, frame));

      if (hiddenImages > 0) {
        toolbarItems.push(h('span', { class: 'email__note' },
          `${hiddenImages} remote ${hiddenImages === 1 ? 'image' : 'images'} hidden.`),
        h('button', {
          type: 'button',
          class: 'link-button',
          onClick: () => { remoteImagesAllowed = true; draw(); },
        }, 'Show images'));
      }
    }

    if (message.text) {
      toolbarItems.push(h('button', {
        type: 'button',
        class: 'link-button email__toggle',
        'aria-pressed': String(showingText),
        onClick: () => { showingText = !showingText; draw(); },
      }, showingText ? 'Show formatted' : 'Show plain text'));
    }

    replaceChildren(wrapper, content, toolbarItems.length ? h('div', { class: 'email__toolbar' }, toolbarItems) : null);
  };

  draw();
  return wrapper;
}

function buildEmailDocument(html, remoteImagesAllowed) {
  // DOMParser documents have no browsing context, so nothing in them loads or runs.
  const parsed = new DOMParser().parseFromString(html, 'text/html');
  let hiddenImages = 0;

  if (remoteImagesAllowed) {
    // The page's policy loads images over HTTPS only, so a plain-HTTP image is requested over
    // HTTPS, as browsers upgrade such images on secure pages. A host without HTTPS leaves the alt text.
    for (const image of parsed.querySelectorAll('img[src]')) {
      const source = image.getAttribute('src');
      if (/^http:/i.test(source.trim())) image.setAttribute('src', source.trim().replace(/^http:/i, 'https:'));
    }
  } else {
    for (const image of parsed.querySelectorAll('img')) {
      if (!isRemoteUrl(image.getAttribute('src'))) continue;
      const placeholder = parsed.createElement('span');
      placeholder.className = 'remote-image';
      placeholder.textContent = image.getAttribute('alt') || 'Image';
      image.replaceWith(placeholder);
      hiddenImages += 1;
    }
    for (const source of parsed.querySelectorAll('picture source, img[srcset]')) source.removeAttribute('srcset');
  }

  // The sandbox blocks the new tab a link would open, so its address is shown on hover instead.
  for (const link of parsed.querySelectorAll('a[href]')) link.setAttribute('title', link.getAttribute('href'));

  const imageSources = ['data:', window.location.origin];
  if (remoteImagesAllowed) imageSources.push('https:');
  const policy = `default-src 'none'; style-src 'unsafe-inline'; font-src data:; img-src ${imageSources.join(' ')}`;
  const headStyles = [...parsed.head.querySelectorAll('style')].map((style) => style.outerHTML).join('');

  const documentHtml = '<!doctype html><html><head><meta charset="utf-8">'
    + `<meta http-equiv="Content-Security-Policy" content="${policy}">`
    + `<base target="_blank"><style>${FRAME_STYLE}</style>${headStyles}</head>`
    + `<body>${parsed.body.innerHTML}</body></html>`;
  return { documentHtml, hiddenImages, estimatedHeight: estimateFrameHeight(parsed.body) };
}

function isRemoteUrl(value) {
  if (!value) return false;
  try {
    const url = new URL(value, window.location.href);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin !== window.location.origin;
  } catch {
    return false;
  }
}

/**
 * Size the frame's box to the height of the loaded email document, and again whenever that
 * document's body changes size: a late image, or a new width that rewraps the text.
 */
function fitFrameToDocument(box, frame) {
  const frameDocument = frame.contentDocument;
  if (!frameDocument?.body) return;

  const fit = () => {
    const contentHeight = frameDocument.body.scrollHeight;
    // A frame in a hidden pane measures 0 and keeps its current height.
    if (contentHeight === 0) return;
    const border = box.offsetHeight - box.clientHeight;
    box.style.height = `${Math.min(contentHeight, MAX_FRAME_HEIGHT_PX) + border}px`;
  };
  fit();
  new ResizeObserver(fit).observe(frameDocument.body);
}

// A first height from the text length, block elements and images, shown until the document loads.
function estimateFrameHeight(body) {
  const charactersPerLine = 80;
  const lineHeight = 21;
  const imageHeight = 160;
  const textLines = Math.ceil(body.textContent.replace(/\s+/g, ' ').trim().length / charactersPerLine);
  const blockLines = body.querySelectorAll('p, div, li, tr, br, h1, h2, h3, h4, blockquote, table, hr').length;
  const images = body.querySelectorAll('img').length;
  const height = (textLines + blockLines) * lineHeight + images * imageHeight + 32;
  return Math.min(560, Math.max(80, height));
}

function renderAttachments(attachments) {
  if (!Array.isArray(attachments) || attachments.length === 0) return null;
  return h('ul', { class: 'attachments', 'aria-label': 'Attachments' },
    attachments.map((attachment) => h('li', {}, renderAttachment(attachment))));
}

function renderAttachment(attachment) {
  if (attachment.status === 'pending') return pendingAttachment(attachment);
  if (!attachment.url) return omittedAttachment(attachment);
  const kind = (attachment.content_type ?? '').split('/')[0];
  if (kind === 'audio' || kind === 'video') {
    // Voice notes and clips play in place; the link below still downloads the file.
    return h('div', { class: 'attachment-player' },
      h(kind, { src: attachment.url, controls: true, preload: 'metadata', class: `attachment-player__${kind}`,
        'aria-label': attachment.filename || (kind === 'audio' ? 'Voice message' : 'Video') }),
      attachmentLink(attachment));
  }
  return attachmentLink(attachment);
}

// Provider media that the workers have not downloaded yet; a message.updated event replaces it.
function pendingAttachment(attachment) {
  return h('div', { class: 'attachment attachment--pending', 'aria-busy': 'true' },
    h('span', { class: 'attachment__icon' }, icon('clock')),
    h('span', { class: 'attachment__text' },
      h('span', { class: 'attachment__name' }, attachment.filename || 'Attachment'),
      h('span', { class: 'attachment__meta' }, 'Downloading…')));
}

// A file that was not stored (over the size limit, refused or failed to download): its name
// and size, and why it is missing.
function omittedAttachment(attachment) {
  return h('div', { class: 'attachment attachment--omitted', title: attachment.omitted_reason },
    h('span', { class: 'attachment__icon' }, icon('alert')),
    h('span', { class: 'attachment__text' },
      h('span', { class: 'attachment__name' }, attachment.filename || 'Attachment'),
      h('span', { class: 'attachment__meta' }, [attachmentMeta(attachment), 'not stored'].join(' · ')),
      h('span', { class: 'attachment__reason' }, attachment.omitted_reason)));
}

function attachmentLink(attachment) {
  return h('a', {
        class: 'attachment',
        href: attachment.url,
        download: attachment.filename || true,
        title: `Download ${attachment.filename}`,
      },
      THUMBNAIL_TYPES.has(attachment.content_type)
        ? h('img', {
          class: 'attachment__thumbnail',
          src: attachment.url,
          alt: '',
          loading: 'lazy',
          onError: (event) => event.target.replaceWith(h('span', { class: 'attachment__icon' }, icon('attachment'))),
        })
        : h('span', { class: 'attachment__icon' }, icon('attachment')),
      h('span', { class: 'attachment__text' },
        h('span', { class: 'attachment__name' }, attachment.filename || 'Attachment'),
        h('span', { class: 'attachment__meta' }, attachmentMeta(attachment))),
      icon('download', 'attachment__download'));
}

function attachmentMeta(attachment) {
  const extension = /\.([a-z0-9]{1,5})$/i.exec(attachment.filename ?? '')?.[1];
  const type = extension ? extension.toUpperCase() : (attachment.content_type ?? '').split('/').pop().toUpperCase();
  // Media that was never downloaded has no known size.
  const size = attachment.size > 0 ? formatFileSize(attachment.size) : null;
  return [type, size].filter(Boolean).join(' · ');
}
