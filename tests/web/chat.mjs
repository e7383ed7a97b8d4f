// Two people register, find each other and chat: the text appears on the
// other side, and the sender's ticks go ✓ → ✓✓ → read.
import { twoPeople, openChat, chatWith, send, message, ticks, ok, scenario, PATIENCE } from './harness.mjs';

await scenario('chat', async (browser) => {
  const { alice, bob, a, b } = await twoPeople(browser);

  // Bob's browser is offline at first, so the message stays at ✓ (stored
  // on the server) until it comes back; then ✓✓. Bob is looking at his
  // chat list, not at the conversation: delivered, not read.
  await chatWith(a.page, bob);
  await b.context.setOffline(true);
  await send(a.page, 'hello bob');
  await ticks(a.page, 'hello bob', 'sent');
  ok('a message stored by the server shows ✓ while the recipient is offline');
  await b.context.setOffline(false);
  await ticks(a.page, 'hello bob', 'delivered');
  ok('it turns ✓✓ once the recipient\'s browser has it');

  const row = b.page.locator('li.chat', { hasText: alice });
  await row.locator('.chat-last', { hasText: 'hello bob' }).waitFor();
  await row.locator('.unread', { hasText: '1' }).waitFor();
  ok('the chat list of the recipient shows the last message and one unread');

  await row.getByRole('button').click();
  await message(b.page, 'hello bob').waitFor();
  ok('the text appears in the recipient\'s conversation');
  await ticks(a.page, 'hello bob', 'read');
  ok('the sender\'s ticks turn to read when the recipient opens the chat');
  await b.page.locator('li.chat', { hasText: alice }).locator('.unread').waitFor({ state: 'detached' });
  ok('the unread count is gone once read');

  await send(b.page, 'hi alice');
  await message(a.page, 'hi alice').waitFor({ timeout: PATIENCE });
  await ticks(b.page, 'hi alice', 'read');
  ok('a reply arrives live and is read at once by an open conversation');

  // History: after a reload both messages come back once, with their ticks.
  await a.page.reload();
  await openChat(a.page, bob);
  await ticks(a.page, 'hello bob', 'read');
  await message(a.page, 'hi alice').waitFor();
  const count = await a.page.locator('#messages li.msg').count();
  if (count !== 2) throw new Error(`after a reload the conversation has ${count} messages, not 2`);
  ok('a reload shows the history once, with the ticks kept');

  // History pages upward: 35 more messages (sent over HTTP, as a bot
  // would), then a reload shows the newest page and loads the rest on demand.
  await b.page.evaluate(async (to) => {
    const { token } = JSON.parse(localStorage.getItem('bluetick.session'));
    for (let i = 1; i <= 35; i++) {
      const r = await fetch('/v1/messages', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ id: `bulk-${i}`, to, body: `bulk ${i}` }),
      });
      if (r.status !== 201) throw new Error(`POST /v1/messages: ${r.status}`);
    }
  }, alice);
  await message(a.page, 'bulk 35').waitFor();
  await a.page.reload();
  await openChat(a.page, bob);
  await message(a.page, 'bulk 35').waitFor();
  const firstPage = await a.page.locator('#messages li.msg').count();
  if (firstPage !== 30) throw new Error(`the first page has ${firstPage} messages, not 30`);
  // Keyboard users get a button; scrolling to the top loads the same page.
  await a.page.getByRole('button', { name: 'Load earlier messages' }).waitFor();
  await a.page.locator('#messages').evaluate((list) => { list.scrollTop = 0; });
  await message(a.page, 'hello bob').waitFor();
  const all = await a.page.locator('#messages li.msg .body').allTextContents();
  const want = ['hello bob', 'hi alice', ...Array.from({ length: 35 }, (_, i) => `bulk ${i + 1}`)];
  if (JSON.stringify(all) !== JSON.stringify(want)) throw new Error(`after paging: ${JSON.stringify(all)}`);
  await a.page.getByRole('button', { name: 'Load earlier messages' }).waitFor({ state: 'detached' });
  ok('history pages upward from the newest page, in order, each message once');

  await a.page.getByRole('button', { name: 'Sign out' }).click();
  await a.page.getByRole('button', { name: 'Sign in' }).waitFor();
  ok('sign out returns to the sign-in form');
});
