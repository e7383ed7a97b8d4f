// A group of three: it appears in every member's chat list, a member opens
// it and writes, and everyone else sees the text under the sender's name.
import { twoPeople, person, register, openChat, send, message, ticks, unique, ok, check, scenario } from './harness.mjs';

await scenario('groups', async (browser) => {
  const { alice, bob, a, b } = await twoPeople(browser);
  const carol = unique('carol');
  const c = await person(browser);
  await register(c.page, carol);

  // Alice creates the group over HTTP, as a bot or another client would.
  const name = `Lunch ${unique('crew')}`;
  await a.page.evaluate(async ({ name, members }) => {
    const { token } = JSON.parse(localStorage.getItem('bluetick.session'));
    const r = await fetch('/v1/groups', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name, members }),
    });
    if (r.status !== 201) throw new Error(`POST /v1/groups: ${r.status} ${await r.text()}`);
  }, { name, members: [bob, carol] });
  for (const p of [a.page, b.page, c.page]) await p.locator('li.chat', { hasText: name }).waitFor();
  ok('a new group appears in every member\'s chat list, live');

  await openChat(b.page, name);
  await b.page.locator('#messages li.system', { hasText: `${alice} created the group` }).waitFor();
  ok('the conversation says who created the group');
  await send(b.page, 'pizza at one?');
  await ticks(b.page, 'pizza at one?', 'sent');
  ok('a member opens the group and sends; the message is stored (✓)');

  const aliceRow = a.page.locator('li.chat', { hasText: name });
  await aliceRow.locator('.chat-last', { hasText: `${bob}: pizza at one?` }).waitFor();
  ok('the chat list shows who wrote the last message of a group');

  for (const p of [a.page, c.page]) {
    await openChat(p, name);
    await message(p, 'pizza at one?').locator('.sender', { hasText: bob }).waitFor();
  }
  ok('every other member sees the text under the sender\'s name');

  await send(a.page, 'yes!');
  await message(b.page, 'yes!').locator('.sender', { hasText: alice }).waitFor();
  await message(c.page, 'yes!').locator('.sender', { hasText: alice }).waitFor();
  const own = await message(a.page, 'yes!').locator('.sender').count();
  check(own === 0, 'the sender\'s own message carries no name');
  ok('a reply reaches both other members, named; one\'s own is not');

  const bodies = await c.page.locator('#messages li.msg .body').allTextContents();
  check(JSON.stringify(bodies) === JSON.stringify(['pizza at one?', 'yes!']), `carol sees ${JSON.stringify(bodies)}`);
  ok('each message shows once, in order');
});
