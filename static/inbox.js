// Entry point of the agent inbox page.
//
// Modules under js/:
// - app.js: the controller (state, loading, live events, keyboard shortcuts)
// - conversation-list.js: the left pane
// - thread.js: the right pane
// - message-view.js: one message
// - composer.js: the reply box
// - live.js: the Socket.IO connection
// - api.js: the JSON API client
// - format.js, dom.js: shared helpers

import { InboxApp } from './js/app.js';

const root = document.getElementById('app');
if (root) new InboxApp(root).start();
