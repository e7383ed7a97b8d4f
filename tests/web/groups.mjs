// A group of three: it appears in every member's chat list, a member opens
// it and writes, and everyone else sees the text under the sender's name.
import { twoPeople, person, register, openChat, send, message, ticks, unique, ok, check, scenario } from './harness.mjs';

await scenario('groups', async (browser) => {
  const { alice, bob, a, b } = await twoPeople(browser);
  const carol = unique('carol');
  const c = await person(browser);
  await register(c.page, carol);

  // A member who does not exist is refused, readably.
  await a.page.getByLabel('New group name').fill('Nobody');
  await a.page.getByLabel('Group members (user names, separated by commas)').fill('no_such_user');
  await a.page.getByRole('button', { name: 'Create', exact: true }).click();
  await a.page.locator('#sidebar-error', { hasText: /./ }).waitFor();
  ok('a group with an unknown member is refused with a message');

  const name = `Lunch ${unique('crew')}`;
  await a.page.getByLabel('New group name').fill(name);
  await a.page.getByLabel('Group members (user names, separated by commas)').fill(`${bob}, ${carol}`);
  await a.page.getByRole('button', { name: 'Create', exact: true }).click();
  await a.page.locator('#peer-name', { hasText: name }).waitFor();
  ok('the creator makes a group from the chat list and it opens');
  for (const p of [a.page, b.page, c.page]) await p.locator('li.chat', { hasText: name }).waitFor();
  ok('the new group appears in every member\'s chat list, live');

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
