// The MQTT half of the client contract (docs/protocol.md sections 2–5),
// over the vendored MQTT.js (`window.mqtt`, loaded by index.html).
//
// A Session keeps one connection for one user and device, and three
// promises:
//
// - **Every inbox event is applied once, in seq order.** Events are applied
//   one at a time (a promise chain), a seq at or below the last applied one
//   is a duplicate and ignored, a seq past the next one is buffered and
//   the gap filled by a sync. After every (re)connect the session syncs
//   from the last applied seq, which IndexedDB keeps across reloads.
// - **Every message typed reaches the server once.** It is in the durable
//   outbox (local.js) before it is published, and published again, with
//   the same client id, until its ack or error event arrives: after every
//   reconnect, and every few seconds while it waits. One message per peer
//   (or group) is in flight, so it is stored in the order it was typed.
// - **Typing and presence are ephemeral.** QoS 0, never queued: sent only
//   while connected, dropped otherwise.

import { Local } from './local.js';

/**
 * Conversations are named by a key: a peer's user name, or `#ID` for a
 * group (user names are [a-z0-9_], so the two never collide). The outbox
 * keeps the key in `to`.
 */
export function groupOf(key) {
  return typeof key === 'string' && key.startsWith('#') ? Number(key.slice(1)) : null;
}

/** Seconds without an ack before a send is published again (docs: 3 s). */
const RESEND_AFTER_MS = 3000;
/** Events asked per sync; smaller after a replay that left a gap. */
const SYNC_LIMIT = 200;
const SYNC_LIMIT_SMALL = 20;
/** Longest wait for a `synced` before a sync may be asked again. */
const SYNC_PATIENCE_MS = 5000;
/** Pause before asking again after a replay that left a gap. */
const GAP_RETRY_MS = 500;
/** Inbox acks are sent at most this often (docs: a few times a second). */
const ACK_DELAY_MS = 300;

export class Session {
  /**
   * @param {object} o
   * @param {string} o.user  the user name
   * @param {string} o.token an access token
   * @param {string} o.device this browser's device name
   * @param {string} o.wsUrl  the MQTT WebSocket URL (`GET /v1/client-config`)
   * @param {Local} o.local   the durable store
   * @param {object} o.on     callbacks: inbox(event), live(event),
   *   presence(user, state), status(text), outbox(entries), authLost()
   */
  constructor({ user, token, device, wsUrl, local, on }) {
    Object.assign(this, { user, token, device, wsUrl, local, on });
    this.topic = (leaf) => `u/${user}/${leaf}`;
    /** Highest seq applied with nothing missing below it. */
    this.seq = 0;
    /** Events past a gap, by seq, until the gap is filled. */
    this.ahead = new Map();
    /** The durable outbox, in memory too: client id → entry. */
    this.outbox = new Map();
    /** When each outbox entry was last published (not kept: a reload resends). */
    this.publishedAt = new Map();
    /** Users whose presence is watched. */
    this.watched = new Set();
    this.chain = Promise.resolve();
    this.syncAskedAt = 0;
    this.syncLimit = SYNC_LIMIT;
    this.client = null;
    this.stopped = false;
  }

  async start() {
    this.seq = await this.local.seq();
    for (const entry of await this.local.outbox()) this.outbox.set(entry.client_id, entry);
    this.on.outbox([...this.outbox.values()]);
    this.onOffline = () => this.disconnect('offline');
    this.onOnline = () => this.connect();
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
    this.timer = setInterval(() => this.pump(), 1000);
    if (navigator.onLine) this.connect();
    else this.on.status('offline');
  }

  get connected() {
    return Boolean(this.client?.connected);
  }

  connect() {
    if (this.stopped || this.client) return;
    this.on.status('connecting');
    const client = window.mqtt.connect(this.wsUrl, {
      protocolVersion: 4,
      clientId: `${this.user}.${this.device}`,
      username: this.user,
      password: this.token,
      // A persistent session: the broker queues inbox pushes across short
      // drops; sync recovers whatever it loses.
      clean: false,
      // Short: a tab whose network vanishes without closing its socket
      // (Wi-Fi lost, lid closed) is seen offline by the server, and its
      // last seen shown to others, within 1.5 keepalives. A ping every
      // 10 s costs a browser tab nothing that matters.
      keepalive: 10,
      reconnectPeriod: 2000,
      connectTimeout: 10000,
      will: {
        topic: this.topic('presence'),
        payload: JSON.stringify({ state: 'offline', device: this.device }),
        qos: 1,
        retain: false,
      },
    });
    this.client = client;
    client.on('connect', () => this.onConnect());
    client.on('message', (topic, payload) => this.message(topic, payload));
    client.on('reconnect', () => this.on.status('connecting'));
    client.on('close', () => {
      if (this.client === client) this.on.status(navigator.onLine ? 'unreachable' : 'offline');
    });
    client.on('error', (error) => {
      // CONNACK 4 (bad user name or password) or 5: the token is revoked
      // or expired; retrying cannot help.
      if (error?.code === 4 || error?.code === 5) {
        this.disconnect('ended');
        this.on.authLost();
      }
    });
  }

  disconnect(status) {
    const client = this.client;
    this.client = null;
    if (client) client.end(true);
    this.on.status(status);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.ackTimer);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
    this.disconnect('ended');
  }

  /** After every (re)connect: subscribe, sync from the last seq, resend the outbox. */
  onConnect() {
    this.on.status('online');
    this.client.subscribe({ [this.topic('inbox')]: { qos: 1 }, [this.topic('live')]: { qos: 0 } });
    for (const user of this.watched) this.client.subscribe(`presence/${user}`, { qos: 0 });
    this.publish('presence', { state: 'online', device: this.device });
    this.syncAskedAt = 0;
    this.sync();
    if (this.seq > 0) this.ackSoon(); // an ack lost with the last connection
    this.publishedAt.clear();
    this.pump();
  }

  publish(leaf, payload, qos = 1) {
    if (!this.connected) return false;
    this.client.publish(this.topic(leaf), JSON.stringify(payload), { qos });
    return true;
  }

  sync() {
    const now = Date.now();
    if (now - this.syncAskedAt < SYNC_PATIENCE_MS) return;
    if (this.publish('sync', { after: this.seq, limit: this.syncLimit })) this.syncAskedAt = now;
  }

  message(topic, payload) {
    let event;
    try {
      event = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return; // not ours to judge; the server only publishes JSON
    }
    if (topic === this.topic('inbox')) {
      this.chain = this.chain.then(() => this.inbox(event)).catch((e) => console.error('inbox event', e));
    } else if (topic === this.topic('live')) {
      this.on.live(event);
    } else if (topic.startsWith('presence/')) {
      this.on.presence(topic.slice('presence/'.length), event);
    }
  }

  async inbox(event) {
    if (event.seq == null) return this.control(event);
    if (event.seq <= this.seq) return; // a duplicate: applied already
    if (event.seq > this.seq + 1) {
      this.ahead.set(event.seq, event);
      this.sync();
      return;
    }
    await this.apply(event);
    while (this.ahead.has(this.seq + 1)) {
      const next = this.ahead.get(this.seq + 1);
      this.ahead.delete(this.seq + 1);
      await this.apply(next);
    }
    for (const seq of this.ahead.keys()) if (seq <= this.seq) this.ahead.delete(seq);
  }

  /** Applies the event that is `seq + 1`, then records it durably. */
  async apply(event) {
    await this.settle(event);
    this.on.inbox(event);
    this.seq = event.seq;
    await this.local.setSeq(this.seq);
    this.ackSoon();
  }

  /** Events without a seq: the end of a sync, or an ack repeated. */
  async control(event) {
    if (event.type !== 'synced') {
      await this.settle(event);
      this.on.inbox(event);
      return;
    }
    this.syncAskedAt = 0;
    if (event.pruned_through != null && event.pruned_through > this.seq) {
      // Pruned by this user's other devices: history has them.
      this.seq = event.pruned_through;
      await this.local.setSeq(this.seq);
      for (const seq of [...this.ahead.keys()].sort((a, b) => a - b)) {
        const e = this.ahead.get(seq);
        this.ahead.delete(seq);
        if (seq === this.seq + 1) await this.apply(e);
      }
      this.ackSoon();
    }
    // A replay that left a gap lost part of its burst in the broker: ask
    // again for less, after a breath rather than in a tight loop.
    const gap = this.ahead.size > 0 || event.through > this.seq;
    this.syncLimit = gap ? SYNC_LIMIT_SMALL : SYNC_LIMIT;
    if (gap) setTimeout(() => this.sync(), GAP_RETRY_MS);
    else if (event.more) this.sync();
  }

  /** An ack or error ends a send: its outbox entry goes before the seq moves. */
  async settle(event) {
    if ((event.type === 'ack' || event.type === 'error') && event.client_id && this.outbox.has(event.client_id)) {
      await this.local.forget(event.client_id);
      this.outbox.delete(event.client_id);
      this.publishedAt.delete(event.client_id);
      this.on.outbox([...this.outbox.values()]);
      queueMicrotask(() => this.pump());
    }
  }

  ackSoon() {
    clearTimeout(this.ackTimer);
    this.ackTimer = setTimeout(() => this.publish('ack', { up_to: this.seq, device: this.device }), ACK_DELAY_MS);
  }

  /** Puts a message in the durable outbox, then sends it when it may. */
  async send(entry) {
    await this.local.keep(entry);
    this.outbox.set(entry.client_id, entry);
    this.on.outbox([...this.outbox.values()]);
    this.pump();
  }

  /** Forgets an outbox entry the server already has (its ack seen in history). */
  async acknowledged(clientId) {
    if (!this.outbox.has(clientId)) return;
    await this.local.forget(clientId);
    this.outbox.delete(clientId);
    this.on.outbox([...this.outbox.values()]);
  }

  /** Publishes the oldest waiting message of each peer, unless it was just sent. */
  pump() {
    if (!this.connected) return;
    const oldest = new Map();
    for (const entry of this.outbox.values()) {
      const first = oldest.get(entry.to);
      if (!first || entry.created < first.created) oldest.set(entry.to, entry);
    }
    const now = Date.now();
    for (const entry of oldest.values()) {
      if (now - (this.publishedAt.get(entry.client_id) || 0) < RESEND_AFTER_MS) continue;
      const group = groupOf(entry.to);
      const send = group != null
        ? { id: entry.client_id, group, body: entry.body }
        : { id: entry.client_id, to: entry.to, body: entry.body };
      if (entry.media) send.media = entry.media;
      if (this.publish('send', send)) this.publishedAt.set(entry.client_id, now);
    }
  }

  typing(to, state) {
    const group = groupOf(to);
    this.publish('typing', group != null ? { group, state } : { to, state }, 0);
  }

  read(peer, upTo) {
    const group = groupOf(peer);
    return this.publish('read', group != null ? { group, up_to: upTo } : { peer, up_to: upTo });
  }

  watch(user) {
    if (this.watched.has(user)) return;
    this.watched.add(user);
    if (this.connected) this.client.subscribe(`presence/${user}`, { qos: 0 });
  }
}
