// Sign-in errors a person can read.
import { person, register, unique, ok, scenario } from './harness.mjs';

await scenario('signin', async (browser) => {
  const alice = unique('alice');
  const a = await person(browser);
  await register(a.page, alice);
  await a.page.getByRole('button', { name: 'Sign out' }).click();

  await a.page.getByLabel('User name', { exact: true }).fill(alice);
  await a.page.getByLabel('Password', { exact: true }).fill('not the password');
  await a.page.getByRole('button', { name: 'Sign in' }).click();
  await a.page.getByRole('alert').filter({ hasText: 'Wrong user name or password.' }).waitFor();
  ok('a wrong password shows a readable error');

  await a.page.getByLabel('User name', { exact: true }).fill(alice);
  await a.page.getByRole('button', { name: 'Create account' }).click();
  await a.page.getByRole('alert').filter({ hasText: 'That user name is taken' }).waitFor();
  ok('a name taken shows a readable error');

  // Keyboard alone: the name field has focus, Tab to the password, Enter.
  await a.page.getByLabel('User name', { exact: true }).fill('');
  await a.page.getByLabel('User name', { exact: true }).focus();
  await a.page.keyboard.type(alice);
  await a.page.keyboard.press('Tab');
  await a.page.keyboard.type(`${alice}-secret`);
  await a.page.keyboard.press('Enter');
  await a.page.locator('#app:not([hidden])').waitFor();
  ok('the right password signs in, with the keyboard alone');

  // The server goes away: the page says so in words.
  await a.context.route('**/v1/**', (route) => route.abort('connectionrefused'));
  await a.page.getByLabel('Start a chat with (user name)').fill('someone');
  await a.page.getByRole('button', { name: 'Chat', exact: true }).click();
  await a.page.getByRole('alert').filter({ hasText: "Can't reach the server" }).waitFor();
  ok('an unreachable server shows a readable error');

  // Too many wrong passwords for one name (the server allows 3 here).
  const m = await person(browser);
  const name = unique('mallory');
  for (let i = 0; i < 4; i++) {
    await m.page.getByLabel('User name', { exact: true }).fill(name);
    await m.page.getByLabel('Password', { exact: true }).fill(`guess number ${i}`);
    await m.page.getByRole('button', { name: 'Sign in' }).click();
    await m.page.getByRole('alert').filter({ hasText: i < 3 ? 'Wrong user name or password.' : /Too many attempts\. Try again in \d+ seconds\./ }).waitFor();
    await m.page.locator('#signin-button:not([disabled])').waitFor();
  }
  ok('being rate limited shows a readable error with the wait');
});
