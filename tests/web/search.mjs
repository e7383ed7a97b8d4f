// Search across chats (case and accents ignored), stars, and a
// disappearing timer per chat.
import { person, register, openChat, chatWith, send, message, ticks, unique, ok, check, scenario } from './harness.mjs';

await scenario('search', async (browser) => {
  const alice = unique('alice');
  const bob = unique('bob');
  const carol = unique('carol');
  const a = await person(browser);
  const b = await person(browser);
  const c = await person(browser);
  await register(a.page, alice);
  await register(b.page, bob);
  await register(c.page, carol);
  await chatWith(a.page, bob);
  await send(a.page, 'Le Café est ouvert');
  await send(a.page, 'nothing to find here');
  await ticks(a.page, 'nothing to find here', 'delivered');
  await chatWith(c.page, alice);
  await send(c.page, 'un autre café ?');
  await a.page.locator('li.chat', { hasText: carol }).waitFor();

  // A message becomes searchable once the server's indexer has passed it
  // (docs/protocol.md 6.5: within about a second), so search again as a
  // person would until both show, for up to 30 s.
  for (let attempt = 0; ; attempt++) {
    await a.page.getByLabel('Search messages').fill('CAFE');
    await a.page.getByRole('button', { name: 'Search', exact: true }).click();
    try {
      await a.page.locator('.result-body', { hasText: 'Le Café est ouvert' }).waitFor({ timeout: 2000 });
      await a.page.locator('.result-body', { hasText: 'un autre café ?' }).waitFor({ timeout: 2000 });
      break;
    } catch (e) {
      if (attempt >= 14) throw e;
    }
  }
  check(await a.page.locator('.result').count() === 2, 'search found other messages too');
  ok('search finds a word across chats whatever its case and accents');
  await a.page.locator('.result', { hasText: 'Le Café' }).click();
  await message(a.page, 'Le Café est ouvert').waitFor();
  ok('a search result opens its conversation');

  await message(a.page, 'Le Café est ouvert').getByRole('button', { name: 'Star message' }).click();
  await message(a.page, 'Le Café est ouvert').getByRole('button', { name: 'Unstar message' }).waitFor();
  await a.page.getByRole('button', { name: '★ Starred messages' }).click();
  await a.page.locator('.result-body', { hasText: 'Le Café est ouvert' }).waitFor();
  check(await a.page.locator('.result').count() === 1, 'the starred list has other messages');
  ok('a starred message is in the starred list');
  await a.page.locator('.result').click();
  await message(a.page, 'Le Café est ouvert').getByRole('button', { name: 'Unstar message' }).click();
  await message(a.page, 'Le Café est ouvert').getByRole('button', { name: 'Star message' }).waitFor();
  await a.page.getByRole('button', { name: '★ Starred messages' }).click();
  await a.page.getByText('No starred messages yet.').waitFor();
  ok('unstarring takes it off the list');

  await openChat(a.page, bob);
  await a.page.getByLabel('Disappearing').selectOption('86400');
  await openChat(b.page, alice);
  await b.page.waitForFunction(() => document.getElementById('timer-select').value === '86400');
  ok('a disappearing timer set by one side shows on the other');
  await send(a.page, 'this one disappears');
  await message(b.page, 'this one disappears').locator('.expires').waitFor();
  ok('a message sent under the timer is marked as disappearing');
});
