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

  await a.page.getByLabel('Password', { exact: true }).fill(`${alice}-secret`);
  await a.page.getByRole('button', { name: 'Sign in' }).click();
  await a.page.locator('#app:not([hidden])').waitFor();
  ok('the right password signs in');

  // The server goes away: the page says so in words.
  await a.context.route('**/v1/**', (route) => route.abort('connectionrefused'));
  await a.page.getByLabel('Start a chat with (user name)').fill('someone');
  await a.page.getByRole('button', { name: 'Chat', exact: true }).click();
  await a.page.getByRole('alert').filter({ hasText: "Can't reach the server" }).waitFor();
  ok('an unreachable server shows a readable error');
});
