// The page end to end in headless Chromium, driven through ChromeDriver's WebDriver API (Node's own fetch; no npm
// packages): serve web/dist, open the page, train a `tiny` model for a few steps, check that the preview grid is not
// blank, sample a few steps, download the checkpoint, give it images as a drop would, and take a screenshot.
//
//   node web/e2e.mjs DOWNLOAD_DIR [SCREENSHOT.png]
//   node web/e2e.mjs --bench STEPS PRESET…     training steps/s of each preset at batch 32 in the page
//   node web/e2e.mjs --showcase PNG           the bundled model sampled and on the slider: docs/web-page.png
//
// Prints the downloaded checkpoint's path last; web/test samples it with the desktop binary. Every wait has a
// deadline, and a failure names what did not happen. The bench trains 2 steps first (the pipelines compile then),
// then STEPS more with no preview and one checkpoint, and prints the page's own steps/s of the second run (the
// library's metrics row: steps over the seconds since the run began, read at the last step's report).
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { readFile, readdir, writeFile, mkdir } from "node:fs/promises";
import { extname, join, resolve } from "node:path";

const args = process.argv.slice(2);
const bench = args[0] === "--bench" ? { steps: Number(args[1]), presets: args.slice(2) } : null;
const showcase = args[0] === "--showcase" ? resolve(args[1]) : null;
const [downloads, screenshot] = bench || showcase
  ? [resolve("/tmp/diffuse-e2e-extra"), showcase]
  : args.map((p) => resolve(p));
if (!downloads || (bench && !(bench.steps > 0 && bench.presets.length))) {
  throw new Error("usage: node web/e2e.mjs DOWNLOAD_DIR [SCREENSHOT.png] | --bench STEPS PRESET…");
}
const dist = resolve(new URL(".", import.meta.url).pathname, "dist");
const STEPS = 6;
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm" };

// A static file server for web/dist (any would do: the page is plain files).
function serve() {
  const server = createServer(async (req, res) => {
    const path = join(dist, decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/\/$/, "/index.html"));
    try {
      const body = await readFile(path);
      res.writeHead(200, { "content-type": TYPES[extname(path)] || "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function webdriver(base, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(json.value).slice(0, 500)}`);
  return json.value;
}

// Images given to the page's file input (what a drop does): two real PNGs from docs/ and one that is not an image,
// which must be skipped and named; the slider then shows x_t of a given image.
async function dropImages(run, s, base, until) {
  const docs = resolve(new URL(".", import.meta.url).pathname, "..", "docs");
  const bad = join(downloads, "not-an-image.png");
  await writeFile(bad, "this is text, not a PNG");
  const input = await webdriver(base, "POST", `${s}/element`, { using: "css selector", value: "#files" });
  const paths = [join(docs, "small-mnist-samples.png"), join(docs, "web-page.png"), bad];
  await webdriver(base, "POST", `${s}/element/${Object.values(input)[0]}/value`, { text: paths.join("\n") });
  const note = await until("the dropped images decoded", `const t = document.getElementById('data-note').textContent;
    return t.includes('decoded') ? t : null;`, 60);
  if (!/^2 images decoded/.test(note) || !note.includes("not-an-image.png")) {
    throw new Error(`dropping 2 images and a text file, the page says: ${note}`);
  }
  await until("x_t of a dropped image", "return document.getElementById('noise-note').textContent.includes('SNR')", 60);
  console.log(`dropped: ${note.replace(/\n/g, " / ")}`);
}

async function main() {
  await mkdir(downloads, { recursive: true });
  const server = await serve();
  const page = `http://127.0.0.1:${server.address().port}/index.html`;
  const port = 9600 + Math.floor(Math.random() * 300);
  const driver = spawn(process.env.CHROMEDRIVER || "/usr/bin/chromedriver", [`--port=${port}`], { stdio: "ignore" });
  const base = `http://127.0.0.1:${port}`;
  let session = null;
  try {
    for (let i = 0; ; i++) {
      try { await webdriver(base, "GET", "/status"); break; } catch (e) { if (i > 50) throw e; await sleep(200); }
    }
    session = (await webdriver(base, "POST", "/session", {
      capabilities: { alwaysMatch: { "goog:chromeOptions": {
        binary: process.env.CHROMIUM || "/usr/bin/chromium",
        // Without the last five, Chromium floods the closed network of CI machines.
        args: ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-webgpu",
          "--window-size=1000,1900", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--no-first-run", "--disable-quic"],
        prefs: { "download.default_directory": downloads, "download.prompt_for_download": false },
      } } },
    })).sessionId;
    const s = `/session/${session}`;
    const run = (script, ...args) => webdriver(base, "POST", `${s}/execute/sync`, { script, args });
    const until = async (what, script, seconds) => {
      const deadline = Date.now() + seconds * 1000;
      for (;;) {
        const value = await run(script);
        if (value) return value;
        const problem = await run("return document.getElementById('problem').hidden ? '' : document.getElementById('problem').textContent");
        if (problem) throw new Error(`waiting for ${what}, the page says: ${problem}`);
        if (Date.now() > deadline) throw new Error(`no ${what} within ${seconds} s`);
        await sleep(500);
      }
    };
    await webdriver(base, "POST", `${s}/url`, { url: page });
    await until("the page to open the GPU", "return document.body.dataset.ready", 120);
    console.log(await run("return document.getElementById('status').textContent"));
    if (showcase) {
      await run("document.getElementById('bundled').click();");
      await until("the bundled model", "return !document.getElementById('sample').disabled", 60);
      await run(`const set = (id, v) => { document.getElementById(id).value = v; };
        set('sampler', 'dpm++2m'); set('sample-steps', 12); set('images', 20); set('guidance', 2); set('t', 350);
        document.getElementById('t').oninput(); document.getElementById('sample').click();`);
      await until("the samples", "return document.body.dataset.sampled", 900);
      await until("the slider's x̂₀", "return document.getElementById('x0').naturalWidth", 120);
      await sleep(1000);
      const png = await webdriver(base, "GET", `${s}/screenshot`);
      await writeFile(showcase, Buffer.from(png, "base64"));
      console.log(`screenshot: ${showcase}`);
      return;
    }
    if (bench) {
      await webdriver(base, "POST", `${s}/timeouts`, { script: 3600 * 1000 });
      for (const preset of bench.presets) {
        const result = await webdriver(base, "POST", `${s}/execute/async`, {
          script: `const done = arguments[arguments.length - 1];
            const common = { preset: arguments[0], batch: 32, every: 100000, preview: 0, logEvery: 100000 };
            let last = null;
            studio.train({ ...common, fresh: true, steps: 2 }, () => {})
              .then(() => studio.train({ ...common, steps: arguments[1] }, (e, d) => { if (e === 'metrics') last = d; }))
              .then(() => done(last), (e) => done({ error: String(e) }));`,
          args: [preset, bench.steps],
        });
        if (!result || result.error) throw new Error(`bench ${preset}: ${result ? result.error : "no metrics"}`);
        console.log(`page ${preset} b32: ${result.stepsPerS.toFixed(3)} steps/s ` +
          `(${(1000 / result.stepsPerS).toFixed(0)} ms/step, ${bench.steps} steps, loss ${result.loss.toPrecision(4)})`);
      }
      return;
    }
    await run(`const set = (id, v) => { document.getElementById(id).value = v; };
      set('preset', 'tiny'); set('batch', 8); set('steps', ${STEPS}); set('every', ${STEPS}); set('lr', 0.002);
      set('warmup', 0); document.getElementById('train-new').click();`);
    const trained = await until(`${STEPS} training steps`, "return document.body.dataset.trained", 600);
    if (Number(trained) !== STEPS) throw new Error(`trained to step ${trained}, expected ${STEPS}`);
    console.log(await run("return document.getElementById('rate').textContent"));
    // The preview grid drawn to a canvas: a blank (single-colour) grid means the model or the preview broke.
    const spread = await until("a preview image", `const img = document.getElementById('preview');
      if (!img.complete || !img.naturalWidth) return null;
      const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext('2d'); g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0;
      for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
      return { width: c.width, lo, hi };`, 60);
    if (spread.hi - spread.lo < 16) throw new Error(`the preview is blank: ${JSON.stringify(spread)}`);
    console.log(`preview ${spread.width} px wide, grey levels ${spread.lo}..${spread.hi}`);
    await until("the slider's x̂₀", "return document.getElementById('x0').naturalWidth", 120);
    await run(`document.getElementById('sample-steps').value = 4; document.getElementById('images').value = 4;
      document.getElementById('sample').click();`);
    await until("4 sampling steps", "return document.body.dataset.sampled", 300);
    await run("document.getElementById('download').click();");
    let file = null;
    for (let i = 0; i < 100 && !file; i++) {
      await sleep(200);
      file = (await readdir(downloads)).find((f) => f === "checkpoint.safetensors");
    }
    if (!file) throw new Error(`no checkpoint.safetensors appeared in ${downloads}`);
    await dropImages(run, s, base, until);
    if (screenshot) {
      const png = await webdriver(base, "GET", `${s}/screenshot`);
      await writeFile(screenshot, Buffer.from(png, "base64"));
      console.log(`screenshot: ${screenshot}`);
    }
    console.log(join(downloads, file));
  } finally {
    if (session) await webdriver(base, "DELETE", `/session/${session}`).catch(() => {});
    driver.kill();
    server.close();
  }
}

main().catch((e) => {
  console.error(`e2e: ${e.message}`);
  process.exit(1);
});
