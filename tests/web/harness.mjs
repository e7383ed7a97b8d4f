// Shared by the browser scenarios in this folder: a headless Chromium
// (Debian's `chromium` package) driven by playwright-core, against the
// real `bluetick serve` that tests/web.rs started.
//
// Environment (set by tests/web.rs):
//   BT_WEB_URL            the server's HTTP origin, e.g. http://127.0.0.1:41234
//   BT_WEB_NODE_MODULES   where scripts/test installed playwright-core
//   BT_WEB_SCREENSHOTS    where screenshots are saved
//   BT_WEB_CHROMIUM       the browser (default /usr/bin/chromium)
//
// A scenario prints one `ok: …` line per promise it checked and exits 0,
// or prints what failed and exits 1 (with screenshots of every page).

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

// ES modules ignore NODE_PATH: resolve playwright-core from its cache.
const require = createRequire(path.join(process.env.BT_WEB_NODE_MODULES || '.', 'x.js'));
const { chromium } = require('playwright-core');

export const base = process.env.BT_WEB_URL;
export const screenshots = process.env.BT_WEB_SCREENSHOTS || 'target/web-screenshots';
/** Generous: the machine is shared and busy; a pass never depends on speed. */
export const PATIENCE = 30_000;

export const PHONE = { width: 390, height: 760 };
export const DESKTOP = { width: 1280, height: 800 };

const pages = [];

/** Launches Chromium. playwright's launch() gives it a fresh temporary profile (--user-data-dir). */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.BT_WEB_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A person: a browser context of their own (own storage) with the app open. */
export async function person(browser, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(PATIENCE);
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  pages.push(page);
  await page.goto(base);
  return { context, page };
}

/** Registers `name` through the sign-in form and waits for the chat list. */
export async function register(page, name, password = `${name}-secret`) {
  await page.getByLabel('User name', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#app:not([hidden])').waitFor();
  await connected(page);
}

/** Two people, alice and bob (unique names), registered in contexts of their own. */
export async function twoPeople(browser) {
  const alice = unique('alice');
  const bob = unique('bob');
  const a = await person(browser);
  const b = await person(browser);
  await register(a.page, alice);
  await register(b.page, bob);
  return { alice, bob, a, b };
}

/** Opens the chat with `peer` from the chat list. */
export async function openChat(page, peer) {
  await page.locator('li.chat', { hasText: peer }).getByRole('button').click();
  await page.locator('#peer-name', { hasText: peer }).waitFor();
}

/** Waits until the page's MQTT connection is up. */
export async function connected(page) {
  await page.locator('#status[data-state="online"]').waitFor({ state: 'attached' });
}

/** Opens (or starts) the chat with `peer` from the new-chat box. */
export async function chatWith(page, peer) {
  await page.getByLabel('Start a chat with (user name)').fill(peer);
  await page.getByRole('button', { name: 'Chat', exact: true }).click();
  await page.locator('#peer-name', { hasText: peer }).waitFor();
}

export async function send(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
}

/** The list item of the message whose text is `text` in the open conversation. */
export function message(page, text) {
  return page.locator('#messages li.msg', { has: page.locator('.body', { hasText: text }) });
}

/** Waits until the own message `text` shows `status` (sent, delivered, read). */
export async function ticks(page, text, status) {
  await message(page, text).locator(`.ticks[data-status="${status}"]`).waitFor();
}

export function unique(prefix) {
  return `${prefix}_${Math.random().toString(36).slice(2, 8)}`;
}

export async function shot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  const file = path.join(screenshots, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

export function ok(promise) {
  console.log(`ok: ${promise}`);
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Runs a scenario: closes the browser whatever happens; exit 1 on failure. */
export async function scenario(name, body) {
  const browser = await launch();
  try {
    await body(browser);
    console.log(`scenario passed: ${name}`);
  } catch (e) {
    console.log(`FAILED ${name}: ${e.stack || e}`);
    for (const [i, page] of pages.entries()) {
      await shot(page, `failed-${name}-${i}`).then((f) => console.log(`screenshot: ${f}`)).catch(() => {});
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
