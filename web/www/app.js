// The page: wires the controls to diffuse's wasm module (web/src/lib.rs). Every GPU call returns a promise; those
// that must not overlap (a new run, a sampling run, a load) are chained on `busy`, while the slider runs beside a
// training run (it only reads the newest checkpoint).
import init, { open, samplers } from "./pkg/diffuse_web.js";

const $ = (id) => document.getElementById(id);
const value = (id) => Number($(id).value);
let studio = null;
let training = false;
let metrics = [];
const urls = new Map();

// Shows PNG bytes in an <img>, freeing the previous object URL of that image.
function show(img, png) {
  const url = URL.createObjectURL(new Blob([png], { type: "image/png" }));
  if (urls.has(img)) URL.revokeObjectURL(urls.get(img));
  urls.set(img, url);
  $(img).src = url;
}

function problem(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

// After any failure: a lost device is said plainly, with the last checkpoint offered.
function failed(e) {
  const lost = studio && studio.lost();
  if (lost) {
    problem(`${lost}. The page cannot use the GPU any more: download the last checkpoint below, then reload ` +
      "the page and load it to go on.");
  } else {
    problem(String(e && e.message ? e.message : e));
  }
  console.error(e);
}

function refresh() {
  const model = studio.model_description();
  $("model-note").textContent = model ? `current model: ${model}` : "no model yet";
  for (const id of ["train-more", "sample", "download"]) $(id).disabled = !model || (training && id !== "download");
  $("train-new").disabled = training;
  $("stop").disabled = !training;
  $("bundled").disabled = training;
}

function drawLoss() {
  const canvas = $("loss");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (metrics.length < 2) return;
  const logs = metrics.map((m) => Math.log10(Math.max(m.loss, 1e-12)));
  const [lo, hi] = [Math.min(...logs), Math.max(...logs)];
  const [first, last] = [metrics[0].step, metrics[metrics.length - 1].step];
  const x = (s) => 30 + ((s - first) / Math.max(last - first, 1)) * (canvas.width - 40);
  const y = (l) => 10 + (1 - (l - lo) / Math.max(hi - lo, 1e-9)) * (canvas.height - 30);
  g.strokeStyle = "#888";
  g.strokeText(metrics[0].loss.toPrecision(3), 0, y(logs[0]) - 2);
  g.strokeText(`step ${last}`, canvas.width - 70, canvas.height - 4);
  g.strokeStyle = "#2266cc";
  g.beginPath();
  metrics.forEach((m, i) => (i ? g.lineTo : g.moveTo).call(g, x(m.step), y(logs[i])));
  g.stroke();
}

// The slider: x_t of the chosen image and the model's x̂₀; a newer request replaces a pending one.
let noisePending = false;
let noiseAgain = false;
async function noising() {
  if (noisePending) { noiseAgain = true; return; }
  noisePending = true;
  try {
    do {
      noiseAgain = false;
      const t = value("t");
      $("t-value").textContent = t;
      const r = await studio.noising(value("image-index"), t, 7);
      $("t").max = r.steps - 1;
      show("xt", r.xt);
      if (r.x0) show("x0", r.x0);
      $("noise-note").textContent = `ᾱ_t = ${r.alphaBar.toPrecision(4)}, SNR = ${r.snr.toPrecision(4)}` +
        (r.x0 ? "" : " (train or load a model to see its x̂₀)");
    } while (noiseAgain);
  } catch (e) {
    failed(e);
  } finally {
    noisePending = false;
  }
}

function trainOptions(fresh) {
  return {
    fresh,
    preset: $("preset").value,
    channels: value("channels"),
    size: value("size"),
    conditional: $("conditional").checked,
    batch: value("batch"),
    lr: value("lr"),
    warmup: value("warmup"),
    steps: value("steps"),
    every: value("every"),
    seed: value("train-seed"),
  };
}

async function train(fresh) {
  problem("");
  training = true;
  refresh();
  if (fresh) metrics = [];
  const on = (event, data) => {
    if (event === "started") $("train-note").textContent = `from step ${data.step}: ${data.note}`;
    if (event === "metrics") {
      metrics.push(data);
      drawLoss();
      $("rate").textContent = `step ${data.step}: loss ${data.loss.toPrecision(4)}, ` +
        `${data.stepsPerS.toFixed(2)} steps/s, ${data.imagesPerS.toFixed(1)} images/s`;
    }
    if (event === "position") document.body.dataset.step = data.step;
    if (event === "preview") {
      show("preview", data.png);
      $("preview-caption").textContent = `preview at step ${data.step} (50 DDIM steps, the same noise each time)`;
    }
    if (event === "checkpoint") {
      document.body.dataset.checkpoint = data.step;
      refresh();
      noising();
    }
  };
  try {
    const end = await studio.train(trainOptions(fresh), on);
    $("train-note").textContent += ` — ${end.stopped ? "stopped" : "finished"} at step ${end.step}`;
    document.body.dataset.trained = end.step;
  } catch (e) {
    failed(e);
  } finally {
    training = false;
    refresh();
  }
}

async function sample() {
  problem("");
  $("sample").disabled = true;
  try {
    const run = await studio.sampling({
      sampler: $("sampler").value,
      steps: value("sample-steps"),
      images: value("images"),
      seed: value("sample-seed"),
      class: value("class"),
      guidance: value("guidance"),
    });
    // One sampler step per submission: the page repaints between them.
    while (!run.done()) {
      const r = await run.step();
      show("samples", r.png);
      $("sample-caption").textContent = `${$("sampler").value}: step ${r.step} of ${r.steps}`;
    }
    run.free();
    document.body.dataset.sampled = "yes";
  } catch (e) {
    failed(e);
  } finally {
    refresh();
  }
}

async function useFiles(list) {
  const files = [...list].filter((f) => /\.(png|jpe?g)$/i.test(f.name));
  if (!files.length) return problem("no PNG or JPEG among the dropped files (the desktop loader reads those two)");
  const bytes = await Promise.all(files.map(async (f) => new Uint8Array(await f.arrayBuffer())));
  try {
    const n = studio.use_images(files.map((f) => f.name), bytes);
    $("data-note").textContent = `${n} images decoded. ${studio.data_description()}`;
    document.querySelector('input[name="data"]').checked = false;
    problem("");
    noising();
  } catch (e) {
    failed(e);
  }
}

function download() {
  try {
    const bytes = studio.checkpoint_bytes();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    a.download = "checkpoint.safetensors";
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    failed(e);
  }
}

function loaded(line) {
  $("model-note").textContent = `loaded: ${line}`;
  $("class").max = Math.max(studio.classes() - 1, -1);
  refresh();
  noising();
}

function wire() {
  for (const [name, help] of samplers()) {
    const option = new Option(name, name);
    option.title = help;
    $("sampler").add(option);
  }
  $("sampler").value = "ddim";
  $("train-new").onclick = () => train(true);
  $("train-more").onclick = () => train(false);
  $("stop").onclick = () => studio.stop();
  $("sample").onclick = sample;
  $("download").onclick = download;
  $("t").oninput = noising;
  $("image-index").onchange = noising;
  // The bundled model (`small` on the digits, classes 0–9) is fetched beside the page, not built into the module.
  $("bundled").onclick = async () => {
    try {
      const res = await fetch("small-mnist.safetensors");
      if (!res.ok) throw new Error(`fetching the bundled model: HTTP ${res.status}`);
      loaded(studio.load_checkpoint(new Uint8Array(await res.arrayBuffer()), "small-mnist.safetensors"));
    } catch (e) {
      failed(e);
    }
  };
  $("load").onchange = async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    try { loaded(studio.load_checkpoint(new Uint8Array(await file.arrayBuffer()), file.name)); } catch (err) { failed(err); }
  };
  document.querySelector('input[name="data"]').onchange = () => {
    studio.use_digits();
    $("data-note").textContent = studio.data_description();
    noising();
  };
  $("files").onchange = (e) => useFiles(e.target.files);
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); useFiles(e.dataTransfer.files); };
  // The preset fixes a new model's image size and channels unless changed.
  $("preset").onchange = () => { $("size").value = 28; $("channels").value = 1; };
}

async function main() {
  if (!navigator.gpu) {
    $("status").textContent = "This browser has no WebGPU.";
    problem("diffuse needs WebGPU: Chrome or Edge 113+, Safari 26+, or Firefox 141+ on Windows. On Linux, Chrome " +
      "needs chrome://flags/#enable-unsafe-webgpu (and #enable-vulkan).");
    return;
  }
  await init();
  try {
    studio = await open();
  } catch (e) {
    $("status").textContent = "diffuse could not open the GPU.";
    problem(`${e.message || e}`);
    return;
  }
  // For scripts driving the page (web/e2e.mjs --bench times training through it).
  window.studio = studio;
  $("status").textContent = `GPU: ${studio.describe()}`;
  $("app").hidden = false;
  $("data-note").textContent = studio.data_description();
  wire();
  refresh();
  noising();
  document.body.dataset.ready = "yes";
}

main();
