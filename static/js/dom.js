// Small helpers for building DOM nodes without innerHTML, so customer text is always a text node.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Create an element. `props` keys map to: `class` (className), `dataset` (object), `on…`
 * functions (event listeners), `true` booleans (empty attribute) and other values (attributes).
 * Children may be nodes, strings, arrays, or null/false/undefined (skipped).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);

  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;

    if (key === 'class') {
      element.className = value;
    } else if (key === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(key, '');
    } else {
      element.setAttribute(key, String(value));
    }
  }

  appendChildren(element, children);
  return element;
}

export function appendChildren(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of `parent` with `children`. */
export function replaceChildren(parent, ...children) {
  parent.replaceChildren();
  appendChildren(parent, children);
}

// Stroke icons on a 24×24 grid, drawn for this project. Each entry is a list of path data.
const ICON_PATHS = {
  whatsapp: [
    'M12 3.5a8.5 8.5 0 0 0-7.4 12.7L3.5 20.5l4.4-1.1A8.5 8.5 0 1 0 12 3.5z',
    'M9 8.5c0 3.6 2.9 6.5 6.5 6.5l1-1.6-2-1-1 .9a4.6 4.6 0 0 1-2.8-2.8l.9-1-1-2z',
  ],
  email: ['M4 6h16a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1z', 'M3.5 7l8.5 6 8.5-6'],
  attachment: ['M20 11.5l-8 8a5 5 0 0 1-7-7l8.5-8.5a3.3 3.3 0 0 1 4.7 4.7L9.7 17.2a1.7 1.7 0 0 1-2.4-2.4l7.7-7.7'],
  download: ['M12 4v11', 'M7.5 10.5L12 15l4.5-4.5', 'M5 19.5h14'],
  check: ['M5 12.5l4.5 4.5L19 7.5'],
  checks: ['M2.5 12.5L7 17l9.5-9.5', 'M12 16l1 1 9.5-9.5'],
  clock: ['M21 12a9 9 0 1 1-18 0a9 9 0 1 1 18 0z', 'M12 7.5V12l3 2'],
  alert: ['M21 12a9 9 0 1 1-18 0a9 9 0 1 1 18 0z', 'M12 7.5v5.5', 'M12 16.3v.4'],
  send: ['M4.5 12L20 4.5 15.5 20l-3-6.5z', 'M12.5 13.5L20 4.5'],
  back: ['M15 5l-7 7 7 7'],
  down: ['M12 5v14', 'M6.5 13.5L12 19l5.5-5.5'],
  inbox: ['M3 13.5h5l1.5 3h5l1.5-3h5', 'M5.5 5h13L21 13.5V19H3v-5.5z'],
  chat: ['M5 5h14a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1H10l-5 4v-4a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1z'],
  refresh: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 4.5V11h-6.5'],
};

/** Create a decorative inline SVG icon (hidden from assistive technology). */
export function icon(name, className = '') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon ${className}`.trim());

  for (const data of ICON_PATHS[name] ?? []) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', data);
    svg.append(path);
  }
  return svg;
}

/** True when keyboard input is going into a text field rather than to the page. */
export function isEditableTarget(target) {
  if (!(target instanceof Element)) return false;
  return Boolean(target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]'));
}
