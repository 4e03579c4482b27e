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

// Raster formats that an <img> shows as a thumbnail. SVG attachments stay download links.
const THUMBNAIL_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

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

/**
 * Create the element of one message.
 * @param {object} message Message as the API returns it.
 * @param {object} conversation The conversation the message belongs to, for the contact's name.
 */
export function renderMessage(message, conversation) {
  const outbound = message.direction === 'outbound';
  const author = authorName(message, conversation);

  const statusSlot = h('div', { class: 'message__status' });
  const article = h('article', {
    class: `message message--${outbound ? 'outbound' : 'inbound'}`,
    'aria-label': `${outbound ? 'Reply' : 'Message'} from ${author}, ${formatRelative(message.created_at)}`,
  },
  h('header', { class: 'message__meta' },
    h('span', { class: 'message__author' }, author),
    channelBadge(message.channel_kind, 'channel-badge--small'),
    h('time', {
      class: 'message__time',
      datetime: message.created_at,
      title: formatFullTimestamp(message.created_at),
      dataset: { relative: '' },
    }, formatRelative(message.created_at))),
  h('div', { class: 'message__bubble' },
    message.subject && message.channel_kind === 'email'
      ? h('p', { class: 'message__subject' }, h('span', { class: 'visually-hidden' }, 'Subject: '), message.subject)
      : null,
    renderBody(message),
    renderAttachments(message.attachments)),
  statusSlot);

  const row = h('div', { class: `message-row message-row--${outbound ? 'outbound' : 'inbound'}` }, article);
  row.statusSlot = statusSlot;
  updateMessageStatus(row, message);
  return row;
}

/** Redraw the delivery status of a message element made by renderMessage. */
export function updateMessageStatus(row, message) {
  const view = message.direction === 'outbound' ? STATUS_VIEW[message.delivery_status] : null;
  const failed = view?.tone === 'danger';
  row.classList.toggle('message-row--failed', failed);

  if (!view) {
    row.statusSlot.replaceChildren();
    row.statusSlot.hidden = true;
    return;
  }

  row.statusSlot.hidden = false;
  replaceChildren(row.statusSlot,
    h('span', { class: `delivery delivery--${view.tone}` }, icon(view.icon), view.label),
    failed
      ? h('p', { class: 'message__error' }, message.error || 'The provider gave no reason.')
      : null);
}

/** Return a key that changes when the delivery status of a message changes. */
export function statusSignature(message) {
  return `${message.delivery_status ?? ''}|${message.error ?? ''}`;
}

/** Return a key that changes when anything but the delivery status of a message changes. */
export function bodySignature(message) {
  return JSON.stringify([
    message.subject, message.text, message.html, message.created_at, message.author?.name,
    (message.attachments ?? []).map((attachment) => attachment.id),
  ]);
}

function authorName(message, conversation) {
  if (message.author?.name) return message.author.name;
  if (message.direction === 'inbound') return contactDisplayName(conversation?.contact);
  return message.author?.type === 'agent' ? 'Agent' : 'Switchboard';
}

function renderBody(message) {
  if (message.channel_kind === 'email' && message.html) return renderEmailFrame(message);
  if (!message.text) return null;
  return message.channel_kind === 'email' ? renderEmailText(message.text) : renderText(message.text);
}

function renderText(text) {
  return h('div', { class: 'message__text' }, linkify(text));
}

// Plain-text email: a trailing quote of the earlier thread ("On … wrote:" and "> " lines) folds away.
function renderEmailText(text) {
  const { body, quoted } = splitQuotedTail(text);
  if (!quoted) return renderText(text);
  return h('div', { class: 'message__text' },
    linkify(body),
    h('details', { class: 'quoted' },
      h('summary', {}, 'Show quoted text'),
      h('div', { class: 'quoted__text' }, linkify(quoted))));
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
 * Show sanitized email HTML in an iframe with an empty sandbox: no scripts, no forms, no
 * popups, and an opaque origin that cannot reach this page. Images from other hosts stay
 * hidden until the agent clicks "Show images", because loading them tells the sender the email was read.
 */
function renderEmailFrame(message) {
  const wrapper = h('div', { class: 'email' });
  let remoteImagesAllowed = false;
  let showingText = false;

  const draw = () => {
    const toolbarItems = [];
    let content;

    if (showingText) {
      content = renderEmailText(message.text || '');
    } else {
      const { documentHtml, hiddenImages, estimatedHeight } = buildEmailDocument(message.html, remoteImagesAllowed);
      content = h('div', { class: 'email__frame-box' },
        h('iframe', {
          class: 'email__frame',
          sandbox: '',
          srcdoc: documentHtml,
          title: `Email${message.subject ? `: ${message.subject}` : ''}`,
          referrerpolicy: 'no-referrer',
          loading: 'lazy',
        }));
      content.style.height = `${estimatedHeight}px`;

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

  if (!remoteImagesAllowed) {
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

  // A link in an empty sandbox cannot open, so its address is shown on hover instead.
  for (const link of parsed.querySelectorAll('a[href]')) link.setAttribute('title', link.getAttribute('href'));

  const imageSources = ['data:', window.location.origin];
  if (remoteImagesAllowed) imageSources.push('https:', 'http:');
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

// An empty sandbox gives the frame an opaque origin, so this page cannot measure its content.
// NOTE: the height is an estimate from the text length, block elements and images. When it is
// short, the frame scrolls and the agent can resize it.
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
    attachments.map((attachment) => h('li', {},
      h('a', {
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
      icon('download', 'attachment__download')))));
}

function attachmentMeta(attachment) {
  const extension = /\.([a-z0-9]{1,5})$/i.exec(attachment.filename ?? '')?.[1];
  const type = extension ? extension.toUpperCase() : (attachment.content_type ?? '').split('/').pop().toUpperCase();
  return [type, formatFileSize(attachment.size)].filter(Boolean).join(' · ');
}
