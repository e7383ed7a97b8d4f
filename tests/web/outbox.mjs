// The durable outbox: a reload in the middle of sending loses nothing and
// duplicates nothing; messages typed offline arrive once, in order, when
// the browser is back online.
import { twoPeople, openChat, chatWith, send, message, ticks, ok, check, scenario, PATIENCE } from './harness.mjs';

/** Texts of the conversation's messages, in screen order. */
const texts = (page) => page.locator('#messages li.msg .body').allTextContents();

/**
 * Waits until `who`'s conversation shows exactly `expected`. A page that
 * was just reloaded fills its list from history in pages, so it may show a
 * prefix for a moment; it must never show a message twice, so a snapshot
 * with a duplicate fails at once.
 */
async function shows(page, expected, who) {
  const deadline = Date.now() + PATIENCE;
  let seen = [];
  while (Date.now() < deadline) {
    seen = await texts(page);
    check(new Set(seen).size === seen.length, `${who} sees a message twice: ${JSON.stringify(seen)}`);
    if (JSON.stringify(seen) === JSON.stringify(expected)) return;
    await page.waitForTimeout(100);
  }
  check(false, `${who} sees ${JSON.stringify(seen)}`);
}

/**
 * Puts a switchboard between the page and the server's WebSocket: while
 * `hold.up` is set, frames from the page are dropped (the send never
 * reaches the server); while `hold.down` is set, frames to the page are
 * dropped (the server stores the send but its ack never arrives).
 */
async function switchboard(page) {
  const hold = { up: false, down: false };
  await page.routeWebSocket(/\/mqtt$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => { if (!hold.up) server.send(m); });
    server.onMessage((m) => { if (!hold.down) ws.send(m); });
  });
  return hold;
}

await scenario('outbox', async (browser) => {
  const { alice, bob, a, b } = await twoPeople(browser);
  const hold = await switchboard(a.page);
  await a.page.reload(); // the switchboard takes the connections opened from now on
  await a.page.locator('#status[data-state="online"]').waitFor({ state: 'attached' });
  await chatWith(a.page, bob);
  await send(a.page, 'first, to make a chat');
  await ticks(a.page, 'first, to make a chat', 'delivered');
  await openChat(b.page, alice);

  // 1. The send never left: after the reload it is still waiting, then sent.
  hold.up = true;
  await send(a.page, 'typed before a reload');
  await ticks(a.page, 'typed before a reload', 'pending');
  await a.page.reload();
  hold.up = false;
  await openChat(a.page, bob);
  await ticks(a.page, 'typed before a reload', 'read');
  ok('a message whose send was cut by a reload is sent after it, and read');

  // 2. The server stored it but the ack was lost in the reload.
  hold.down = true;
  await send(a.page, 'stored but not acked');
  await message(b.page, 'stored but not acked').waitFor();
  await ticks(a.page, 'stored but not acked', 'pending');
  await a.page.reload();
  hold.down = false;
  await openChat(a.page, bob);
  await ticks(a.page, 'stored but not acked', 'read');
  ok('a message stored before a reload whose ack was lost shows once, with its ticks');

  // 3. A burst, reloaded at once, wherever the sends were.
  for (const text of ['burst one', 'burst two', 'burst three']) await send(a.page, text);
  await a.page.reload();
  await openChat(a.page, bob);
  await ticks(a.page, 'burst three', 'read');

  // 4. A reload before IndexedDB commits: the test holds the outbox store
  // in a transaction of its own (kept alive by a chain of reads), so the
  // page's write waits behind it when the page goes.
  await a.page.evaluate((name) => new Promise((resolve, reject) => {
    const open = indexedDB.open(name);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const store = open.result.transaction('outbox', 'readwrite').objectStore('outbox');
      const spin = () => { store.get('-').onsuccess = spin; };
      spin();
      resolve();
    };
  }), `bluetick:${alice}`);
  await send(a.page, 'sent as the page went');
  await ticks(a.page, 'sent as the page went', 'pending');
  await a.page.reload();
  await openChat(a.page, bob);
  await ticks(a.page, 'sent as the page went', 'read');

  const expected = ['first, to make a chat', 'typed before a reload', 'stored but not acked',
    'burst one', 'burst two', 'burst three', 'sent as the page went'];
  await message(b.page, 'sent as the page went').waitFor();
  await shows(b.page, expected, 'the recipient');
  await shows(a.page, expected, 'the sender');
  await b.page.reload();
  await openChat(b.page, alice);
  await message(b.page, 'sent as the page went').waitFor();
  await shows(b.page, expected, 'after a reload the recipient');
  ok('reloads while sending lose nothing and duplicate nothing, on either side');

  // 5. Offline: three messages typed, then online.
  await a.context.setOffline(true);
  await a.page.locator('#status[data-state="offline"]').waitFor();
  for (const text of ['offline one', 'offline two', 'offline three']) await send(a.page, text);
  for (const text of ['offline one', 'offline two', 'offline three']) await ticks(a.page, text, 'pending');
  await b.page.waitForTimeout(1500);
  check(await message(b.page, 'offline one').count() === 0, 'a message typed offline arrived while offline');
  ok('messages typed offline wait in the outbox, shown as sending');
  await a.context.setOffline(false);
  await ticks(a.page, 'offline three', 'read');
  await message(b.page, 'offline three').waitFor();
  const after = await texts(b.page);
  check(JSON.stringify(after.slice(-3)) === JSON.stringify(['offline one', 'offline two', 'offline three']) &&
    after.length === expected.length + 3, `after going online the recipient sees ${JSON.stringify(after)}`);
  ok('back online, all three arrive once and in order');
});
