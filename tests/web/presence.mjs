// Typing and presence show, and disappear when the watched person sets
// last seen to nobody.
import { twoPeople, openChat, chatWith, send, message, ok, check, scenario } from './harness.mjs';

await scenario('presence', async (browser) => {
  const { alice, bob, a, b } = await twoPeople(browser);
  await chatWith(a.page, bob);
  await send(a.page, 'are you there?');
  await openChat(b.page, alice);
  await message(b.page, 'are you there?').waitFor();

  await a.page.locator('#peer-status', { hasText: 'online' }).waitFor();
  ok('the conversation shows the peer online');

  await b.page.getByLabel('Message', { exact: true }).pressSequentially('yes I am', { delay: 50 });
  await a.page.locator('#peer-status', { hasText: 'typing…' }).waitFor();
  ok('typing shows on the other side');
  await b.page.getByRole('button', { name: 'Send', exact: true }).click();
  await message(a.page, 'yes I am').waitFor();
  await a.page.locator('#peer-status', { hasText: 'online' }).waitFor();
  ok('typing stops showing when the message arrives');

  await b.context.setOffline(true);
  await a.page.locator('#peer-status', { hasText: 'last seen' }).waitFor();
  ok('the peer going offline shows their last seen');
  await b.context.setOffline(false);
  await a.page.locator('#peer-status', { hasText: 'online' }).waitFor();

  // Bob hides his last seen.
  await b.page.getByRole('button', { name: 'Settings' }).click();
  await b.page.getByLabel('Who sees my last seen, online status and typing').selectOption('nobody');
  await b.page.getByRole('button', { name: 'Save' }).click();
  await b.page.getByText('Saved.').waitFor();
  await b.context.setOffline(true);
  await b.page.waitForTimeout(1000);
  await b.context.setOffline(false);
  await b.page.locator('#status[data-state="online"]').waitFor({ state: 'attached' });
  await a.page.waitForFunction(() => document.getElementById('peer-status').textContent === '');
  ok('under privacy nobody, presence and last seen are gone');

  await openChat(b.page, alice);
  await b.page.getByLabel('Message', { exact: true }).pressSequentially('secret typing', { delay: 50 });
  await a.page.waitForTimeout(2000);
  check(await a.page.locator('#peer-status', { hasText: 'typing' }).count() === 0, 'typing showed under privacy nobody');
  check(await a.page.locator('li.chat .typing').count() === 0, 'typing showed in the chat list under privacy nobody');
  ok('under privacy nobody, typing is not shown');
});
