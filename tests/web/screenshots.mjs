// Screenshots of the chat list and a conversation at phone and desktop
// widths, saved under target/web-screenshots/ (test artifacts).
import { person, register, openChat, chatWith, send, message, ticks, unique, shot, ok, scenario, PHONE, DESKTOP } from './harness.mjs';

await scenario('screenshots', async (browser) => {
  const alice = unique('alice');
  const bob = unique('bob');
  const carol = unique('carol');
  const a = await person(browser, DESKTOP);
  const b = await person(browser, PHONE);
  const c = await person(browser, PHONE);
  await register(a.page, alice);
  await register(b.page, bob);
  await register(c.page, carol);
  await chatWith(c.page, alice);
  await send(c.page, 'Are we still on for Friday?');
  await chatWith(b.page, alice);
  await send(b.page, 'Hi Alice! Lunch tomorrow?');
  await openChat(a.page, bob);
  await message(a.page, 'Hi Alice! Lunch tomorrow?').waitFor();
  await send(a.page, 'Sure! 12:30 at the café by the river?');
  await ticks(a.page, 'Sure! 12:30 at the café by the river?', 'read');
  await send(b.page, 'Perfect, see you there');
  await message(a.page, 'Perfect, see you there').waitFor();
  await send(a.page, 'Bring the photos from the trip');
  await ticks(a.page, 'Bring the photos from the trip', 'read');
  await b.page.getByLabel('Message', { exact: true }).pressSequentially('Will do', { delay: 30 });
  await a.page.locator('#peer-status', { hasText: 'typing…' }).waitFor();

  console.log(`screenshot: ${await shot(a.page, 'desktop-conversation')}`);
  await b.page.waitForTimeout(300);
  console.log(`screenshot: ${await shot(b.page, 'phone-conversation')}`);
  await b.page.getByRole('button', { name: 'Back to chats' }).click();
  console.log(`screenshot: ${await shot(b.page, 'phone-chats')}`);
  await a.page.getByRole('button', { name: 'Back to chats' }).click().catch(() => {});
  await a.page.keyboard.press('Escape');
  console.log(`screenshot: ${await shot(a.page, 'desktop-chats')}`);
  ok('screenshots of the chat list and a conversation at phone and desktop widths');
});
