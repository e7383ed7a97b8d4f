// A picture: picked, uploaded with progress, sent; the recipient sees a
// thumbnail that opens full size. A file over the server's limit is
// refused before upload with a readable message.
import { deflateSync, crc32 } from 'node:zlib';
import { twoPeople, openChat, chatWith, send, message, ticks, ok, check, scenario } from './harness.mjs';

/** A real PNG of `width`×`height`, a colour gradient. */
function png(width, height) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'ascii');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = y * (width * 3 + 1) + 1 + x * 3;
      raw[at] = (x * 255) / width;
      raw[at + 1] = (y * 255) / height;
      raw[at + 2] = 160;
    }
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

await scenario('media', async (browser) => {
  const { alice, bob, a, b } = await twoPeople(browser);
  await chatWith(a.page, bob);
  await send(a.page, 'a picture for you');
  await openChat(b.page, alice);

  await a.page.locator('#attach').setInputFiles({ name: 'gradient.png', mimeType: 'image/png', buffer: png(800, 600) });
  await a.page.locator('#messages li.msg.own .thumb').waitFor();
  await a.page.locator('#messages li.msg.own:has(.thumb) .ticks[data-status="read"]').waitFor();
  ok('a picture picked is uploaded, sent and read');

  const thumb = b.page.locator('#messages li.msg.theirs img.thumb');
  await thumb.waitFor();
  await b.page.waitForFunction(() => {
    const img = document.querySelector('#messages li.msg.theirs img.thumb');
    return img && img.complete && img.naturalWidth > 0;
  });
  const small = await thumb.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  check(small[0] === 320 && small[1] === 240, `the thumbnail is ${small}, not 320×240`);
  ok('it arrives on the other side as a thumbnail (320×240 of 800×600)');

  await b.page.getByRole('button', { name: 'Open Photo full size' }).click();
  await b.page.waitForFunction(() => {
    const img = document.getElementById('viewer-image');
    return document.getElementById('viewer').open && img.complete && img.naturalWidth > 0;
  });
  const full = await b.page.locator('#viewer-image').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  check(full[0] === 800 && full[1] === 600, `the full picture is ${full}, not 800×600`);
  ok('clicking the thumbnail opens the picture full size');
  await b.page.keyboard.press('Escape');

  const limits = await a.page.evaluate(() => fetch('/v1/media/config').then((r) => r.json()));
  const big = Buffer.alloc(limits.max_size + 1, 7);
  await a.page.locator('#attach').setInputFiles({ name: 'huge.png', mimeType: 'image/png', buffer: big });
  await a.page.locator('#conversation-error', { hasText: 'is too large' }).waitFor();
  ok('a file over the server\'s limit is refused before upload with a readable message');
});
