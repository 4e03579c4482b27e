// On a narrow window the site links scroll sideways in one row. Scroll that row to the
// current page's link, so it is visible when the page opens. Signing out here also removes
// the inbox's unsent drafts that this tab keeps.

import { forgetSavedDrafts } from './drafts.js';

document.querySelector('form.logout')?.addEventListener('submit', () => forgetSavedDrafts());

const nav = document.querySelector(".admin-nav");
const current = nav?.querySelector('[aria-current="page"]');

if (current && nav.scrollWidth > nav.clientWidth) {
  // Keep the link clear of the shadow that marks more links at the row's edge.
  const margin = 32;
  const overflow = current.getBoundingClientRect().right + margin - nav.getBoundingClientRect().right;
  if (overflow > 0) {
    nav.scrollLeft += overflow;
  }
}
