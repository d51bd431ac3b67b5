import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, Browser } from 'playwright-core';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { startServer, RunningServer } from '../src/server/app';
import { DEFAULT_CONFIG } from '../src/server/config';

const CHROMIUM = '/usr/bin/chromium';

describe('browser: the monitoring page in chromium', function () {
  this.timeout(90000);
  let clf: LayersClassifier;
  let server: RunningServer;
  let browser: Browser;

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) this.skip();
    await initBackend();
    clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    server = await startServer({
      config: { ...DEFAULT_CONFIG, sources: [], ffmpegInputArgs: [], port: 0, source: 'synthetic', width: 320, height: 240, fps: 15, logLevel: 'silent' },
      classifier: clf,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    clf?.model.dispose();
  });

  it('shows both panels updating, and the server acknowledges a new ε from the slider', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    const external: string[] = [];
    page.on('request', (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) external.push(r.url()); });
    await page.goto(server.url);

    await page.waitForFunction(() => Number(document.getElementById('frame-counter')!.dataset.frames) >= 3, undefined, { timeout: 30000 });
    const srcs1 = await page.evaluate(() => [(document.getElementById('img-frame') as HTMLImageElement).src, (document.getElementById('img-adv') as HTMLImageElement).src]);
    await page.waitForFunction((old) => (document.getElementById('img-adv') as HTMLImageElement).src !== old[1]
      && (document.getElementById('img-frame') as HTMLImageElement).src !== old[0], srcs1, { timeout: 15000 });
    // Both prediction panels are filled, images decoded.
    assert.equal(await page.locator('#pred-clean .row').count(), 5);
    assert.equal(await page.locator('#pred-adv .row').count(), 5);
    // A new src decodes asynchronously: wait for it rather than race it (fails if it never is 32 px).
    await page.waitForFunction(() => (document.getElementById('img-adv') as HTMLImageElement).naturalWidth === 32, undefined, { timeout: 10000 });
    assert.match(await page.textContent('#source-state') ?? '', /synthetic: running/);

    // Move the ε slider: the page shows the server's acknowledgement, and the daemon has it.
    await page.locator('#eps').fill('20');
    await page.waitForSelector('#eps-ack[data-eps="20"].confirmed', { timeout: 10000 });
    assert.ok(Math.abs(server.daemon.settings.eps - 20 / 255) < 1e-9);
    await page.waitForFunction(() => /20\/255/.test(document.getElementById('info-eps')!.textContent ?? ''), undefined, { timeout: 10000 });

    // Drag a square on the clean panel: the ROI reaches the daemon.
    const box = (await page.locator('#clean-stage').boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.1);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.4, { steps: 5 });
    await page.mouse.up();
    const deadline = Date.now() + 5000;
    while (!server.daemon.settings.roi && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const roi = server.daemon.settings.roi!;
    assert.ok(roi && Math.abs(roi.x - 0.1) < 0.03 && Math.abs(roi.y - 0.1) < 0.03, JSON.stringify(roi));
    assert.ok(Math.abs(roi.w * 320 - roi.h * 240) < 2, 'a square in pixels');

    await page.waitForTimeout(1500); // let the chart and the latency table fill in
    const shot = path.join(os.tmpdir(), 'advsign-page.png');
    await page.screenshot({ path: shot });
    assert.ok(fs.statSync(shot).size > 10_000);
    assert.deepEqual(external, [], 'every asset is served locally');
    assert.deepEqual(problems, []);
    await page.close();
  });
});
