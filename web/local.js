// What the browser keeps for one user, in IndexedDB, so that a reload or a
// closed tab loses nothing:
//
// - `outbox`: every message typed and not yet acknowledged (its ack event,
//   ✓), keyed by its client id. It is written before the message is
//   published and deleted only when its ack or error event arrives, so a
//   message survives a reload, a crash or a night offline, and its resend
//   carries the same client id (the server stores it once). IndexedDB
//   commits asynchronously, so a reload right after Send could beat it:
//   an entry is first written to a journal in localStorage, synchronously,
//   in the same task as the click, and leaves the journal once IndexedDB
//   has committed it. Opening the store moves what the journal still
//   holds into the outbox.
// - `meta`: the highest contiguous inbox seq applied (`seq`), from which
//   the next sync starts. It is advanced only after the events up to it
//   were applied (outbox entries deleted first), and the server is told
//   (`ack`) only after it was written.
//
// Message history itself is not kept here: the server's history API is the
// archive (docs/protocol.md 6.3).

const VERSION = 1;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export function databaseName(user) {
  return `bluetick:${user}`;
}

function journalKey(user) {
  return `bluetick.journal:${user}`;
}

function readJournal(user) {
  try {
    const list = JSON.parse(localStorage.getItem(journalKey(user)) || '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return []; // unreadable: nothing can be recovered from it
  }
}

function writeJournal(user, list) {
  if (list.length) localStorage.setItem(journalKey(user), JSON.stringify(list));
  else localStorage.removeItem(journalKey(user));
}

/** The local store of `user`. */
export class Local {
  static async open(user) {
    const open = indexedDB.open(databaseName(user), VERSION);
    open.onupgradeneeded = () => {
      const db = open.result;
      db.createObjectStore('outbox', { keyPath: 'client_id' });
      db.createObjectStore('meta', { keyPath: 'key' });
    };
    const local = new Local(user, await request(open));
    for (const entry of readJournal(user)) await local.keep(entry);
    return local;
  }

  constructor(user, db) {
    this.user = user;
    this.db = db;
  }

  async outbox() {
    const all = await request(this.db.transaction('outbox').objectStore('outbox').getAll());
    return all.sort((a, b) => a.created - b.created);
  }

  /** Keeps `entry`: in the journal before this returns its promise, in IndexedDB when that resolves. */
  async keep(entry) {
    const journal = readJournal(this.user).filter((e) => e.client_id !== entry.client_id);
    writeJournal(this.user, [...journal, entry]);
    const tx = this.db.transaction('outbox', 'readwrite');
    tx.objectStore('outbox').put(entry);
    await done(tx);
    writeJournal(this.user, readJournal(this.user).filter((e) => e.client_id !== entry.client_id));
  }

  async forget(clientId) {
    writeJournal(this.user, readJournal(this.user).filter((e) => e.client_id !== clientId));
    const tx = this.db.transaction('outbox', 'readwrite');
    tx.objectStore('outbox').delete(clientId);
    await done(tx);
  }

  async seq() {
    const row = await request(this.db.transaction('meta').objectStore('meta').get('seq'));
    return row ? row.value : 0;
  }

  async setSeq(seq) {
    const tx = this.db.transaction('meta', 'readwrite');
    tx.objectStore('meta').put({ key: 'seq', value: seq });
    await done(tx);
  }

  close() {
    this.db.close();
  }

  /** Deletes everything this browser kept for `user` (sign-out). */
  static async erase(user) {
    localStorage.removeItem(journalKey(user));
    await request(indexedDB.deleteDatabase(databaseName(user))).catch(() => {});
  }
}
