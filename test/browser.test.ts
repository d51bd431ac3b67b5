import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, Browser } from 'playwright-core';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { saveModel } from '../src/inference/model-io';
import { stickerCommand, outputPaths } from '../src/cli/sticker';
import { startServer, RunningServer } from '../src/server/app';
import { DEFAULT_CONFIG } from '../src/server/config';
import { tinyStickerArgs } from './helpers';

const CHROMIUM = '/usr/bin/chromium';

/** Viewports the page is laid out for: phone, tablet, laptop, classroom projector. */
const VIEWPORTS = [
  { name: 'phone', width: 390, height: 844 },
  { name: 'tablet', width: 768, height: 1024 },
  { name: 'laptop', width: 1280, height: 800 },
  { name: 'projector', width: 1920, height: 1080 },
];

/** In the page: every visible text box shows all of its text, and nothing is wider than the window. */
function layoutProblems(): string[] {
  const out: string[] = [];
  const de = document.documentElement;
  if (de.scrollWidth > window.innerWidth + 1) out.push(`page is ${de.scrollWidth} px wide in a ${window.innerWidth} px window`);
  const sel = '.verdict, .title, .hint, .pred .name, .pred .p, .ctl, button, .note, .pert-info > div, .sticker-rate, .pill, .download, .card-head, .meta';
  for (const e of Array.from(document.querySelectorAll<HTMLElement>(sel))) {
    const r = e.getBoundingClientRect();
    if (!e.offsetParent || r.width === 0) continue; // hidden
    const what = `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${e.className} "${(e.textContent ?? '').trim().slice(0, 30)}"`;
    if (e.scrollWidth > e.clientWidth + 1) out.push(`${what}: text cut (${e.scrollWidth} > ${e.clientWidth} px)`);
    if (e.scrollHeight > e.clientHeight + 2 && getComputedStyle(e).overflowY !== 'visible') out.push(`${what}: text cut vertically`);
    if (r.right > window.innerWidth + 1 || r.left < -1) out.push(`${what}: outside the window (${Math.round(r.left)}…${Math.round(r.right)})`);
  }
  return out;
}

describe('browser: the monitoring page in chromium', function () {
  this.timeout(180000);
  let clf: LayersClassifier;
  let server: RunningServer;
  let browser: Browser;
  let dir: string;
  let runJson: string;

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) this.skip();
    await initBackend();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-browser-'));
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 });
    const modelDir = path.join(dir, 'model');
    await saveModel(model, modelDir);
    clf = new LayersClassifier(model);
    const log = console.log;
    console.log = () => undefined;
    try {
      const out = path.join(dir, 'run', 'stop-30.pdf');
      await stickerCommand(tinyStickerArgs(modelDir, out));
      runJson = outputPaths(out).json;
    } finally {
      console.log = log;
    }
    server = await startServer({
      config: {
        ...DEFAULT_CONFIG,
        sources: [],
        ffmpegInputArgs: [],
        port: 0,
        source: 'synthetic',
        width: 320,
        height: 240,
        fps: 15,
        logLevel: 'silent',
        printDir: path.join(dir, 'prints'),
      },
      classifier: clf,
      modelPath: modelDir,
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
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('shows both panels updating, and the server acknowledges a new ε from the slider', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    const external: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(server.url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) external.push(r.url());
    });
    await page.goto(server.url);

    await page.waitForFunction(() => Number(document.getElementById('frame-counter')!.dataset.frames) >= 3, undefined, { timeout: 30000 });
    const srcs1 = await page.evaluate(() => [
      (document.getElementById('img-frame') as HTMLImageElement).src,
      (document.getElementById('img-adv') as HTMLImageElement).src,
    ]);
    await page.waitForFunction(
      (old) =>
        (document.getElementById('img-adv') as HTMLImageElement).src !== old[1] && (document.getElementById('img-frame') as HTMLImageElement).src !== old[0],
      srcs1,
      { timeout: 15000 },
    );
    // Both prediction panels are filled, images decoded.
    assert.equal(await page.locator('#pred-clean .row').count(), 5);
    assert.equal(await page.locator('#pred-adv .row').count(), 5);
    // A new src decodes asynchronously: wait for it rather than race it (fails if it never is 32 px).
    await page.waitForFunction(() => (document.getElementById('img-adv') as HTMLImageElement).naturalWidth === 32, undefined, { timeout: 10000 });
    assert.match((await page.textContent('#source-state')) ?? '', /synthetic: running/);

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

  it('fits phone, tablet, laptop and projector: no overflow, no clipped text, also in presentation', async () => {
    for (const v of VIEWPORTS) {
      const page = await browser.newPage({ viewport: { width: v.width, height: v.height } });
      await page.goto(server.url);
      await page.waitForFunction(() => Number(document.getElementById('frame-counter')!.dataset.frames) >= 3, undefined, { timeout: 30000 });
      await page.waitForTimeout(300);
      assert.deepEqual(await page.evaluate(layoutProblems), [], `${v.name} ${v.width}×${v.height}`);
      // The verdict's whole sentence is there: it wraps, it is never cut to "No…".
      const verdict = await page.locator('#verdict').boundingBox();
      assert.ok(verdict && verdict.width >= Math.min(v.width - 40, 300), `${v.name}: verdict ${verdict?.width} px wide`);
      await page.keyboard.press('p');
      await page.waitForSelector('body.presentation');
      await page.waitForTimeout(300);
      assert.deepEqual(await page.evaluate(layoutProblems), [], `${v.name} presentation`);
      assert.equal(await page.locator('.controls').isVisible(), false, 'presentation hides the controls');
      for (const id of ['#panel-clean', '#panel-pert', '#panel-adv', '#verdict']) assert.ok(await page.locator(id).isVisible(), id);
      if (v.name === 'projector') {
        const size = await page.locator('#verdict').evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
        assert.ok(size >= 48, `projector verdict ${size} px`);
        // Panels and verdict fit the screen without scrolling.
        const bottom = await page.locator('#panels').evaluate((e) => e.getBoundingClientRect().bottom);
        assert.ok(bottom <= v.height, `panels end at ${bottom} px`);
      }
      await page.screenshot({ path: path.join(os.tmpdir(), `advsign-page-${v.name}-presentation.png`) });
      await page.close();
    }
  });

  it('loads a sticker run, shows clean vs with sticker and its fooled rate, then prints a camera-robust sticker', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    await page.goto(server.url);
    await page.waitForFunction(() => Number(document.getElementById('frame-counter')!.dataset.frames) >= 2, undefined, { timeout: 30000 });
    // The JSON alone is not enough: the page names the file it also needs.
    await page.setInputFiles('#sticker-file', [runJson]);
    await page.waitForFunction(() => /also pick stop-30-layer\.png/.test(document.getElementById('sticker-status')!.textContent ?? ''), undefined, {
      timeout: 5000,
    });
    await page.setInputFiles('#sticker-file', [runJson, path.join(path.dirname(runJson), 'stop-30-layer.png')]);
    await page.waitForSelector('#panel-sticker:not([hidden])', { timeout: 10000 });
    await page.waitForFunction(() => document.querySelectorAll('#pred-sticker .row').length === 5, undefined, { timeout: 10000 });
    // Until the first stats message with the sticker on, data-rate is absent (undefined) or '': wait for a value.
    await page.waitForFunction(() => ((document.getElementById('sticker-rate') as HTMLElement).dataset.rate ?? '') !== '', undefined, { timeout: 10000 });
    assert.match((await page.textContent('#sticker-rate')) ?? '', /^\d+(\.\d)? %$/);
    assert.match((await page.textContent('#sticker-hint')) ?? '', /Stop → Speed limit \(30km\/h\)/);
    await page.waitForFunction(() => (document.getElementById('img-sticker') as HTMLImageElement).naturalWidth === 32, undefined, { timeout: 10000 });
    assert.deepEqual(await page.evaluate(layoutProblems), [], 'with the sticker panel');

    // Print: a short job for the sign in view (fewer steps than the page offers, to keep the test quick).
    await page.evaluate(() => {
      const s = document.getElementById('job-steps') as HTMLSelectElement;
      s.add(new Option('test', '4'));
      s.value = '4';
    });
    await page.selectOption('#job-target', 'any');
    await page.click('#job-start');
    await page.waitForSelector('#job-progress:not([hidden])', { timeout: 10000 });
    await page.waitForFunction(
      () =>
        /Printing .*: (starting|optimising|measuring|writing)/.test(document.getElementById('job-status')!.textContent ?? '') ||
        /Done/.test(document.getElementById('job-status')!.textContent ?? ''),
      undefined,
      { timeout: 30000 },
    );
    await page.waitForSelector('#job-pdf:not([hidden])', { timeout: 90000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#job-pdf')]);
    const pdf = fs.readFileSync(await download.path());
    assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');
    assert.match(pdf.subarray(pdf.length - 8).toString('latin1'), /%%EOF\s*$/);
    assert.ok(pdf.length > 10_000, `${pdf.length} bytes`);
    // The printed sticker became the virtual sticker.
    await page.waitForFunction(() => /^job-/.test((document.getElementById('sticker-select') as HTMLSelectElement).value), undefined, { timeout: 10000 });
    await page.waitForFunction(() => /^job-/.test(document.getElementById('panel-sticker')!.dataset.sticker ?? ''), undefined, { timeout: 10000 });
    await page.screenshot({ path: path.join(os.tmpdir(), 'advsign-page-sticker.png') });
    assert.deepEqual(problems, []);
    await page.close();
  });
});
