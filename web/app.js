// The bluetick web client: sign-in, the chat list and one conversation.
//
// Layout: api.js is the HTTP API, session.js the MQTT connection (inbox in
// seq order, the durable outbox, typing, presence), local.js what the
// browser keeps in IndexedDB. This file holds what is on screen: it turns
// history pages and inbox events into a view model (chats and the
// messages of each conversation) and renders it. Every text from the
// server goes through textContent, never innerHTML.

import { Api, ApiError, sizeText, uploadRefusal } from './api.js';
import { Local } from './local.js';
import { Session, groupOf } from './session.js';

const $ = (id) => document.getElementById(id);
const SESSION_KEY = 'bluetick.session';
const DEVICE_KEY = 'bluetick.device';
/** How long a "typing…" shows without a new typing event. */
const TYPING_SHOWN_MS = 6000;
/** Typing events are repeated this often while the user types. */
const TYPING_EVERY_MS = 3000;

/** Everything on screen, for the signed-in user. */
let app = null;

// ---------------------------------------------------------------- helpers

function uuid() {
  // crypto.randomUUID exists only on secure origins; a LAN address over
  // plain HTTP is not one, getRandomValues works everywhere.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function device() {
  let name = localStorage.getItem(DEVICE_KEY);
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(name || '')) {
    name = `web-${uuid().slice(0, 8)}`;
    localStorage.setItem(DEVICE_KEY, name);
  }
  return name;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

function clock(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

function presenceText(p) {
  if (!p || p.hidden) return '';
  if (p.online) return 'online';
  if (p.last_seen) return `last seen ${clock(p.last_seen)}`;
  return '';
}

/** Says a new message aloud to screen readers (the list itself is re-rendered, so it is not live). */
function announce(text) {
  $('announce').textContent = text;
}

function showError(id, error) {
  $(id).textContent = error ? (error instanceof ApiError ? error.message : String(error.message || error)) : '';
}

const TICKS = {
  pending: ['◷', 'Sending'],
  sent: ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
  failed: ['!', 'Not sent'],
};
const RANK = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };

// ------------------------------------------------------------- sign-in

function showSignIn(message = '') {
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('signin-name').focus();
}

async function signIn(register) {
  const name = $('signin-name').value.trim().toLowerCase();
  const password = $('signin-password').value;
  showError('signin-error', null);
  if (!name || !password) return showError('signin-error', 'Enter a user name and a password.');
  const api = new Api();
  $('signin-button').disabled = $('register-button').disabled = true;
  try {
    if (register) await api.register(name, password);
    const { token, expires_at } = await api.login(name, password);
    localStorage.setItem(SESSION_KEY, JSON.stringify({ name, token, expires_at }));
    $('signin-password').value = '';
    await start({ name, token });
  } catch (e) {
    showError('signin-error', e);
  } finally {
    $('signin-button').disabled = $('register-button').disabled = false;
  }
}

async function signOut() {
  if (!app) return;
  try {
    await app.api.logout();
  } catch (e) {
    if (e.code === 'unreachable') return showError('sidebar-error', new Error(`${e.message} You are still signed in.`));
    // Any other refusal (an expired token) still ends the session here.
  }
  const me = app.me;
  stop();
  await Local.erase(me);
  showSignIn('Signed out.');
}

function stop() {
  if (!app) return;
  app.session?.stop();
  app.local?.close();
  app.releaseLock?.();
  for (const url of app.blobs.values()) URL.revokeObjectURL(url);
  clearInterval(app.ticker);
  localStorage.removeItem(SESSION_KEY);
  app = null;
}

// ----------------------------------------------------------- the app

async function start({ name, token }) {
  const api = new Api(token);
  app = {
    me: name,
    api,
    device: device(),
    // Chats are keyed by the peer's name, or `#ID` for a group (session.js).
    chats: new Map(), // key → {peer: key, group, name, last, unread, timer, presence, typingUntil, typingWho}
    convos: new Map(), // key → {messages: Map key → message, byClient: Map, next, loaded}
    receipts: new Map(), // key → {delivered, read} (highest own message ids; aggregates in a group)
    readSent: new Map(), // key → highest id marked read
    outbox: [],
    open: null,
    panel: null,
    blobs: new Map(),
    limits: null,
    privacy: { last_seen: 'everyone', read_receipts: true },
    typingSentAt: 0,
  };
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').textContent = name;
  setStatus('connecting');
  const mine = app;
  // Where the WebSocket is: without it nothing else works, so keep asking
  // while the server is unreachable.
  let config = null;
  while (app === mine && !config) {
    try {
      config = await api.clientConfig();
    } catch {
      setStatus('unreachable');
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }
  if (app !== mine) return;
  const loaded = await Promise.allSettled([
    api.mediaConfig().then((l) => { mine.limits = l; }),
    api.privacy().then((p) => { mine.privacy = p; }),
    loadChats(),
  ]);
  if (app !== mine) return;
  const refused = loaded.find((r) => r.status === 'rejected')?.reason;
  if (refused?.code === 'unauthorized') {
    stop();
    return showSignIn(refused.message);
  }
  if (refused) showError('sidebar-error', refused);
  if (!config.ws_url) {
    showError('sidebar-error', new Error('Live chat is not available on this server (no WebSocket listener).'));
    return;
  }
  mine.local = await Local.open(name);
  await holdLock(mine);
  if (app !== mine) return;
  mine.session = new Session({
    user: name,
    token,
    device: mine.device,
    wsUrl: config.ws_url,
    local: mine.local,
    on: {
      inbox: (e) => app === mine && onInbox(e),
      live: (e) => app === mine && onLive(e),
      presence: (user, p) => app === mine && onPresence(user, p),
      status: (s) => app === mine && setStatus(s),
      outbox: (entries) => app === mine && onOutbox(entries),
      authLost: () => {
        if (app !== mine) return;
        stop();
        showSignIn('Your session has ended. Sign in again.');
      },
    },
  });
  for (const c of mine.chats.values()) if (c.group == null) mine.session.watch(c.peer);
  await mine.session.start();
  mine.ticker = setInterval(tick, 1000);
}

/** One tab per user talks to the server: two would take over each other's connection. */
async function holdLock(mine) {
  if (!navigator.locks) return; // not on an insecure origin; then take the risk
  await new Promise((granted) => {
    navigator.locks.request(`bluetick:${mine.me}`, { ifAvailable: true }, (lock) => {
      if (lock) {
        granted();
        return new Promise((release) => { mine.releaseLock = release; });
      }
      setStatus('other-tab');
      navigator.locks.request(`bluetick:${mine.me}`, () => {
        granted();
        return new Promise((release) => { mine.releaseLock = release; });
      });
      return null;
    });
  });
}

function setStatus(s) {
  const text = {
    online: '',
    connecting: 'Connecting…',
    offline: 'Offline: messages are sent when you are back online.',
    unreachable: "Can't reach the server; retrying…",
    'other-tab': 'bluetick is open in another tab; waiting for it to close.',
    ended: '',
  }[s];
  $('status').textContent = text ?? s;
  $('status').dataset.state = s;
}

// -------------------------------------------------------- view model

function chat(peer) {
  let c = app.chats.get(peer);
  if (!c) {
    const group = groupOf(peer);
    c = { peer, group, name: group != null ? `Group ${group}` : peer, last: null, unread: 0, timer: 0, presence: null, typingUntil: 0 };
    app.chats.set(peer, c);
    if (group == null) app.session?.watch(peer);
  }
  return c;
}

function convo(peer) {
  let c = app.convos.get(peer);
  if (!c) {
    c = { messages: new Map(), byClient: new Map(), next: null, loaded: false, loading: false };
    app.convos.set(peer, c);
  }
  return c;
}

/** The chat a message belongs to: its group, or the other person. */
const peerOf = (m) => (m.group != null ? `#${m.group}` : m.from === app.me ? m.to : m.from);

/** A message from history or an event, as the view keeps it. */
function fromServer(m, status) {
  return {
    id: m.id,
    client_id: m.client_id,
    from: m.from ?? app.me,
    to: m.to,
    group: m.group ?? null,
    body: m.body ?? '',
    media: m.media ?? null,
    sent_at: m.sent_at,
    expires_at: m.expires_at ?? null,
    starred: Boolean(m.starred),
    status: status ?? (m.read_at ? 'read' : m.delivered_at ? 'delivered' : 'sent'),
  };
}

/** Adds or updates a message; a stored copy replaces its pending one. */
function upsert(m) {
  const c = convo(peerOf(m));
  if (m.id != null) {
    const pendingKey = `c${m.client_id}`;
    if (m.from === app.me && c.messages.has(pendingKey)) c.messages.delete(pendingKey);
    const key = `i${m.id}`;
    const old = c.messages.get(key);
    if (old) {
      if (RANK[m.status] > RANK[old.status]) old.status = m.status;
      return old;
    }
    c.messages.set(key, m);
    if (m.from === app.me) c.byClient.set(m.client_id, key);
    return m;
  }
  if (c.byClient.has(m.client_id)) return null; // stored already
  c.messages.set(`c${m.client_id}`, m);
  return m;
}

function ownStatus(m, peer) {
  if (m.from !== app.me || m.id == null) return m.status;
  const r = app.receipts.get(peer) || {};
  if (r.read >= m.id) return 'read';
  if (r.delivered >= m.id && RANK[m.status] < RANK.delivered) return 'delivered';
  return m.status;
}

function setLast(peer, m) {
  const c = chat(peer);
  if (!c.last || (m.sent_at ?? 0) >= (c.last.sent_at ?? 0)) c.last = m;
}

async function loadChats() {
  const [page, groups] = await Promise.all([
    app.api.chats(),
    // Groups without a message yet are in no chat list page.
    app.api.groups().catch(() => ({ items: [] })),
  ]);
  for (const item of page.items) {
    const c = chat(item.group != null ? `#${item.group}` : item.peer);
    if (item.name) c.name = item.name;
    c.last = item.last_message ? fromServer(item.last_message) : null;
    c.counted = item.last_message?.id;
    c.unread = item.unread;
    c.timer = item.timer_seconds;
  }
  for (const g of groups.items) {
    const c = chat(`#${g.id}`);
    c.name = g.name;
    c.timer = g.timer_seconds ?? c.timer;
  }
  renderChats();
}

// ------------------------------------------------------------ events

function onInbox(e) {
  switch (e.type) {
    case 'message': {
      upsert(fromServer(e, 'sent'));
      const key = peerOf(e);
      const c = chat(key);
      // The chat list's unread count already covers messages up to its
      // last message; a sync replaying one of those must not count it twice.
      const fresh = e.id > (c.counted ?? 0);
      c.counted = Math.max(c.counted ?? 0, e.id);
      setLast(key, fromServer(e, 'sent'));
      if (fresh && !(app.open === key && document.visibilityState === 'visible')) c.unread += 1;
      if (fresh) announce(`${e.from}${c.group != null ? ` in ${c.name}` : ''}: ${e.body || 'Photo'}`);
      c.typingUntil = 0;
      break;
    }
    case 'ack': {
      const m = fromServer({ ...e, from: app.me }, 'sent');
      upsert(m);
      setLast(peerOf(m), m);
      break;
    }
    case 'receipt': {
      const key = e.group != null ? `#${e.group}` : e.peer;
      const r = app.receipts.get(key) || { delivered: 0, read: 0 };
      r.delivered = Math.max(r.delivered, e.up_to);
      if (e.status === 'read') r.read = Math.max(r.read, e.up_to);
      app.receipts.set(key, r);
      break;
    }
    case 'group': {
      const c = chat(`#${e.group}`);
      if (e.name) c.name = e.name;
      if (e.change === 'timer') c.timer = e.seconds;
      // Removed or left: the conversation stays readable, sending ends.
      if (e.user === app.me) c.gone = e.change === 'removed' || e.change === 'left';
      // A line in the conversation, after the messages that came before it.
      const cv = convo(c.peer);
      let newest = 0;
      for (const m of cv.messages.values()) newest = Math.max(newest, m.id ?? m.after ?? 0);
      addChangeLine(cv, e, newest);
      break;
    }
    case 'error': {
      for (const c of app.convos.values()) {
        const m = c.messages.get(`c${e.client_id}`);
        if (m) {
          m.status = 'failed';
          m.error = e.message;
        }
      }
      showError('conversation-error', new Error(`A message was not sent: ${e.message}`));
      break;
    }
    case 'star':
      for (const c of app.convos.values()) {
        const m = c.messages.get(`i${e.message_id}`);
        if (m) m.starred = e.starred;
      }
      break;
    case 'timer':
      chat(e.peer).timer = e.seconds;
      break;
    case 'expired':
      for (const c of app.convos.values()) c.messages.delete(`i${e.message_id}`);
      break;
    default:
      return; // a kind this client does not know: ignored, as the contract says
  }
  render();
}

/**
 * A group change as a line of its conversation, placed after message
 * `after` (history says which; live, the newest one shown). Keyed so the
 * same change from the inbox and from history is one line.
 */
function addChangeLine(cv, e, after) {
  cv.messages.set(`g${e.at}-${e.change}-${e.user ?? ''}`, { system: true, id: null, after: after + 0.5, text: groupChangeText(e), sent_at: e.at });
}

/** A group change as a sentence: "alice added carol". */
function groupChangeText(e) {
  const who = (name) => (name === app.me ? 'you' : name);
  const by = e.by == null ? 'bluetick' : who(e.by);
  const user = who(e.user);
  switch (e.change) {
    case 'created': return `${by} created the group “${e.name}”`;
    case 'added': return `${by} added ${user}`;
    case 'removed': return `${by} removed ${user}`;
    case 'left': return `${user} left`;
    case 'promoted': return `${by} made ${user} an admin`;
    case 'demoted': return `${by} made ${user} a member`;
    case 'renamed': return `${by} renamed the group to “${e.name}”`;
    case 'timer': return e.seconds ? `${by} set disappearing messages` : `${by} turned off disappearing messages`;
    default: return `the group changed (${e.change})`;
  }
}

function onLive(e) {
  if (e.type !== 'typing') return;
  // Reciprocity, as for last seen: hide yours and you do not see theirs.
  if (app.privacy.last_seen === 'nobody') return;
  const key = e.group != null ? `#${e.group}` : e.from;
  if (!app.chats.has(key)) return;
  const c = chat(key);
  c.typingUntil = e.state === 'typing' ? Date.now() + TYPING_SHOWN_MS : 0;
  c.typingWho = e.from;
  render();
}

function onPresence(user, p) {
  if (!app.chats.has(user)) return;
  chat(user).presence = p;
  render();
}

function onOutbox(entries) {
  app.outbox = entries;
  for (const e of entries) {
    const c = convo(e.to);
    if (c.byClient.has(e.client_id)) {
      // Stored before the reload; its ack went with the page.
      app.session?.acknowledged(e.client_id);
      continue;
    }
    if (!c.messages.has(`c${e.client_id}`)) upsert(pendingMessage(e));
    chat(e.to);
  }
  render();
}

function pendingMessage(e) {
  return {
    id: null,
    client_id: e.client_id,
    from: app.me,
    to: e.to,
    body: e.body,
    media: e.media ? { ...e.media, mime: e.mime, size: e.size } : null,
    sent_at: e.created,
    status: 'pending',
    starred: false,
  };
}

/** Once a second: typing indicators fade, disappearing messages go. */
function tick() {
  const now = Date.now();
  let changed = false;
  for (const c of app.chats.values()) {
    if (c.typingUntil && c.typingUntil < now) {
      c.typingUntil = 0;
      changed = true;
    }
  }
  for (const c of app.convos.values()) {
    for (const [key, m] of c.messages) {
      if (m.expires_at && m.expires_at <= now) {
        c.messages.delete(key);
        changed = true;
      }
    }
  }
  if (changed) render();
}

// ------------------------------------------------------------- actions

async function openChat(peer) {
  app.open = peer;
  app.panel = null;
  const c = convo(peer);
  chat(peer);
  document.body.classList.add('in-chat');
  showError('conversation-error', null);
  render();
  $('composer-text').focus();
  if (!c.loaded) {
    await loadEarlier(peer);
    onOutbox(app.outbox); // pending messages of this chat, after its history
  }
  scrollToEnd();
}

async function loadEarlier(peer) {
  const c = convo(peer);
  if (c.loading || (c.loaded && c.next == null)) return;
  c.loading = true;
  const list = $('messages');
  const fromBottom = list.scrollHeight - list.scrollTop;
  try {
    const group = groupOf(peer);
    const before = c.loaded ? c.next : undefined;
    const page = await (group != null ? app.api.groupHistory(group, before) : app.api.history(peer, before));
    for (const m of page.items) {
      // A group's history mixes in its changes (no id, `after_message`).
      if (m.id == null && m.type === 'group') addChangeLine(c, m, m.after_message ?? 0);
      else upsert(fromServer(m));
    }
    for (const e of app.outbox) if (c.byClient.has(e.client_id)) app.session?.acknowledged(e.client_id);
    c.next = page.next;
    c.loaded = true;
  } catch (e) {
    if (e.status === 404 && e.code === 'not_found') {
      // No message either way yet: a new conversation starts empty
      // (docs/protocol.md 6.3).
      c.next = null;
      c.loaded = true;
    } else {
      showError('conversation-error', e);
    }
  } finally {
    c.loading = false;
  }
  render();
  if (app.open === peer) list.scrollTop = list.scrollHeight - fromBottom;
}

async function sendText(event) {
  event.preventDefault();
  const input = $('composer-text');
  const body = input.value;
  if (!body.trim() || !app.open) return;
  if (chat(app.open).gone) return showError('conversation-error', new Error('You are no longer a member of this group.'));
  input.value = '';
  await queue({ client_id: uuid(), to: app.open, body, created: Date.now() });
  typing('paused');
}

async function queue(entry) {
  upsert(pendingMessage(entry));
  setLast(entry.to, pendingMessage(entry));
  render();
  scrollToEnd();
  try {
    await app.session.send(entry);
  } catch (e) {
    showError('conversation-error', e);
  }
}

async function sendPicture() {
  const file = $('attach').files[0];
  $('attach').value = '';
  if (!file || !app.open) return;
  showError('conversation-error', null);
  const refusal = uploadRefusal(file, app.limits);
  if (refusal) return showError('conversation-error', new Error(refusal));
  const peer = app.open;
  $('upload').hidden = false;
  $('upload-label').textContent = `Uploading ${file.name}`;
  $('upload-progress').value = 0;
  try {
    const uploaded = await app.api.upload(file, (f) => { $('upload-progress').value = f; });
    await queue({
      client_id: uuid(),
      to: peer,
      body: '',
      media: { id: uploaded.id },
      mime: uploaded.content_type,
      size: uploaded.size,
      created: Date.now(),
    });
  } catch (e) {
    showError('conversation-error', e);
  } finally {
    $('upload').hidden = true;
  }
}

function typing(state) {
  if (!app.open || app.privacy.last_seen === 'nobody') return;
  const now = Date.now();
  clearTimeout(app.pauseTimer);
  if (state === 'typing') {
    if (now - app.typingSentAt > TYPING_EVERY_MS) {
      app.session?.typing(app.open, 'typing');
      app.typingSentAt = now;
    }
    const peer = app.open;
    app.pauseTimer = setTimeout(() => {
      app.session?.typing(peer, 'paused');
      app.typingSentAt = 0;
    }, TYPING_EVERY_MS + 1000);
  } else if (app.typingSentAt) {
    app.session?.typing(app.open, 'paused');
    app.typingSentAt = 0;
  }
}

async function newChat(event) {
  event.preventDefault();
  const peer = $('newchat-name').value.trim().toLowerCase();
  showError('sidebar-error', null);
  if (!peer) return;
  if (peer === app.me) return showError('sidebar-error', new Error('That is you. Start a chat with someone else.'));
  try {
    const presence = await app.api.presence(peer);
    chat(peer).presence = presence;
  } catch (e) {
    if (e.code === 'not_found') return showError('sidebar-error', new Error(`There is no user called “${peer}”.`));
    return showError('sidebar-error', e);
  }
  $('newchat-name').value = '';
  openChat(peer);
}

async function newGroup(event) {
  event.preventDefault();
  const name = $('newgroup-name').value.trim();
  const members = $('newgroup-members').value.split(/[\s,]+/).map((m) => m.trim().toLowerCase()).filter((m) => m && m !== app.me);
  showError('sidebar-error', null);
  if (!name) return showError('sidebar-error', new Error('Give the group a name.'));
  try {
    const group = await app.api.createGroup(name, members);
    chat(`#${group.id}`).name = group.name;
    $('newgroup-name').value = $('newgroup-members').value = '';
    openChat(`#${group.id}`);
  } catch (e) {
    showError('sidebar-error', e);
  }
}

async function toggleStar(m) {
  try {
    const r = await app.api.star(m.id, !m.starred);
    m.starred = r.starred;
    render();
  } catch (e) {
    showError('conversation-error', e);
  }
}

async function setTimer() {
  const peer = app.open;
  const seconds = Number($('timer-select').value);
  showError('conversation-error', null);
  try {
    const group = groupOf(peer);
    if (group != null) chat(peer).timer = (await app.api.setGroupTimer(group, seconds)).timer_seconds;
    else chat(peer).timer = (await app.api.setTimer(peer, seconds)).seconds;
  } catch (e) {
    showError('conversation-error', e);
  }
  render();
}

function markRead() {
  const peer = app.open;
  if (!peer || app.panel || document.visibilityState !== 'visible') return;
  let max = 0;
  const theirs = groupOf(peer) != null ? (m) => m.from !== app.me : (m) => m.from === peer;
  for (const m of convo(peer).messages.values()) if (theirs(m) && m.id > max) max = m.id;
  const c = chat(peer);
  if (max > (app.readSent.get(peer) || 0) && app.session?.read(peer, max)) {
    app.readSent.set(peer, max);
  }
  if (max && app.readSent.get(peer) >= max) c.unread = 0;
}

async function showPanel(kind, words) {
  app.panel = kind;
  document.body.classList.add('in-chat');
  const body = $('panel-body');
  body.replaceChildren(el('p', { class: 'hint', text: 'Loading…' }));
  render();
  $('panel-title').focus?.();
  try {
    if (kind === 'search') {
      $('panel-title').textContent = `Search: ${words}`;
      const page = await app.api.search(words);
      body.replaceChildren(resultList(page.items.map((m) => ({ peer: peerOf(m), message: m })), 'Nothing found.'));
    } else if (kind === 'stars') {
      $('panel-title').textContent = 'Starred messages';
      const page = await app.api.stars();
      // A starred group message names its group rather than a peer.
      const starred = page.items.map((i) => ({ peer: i.group != null ? `#${i.group}` : i.peer ?? peerOf(i.message), message: i.message }));
      body.replaceChildren(resultList(starred, 'No starred messages yet.'));
    } else {
      $('panel-title').textContent = 'Settings';
      body.replaceChildren(settingsForm());
    }
  } catch (e) {
    body.replaceChildren(el('p', { class: 'error', role: 'alert', text: e.message }));
  }
}

function resultList(items, empty) {
  if (!items.length) return el('p', { class: 'hint', text: empty });
  const list = el('ul', { class: 'results' });
  for (const { peer, message: m } of items) {
    list.append(el('li', {},
      el('button', { type: 'button', class: 'result', onclick: () => openChat(peer) },
        el('span', { class: 'result-peer', text: resultTitle(peer, m) }),
        el('span', { class: 'result-time', text: clock(m.sent_at) }),
        el('span', { class: 'result-body', text: m.body || (m.media ? 'Photo' : '') }))));
  }
  return list;
}

function resultTitle(peer, m) {
  const name = chat(peer).name;
  if (m.from === app.me) return `You → ${name}`;
  return groupOf(peer) != null ? `${m.from} in ${name}` : name;
}

function settingsForm() {
  const seen = el('select', { id: 'privacy-last-seen' },
    ...['everyone', 'contacts', 'nobody'].map((v) => el('option', { value: v, text: v[0].toUpperCase() + v.slice(1), selected: app.privacy.last_seen === v })));
  const receipts = el('input', { type: 'checkbox', id: 'privacy-receipts', checked: app.privacy.read_receipts });
  const note = el('p', { class: 'hint', role: 'status' });
  const form = el('form', {
    class: 'settings',
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        app.privacy = await app.api.setPrivacy({ last_seen: seen.value, read_receipts: receipts.checked });
        note.textContent = 'Saved.';
      } catch (e) {
        note.textContent = e.message;
      }
    },
  },
  el('label', { for: 'privacy-last-seen', text: 'Who sees my last seen, online status and typing' }), seen,
  el('label', { class: 'check' }, receipts, ' Send and receive read receipts'),
  el('button', { type: 'submit', class: 'primary', text: 'Save' }),
  note,
  el('p', { class: 'hint', text: `Signed in as ${app.me} on device ${app.device}.` }));
  return form;
}

function back() {
  app.open = null;
  app.panel = null;
  document.body.classList.remove('in-chat');
  render();
  $('newchat-name').focus();
}

// -------------------------------------------------------------- render

function render() {
  if (!app) return;
  renderChats();
  const showConvo = Boolean(app.open) && !app.panel;
  $('conversation').hidden = !showConvo;
  $('panel').hidden = !app.panel;
  $('empty').hidden = showConvo || Boolean(app.panel);
  if (showConvo) renderConversation();
}

function renderChats() {
  const now = Date.now();
  const chats = [...app.chats.values()].sort((a, b) => (b.last?.sent_at ?? 0) - (a.last?.sent_at ?? 0));
  const list = $('chats');
  const focused = document.activeElement?.closest?.('li.chat')?.dataset.peer;
  list.replaceChildren(...chats.map((c) => {
    const typingNow = c.typingUntil > now;
    const last = c.last;
    const own = last && last.from === app.me;
    const status = own ? ownStatus(last, c.peer) : null;
    const text = last ? (last.body || (last.media ? 'Photo' : '')) : '';
    // In a group, whose message it was and who is typing matter.
    const snippet = typingNow
      ? (c.group != null ? `${c.typingWho} is typing…` : 'typing…')
      : last
        ? (c.group != null && !own ? `${last.from}: ${text}` : text)
        : presenceText(c.presence);
    return el('li', { class: 'chat', 'data-peer': c.peer, 'aria-current': app.open === c.peer ? 'true' : null },
      el('button', { type: 'button', onclick: () => openChat(c.peer) },
        el('span', { class: c.group != null ? 'avatar group' : 'avatar', 'aria-hidden': 'true', text: c.name[0].toUpperCase() }),
        el('span', { class: 'chat-main' },
          el('span', { class: 'chat-top' },
            el('span', { class: 'chat-name', text: c.name }),
            el('span', { class: 'chat-time', text: last ? clock(last.sent_at) : '' })),
          el('span', { class: 'chat-bottom' },
            own && !typingNow ? ticks(status) : null,
            el('span', { class: typingNow ? 'chat-last typing' : 'chat-last', text: snippet }),
            c.unread > 0 ? el('span', { class: 'unread', 'aria-label': `${c.unread} unread`, text: String(c.unread) }) : null),
          el('span', { class: 'chat-presence', text: presenceText(c.presence) }))));
  }));
  $('no-chats').hidden = chats.length > 0;
  if (focused) list.querySelector(`li[data-peer="${CSS.escape(focused)}"] button`)?.focus();
}

function ticks(status) {
  const [text, label] = TICKS[status];
  return el('span', { class: `ticks ${status}`, 'data-status': status, role: 'img', 'aria-label': label, title: label, text });
}

function renderConversation() {
  const peer = app.open;
  const c = chat(peer);
  const cv = convo(peer);
  $('peer-name').textContent = c.name;
  const typingNow = c.typingUntil > Date.now();
  const idle = c.group != null ? (c.gone ? 'You are no longer a member' : 'Group') : presenceText(c.presence);
  $('peer-status').textContent = typingNow ? (c.group != null ? `${c.typingWho} is typing…` : 'typing…') : idle;
  $('peer-status').classList.toggle('typing', typingNow);
  if (document.activeElement !== $('timer-select')) $('timer-select').value = String(c.timer || 0);

  const list = $('messages');
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const focusedKey = document.activeElement?.closest?.('li.msg')?.dataset.key;
  const focusedClass = document.activeElement?.className;
  // Stored messages by id, group change lines just after the message they
  // followed, then what is still pending.
  const place = (m) => m.id ?? m.after;
  const sorted = [...cv.messages.entries()].sort(([, a], [, b]) => {
    if ((place(a) == null) !== (place(b) == null)) return place(a) == null ? 1 : -1;
    return place(a) != null ? place(a) - place(b) : a.sent_at - b.sent_at;
  });
  const items = [];
  if (cv.loaded && cv.next != null) {
    items.push(el('li', { class: 'more' },
      el('button', { type: 'button', id: 'load-earlier', onclick: () => loadEarlier(peer), text: 'Load earlier messages' })));
  }
  if (cv.loaded && !sorted.length) items.push(el('li', { class: 'hint', text: 'No messages yet. Say hello!' }));
  for (const [key, m] of sorted) {
    items.push(m.system ? el('li', { class: 'system', 'data-key': key, text: m.text }) : messageItem(key, m, peer));
  }
  list.replaceChildren(...items);
  if (focusedKey) list.querySelector(`li[data-key="${CSS.escape(focusedKey)}"] .${CSS.escape(focusedClass.split(' ')[0])}`)?.focus();
  if (atEnd) scrollToEnd();
  markRead();
}

function messageItem(key, m, peer) {
  const own = m.from === app.me;
  const status = own ? ownStatus(m, peer) : null;
  const li = el('li', {
    class: `msg ${own ? 'own' : 'theirs'}`,
    'data-key': key,
    'data-id': m.id ?? null,
    'data-client-id': m.client_id,
  });
  const bubble = el('div', { class: 'bubble' });
  // In a group every message says who sent it.
  if (m.group != null && !own) bubble.append(el('span', { class: 'sender', text: m.from }));
  if (m.media) bubble.append(mediaView(m));
  if (m.body) bubble.append(el('p', { class: 'body', text: m.body }));
  const meta = el('span', { class: 'meta' });
  if (m.expires_at) meta.append(el('span', { class: 'expires', title: `Disappears ${clock(m.expires_at)}`, 'aria-label': 'Disappearing', text: '◔' }));
  meta.append(el('time', { datetime: new Date(m.sent_at).toISOString(), text: clock(m.sent_at) }));
  if (own) meta.append(ticks(status));
  if (m.id != null) {
    meta.append(el('button', {
      type: 'button',
      class: m.starred ? 'star starred' : 'star',
      'aria-pressed': m.starred ? 'true' : 'false',
      'aria-label': m.starred ? 'Unstar message' : 'Star message',
      title: m.starred ? 'Unstar' : 'Star',
      onclick: () => toggleStar(m),
      text: m.starred ? '★' : '☆',
    }));
  }
  bubble.append(meta);
  if (m.error) bubble.append(el('p', { class: 'error', text: `Not sent: ${m.error}` }));
  li.append(bubble);
  return li;
}

function mediaView(m) {
  const media = m.media;
  const label = media.caption || (media.mime?.startsWith('image/') ? 'Photo' : 'File');
  if (m.id == null) return el('p', { class: 'media-pending', text: `${label} (${media.size ? sizeText(media.size) : 'sending'})` });
  const thumbable = app.limits?.thumbnail_types?.includes(media.mime);
  if (!thumbable) {
    return el('button', { type: 'button', class: 'file', onclick: () => download(media), text: `${label} · ${sizeText(media.size)} · download` });
  }
  const img = el('img', { class: 'thumb', alt: label, width: 240, height: 180 });
  blobUrl(media.id, true).then((url) => { img.src = url; img.removeAttribute('height'); }).catch(() => { img.alt = `${label} (could not load)`; });
  return el('button', { type: 'button', class: 'thumb-button', 'aria-label': `Open ${label} full size`, onclick: () => viewFull(media) }, img);
}

async function blobUrl(id, thumbnail) {
  const key = `${id}${thumbnail ? ':t' : ''}`;
  if (!app.blobs.has(key)) app.blobs.set(key, URL.createObjectURL(await app.api.mediaBlob(id, thumbnail)));
  return app.blobs.get(key);
}

async function viewFull(media) {
  const image = $('viewer-image');
  image.removeAttribute('src');
  image.alt = media.caption || 'Photo';
  $('viewer').showModal();
  try {
    image.src = await blobUrl(media.id, false);
  } catch (e) {
    image.alt = e.message;
  }
}

async function download(media) {
  try {
    const a = el('a', { href: await blobUrl(media.id, false), download: media.caption || `bluetick-${media.id}` });
    a.click();
  } catch (e) {
    showError('conversation-error', e);
  }
}

function scrollToEnd() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

// -------------------------------------------------------------- wiring

function wire() {
  $('signin-form').addEventListener('submit', (e) => { e.preventDefault(); signIn(false); });
  $('register-button').addEventListener('click', () => signIn(true));
  $('signout-button').addEventListener('click', signOut);
  $('newchat-form').addEventListener('submit', newChat);
  $('newgroup-form').addEventListener('submit', newGroup);
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const words = $('search-words').value.trim();
    if (words) showPanel('search', words);
  });
  $('stars-button').addEventListener('click', () => showPanel('stars'));
  $('settings-button').addEventListener('click', () => showPanel('settings'));
  $('panel-back').addEventListener('click', back);
  $('back-button').addEventListener('click', back);
  $('composer').addEventListener('submit', sendText);
  $('composer-text').addEventListener('input', () => typing($('composer-text').value ? 'typing' : 'paused'));
  $('attach').addEventListener('change', sendPicture);
  document.querySelector('label.attach').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      $('attach').click();
    }
  });
  $('timer-select').addEventListener('change', setTimer);
  $('messages').addEventListener('scroll', () => {
    if (app?.open && $('messages').scrollTop < 40) loadEarlier(app.open);
  });
  document.addEventListener('visibilitychange', () => app && render());
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && app && (app.open || app.panel) && !$('viewer').open) back();
  });
}

wire();
const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
if (saved?.token && (!saved.expires_at || saved.expires_at > Date.now())) start(saved);
else showSignIn();
