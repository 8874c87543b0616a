// vae_lab_page.js: the three panels of the book's lab page ("Play with a trained VAE", book/lab.md).
//
// The page holds, for each panel, a <div data-vae-lab="map|draw|cvae"> with a static figure made at build time,
// and a status line whose data-vae-lab-assets names the folder of the exported models (book/_ext/vaelib_lab.py
// writes it).  Once the models load and their hashes check, this module hides the static figures and builds the
// live panels in their place; if anything fails, the figures stay and the status line says why.  The numbers
// come from vae_lab.js; this file draws and listens.

import * as lab from "./vae_lab.js";

const N_DRAWS = 500; // draws of z per digit: the bounds L_k for k in KS all come from them
const KS = [1, 5, 50, N_DRAWS];
const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
TAB10.push("#17becf"); // matplotlib's tab10, as the static figures colour the labels
const SIDE = 28; // the digits are 28 x 28
const SUBSCRIPTS = "\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089";
const sub = (k) => String(k).replace(/\d/g, (d) => SUBSCRIPTS[d]);
const fmt = (v, digits = 2) => (v < 0 ? "\u2212" : "") + Math.abs(v).toFixed(digits); // a true minus sign
const zText = ([z1, z2]) => `(${fmt(z1)}, ${fmt(z2)})`;
let uid = 0;

/** An element with attributes and children: el("p", {class: "x"}, "text", child). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

/** A help paragraph with an id, for the aria-describedby of the controls it explains. */
function help(text) {
  return el("p", { id: `vae-lab-help-${++uid}`, class: "vae-lab-help" }, text);
}

/** A canvas whose drawing buffer matches its CSS size on this screen; draw in CSS pixels. */
function sharpCanvas(width, height, attrs) {
  const canvas = el("canvas", { ...attrs, width: width * devicePixelRatio, height: height * devicePixelRatio });
  Object.assign(canvas.style, { width: `${width}px`, height: `${height}px` });
  const ctx = canvas.getContext("2d");
  ctx.scale(devicePixelRatio, devicePixelRatio);
  return { canvas, ctx, width, height };
}

/** Draw P values in [0, 1] as ink on paper into a 28 x 28 canvas (CSS scales it up, pixelated). */
function drawDigit(canvas, values) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(SIDE, SIDE);
  for (let p = 0; p < SIDE * SIDE; p++) {
    const shade = Math.round(255 * (1 - Math.min(1, Math.max(0, values[p]))));
    image.data.set([shade, shade, shade, 255], 4 * p);
  }
  ctx.putImageData(image, 0, 0);
}

function digitCanvas(label, size) {
  const canvas = el("canvas", { width: SIDE, height: SIDE, class: "vae-lab-digit", role: "img", "aria-label": label });
  canvas.style.width = canvas.style.height = `${size}px`;
  return canvas;
}

function figure(content, caption) {
  return el("figure", {}, content, el("figcaption", {}, caption));
}

/** The held-out digits of heldout.json, each {index, label, x: Float64Array(784) of 0/1}. */
function unpackDigits(digits) {
  return digits.map(({ index, label, hex }) => {
    const x = new Float64Array(SIDE * SIDE);
    for (let p = 0; p < x.length; p++) x[p] = (parseInt(hex[p >> 2], 16) >> (3 - (p & 3))) & 1;
    return { index, label, x };
  });
}

/** Screen position of a code in a square of `size` pixels showing [-extent, extent]^2 (z2 grows upwards). */
function toScreen(extent, size) {
  return (z1, z2) => [((z1 + extent) / (2 * extent)) * size, ((extent - z2) / (2 * extent)) * size];
}

// ---------------------------------------------------------------------------
// A 2-D latent pad: drag the point, or focus it and press the arrow keys
// ---------------------------------------------------------------------------

function latentPad({ size, extent, label, description, drawBackground, onChange }) {
  const describe = help(description);
  const { canvas, ctx } = sharpCanvas(size, size, {
    tabindex: 0,
    role: "slider",
    class: "vae-lab-pad2d",
    "aria-roledescription": "two-dimensional slider",
    "aria-label": label,
    "aria-describedby": describe.id,
    "aria-valuemin": -extent,
    "aria-valuemax": extent,
  });
  const at = toScreen(extent, size);
  const background = sharpCanvas(size, size, {}); // the static part, drawn once
  drawBackground(background.ctx, { size, at });
  const pad = { canvas, describe, value: [0, 0] };

  pad.redraw = () => {
    ctx.clearRect(0, 0, size, size);
    ctx.drawImage(background.canvas, 0, 0, size, size);
    ctx.beginPath();
    ctx.arc(...at(...pad.value), 7, 0, 2 * Math.PI);
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fill();
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = "#111";
    ctx.stroke();
  };
  pad.set = (z1, z2) => {
    const clamp = (v) => Math.max(-extent, Math.min(extent, v));
    pad.value = [clamp(z1), clamp(z2)];
    canvas.setAttribute("aria-valuenow", pad.value[0].toFixed(2));
    canvas.setAttribute("aria-valuetext", `z = ${zText(pad.value)}`);
    pad.redraw();
    onChange(pad.value);
  };
  let next = null; // pointer moves are drawn at most once per screen frame
  const follow = (event) => {
    const box = canvas.getBoundingClientRect();
    const scale = (2 * extent) / size;
    if (next === null) {
      requestAnimationFrame(() => {
        pad.set(...next);
        next = null;
      });
    }
    next = [(event.clientX - box.left) * scale - extent, extent - (event.clientY - box.top) * scale];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    canvas.focus();
    follow(event);
  });
  canvas.addEventListener("pointermove", (event) => canvas.hasPointerCapture(event.pointerId) && follow(event));
  canvas.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 0.5 : 0.1;
    const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[event.key];
    if (!move) return;
    event.preventDefault();
    pad.set(pad.value[0] + move[0], pad.value[1] + move[1]);
  });
  return pad;
}

/** The held-out codes as a scatter coloured by label, on white, with the axes through 0. */
function drawScatter(ctx, { size, at }, codes) {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  ctx.strokeStyle = "#ddd";
  ctx.beginPath();
  ctx.moveTo(...at(0, -99));
  ctx.lineTo(...at(0, 99));
  ctx.moveTo(...at(-99, 0));
  ctx.lineTo(...at(99, 0));
  ctx.stroke();
  ctx.globalAlpha = 0.6;
  codes.z.forEach(([z1, z2], i) => {
    const [x, y] = at(z1, z2);
    ctx.fillStyle = TAB10[codes.labels[i]];
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
}

/** The prior for the CVAE's style pad: circles at 1, 2 and 3 standard deviations. */
function drawPrior(ctx, { size, at }) {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  const [cx, cy] = at(0, 0);
  ctx.font = "11px sans-serif";
  for (const r of [1, 2, 3]) {
    const radius = at(r, 0)[0] - cx;
    ctx.beginPath();
    ctx.arc(cx, cy, radius, 0, 2 * Math.PI);
    ctx.strokeStyle = "#bbb";
    ctx.stroke();
    ctx.fillStyle = "#888";
    ctx.fillText(`${r}\u03c3`, cx + radius + 3, cy - 3);
  }
}

function legend() {
  const swatches = TAB10.map((colour, digit) => el("span", { style: `--swatch: ${colour}` }, String(digit)));
  return el("p", { class: "vae-lab-legend" }, "dot colour = label: ", ...swatches);
}

/** Two number inputs for z1 and z2, labelled, that move a pad (the keyboard's other way in). */
function zInputs(pad) {
  const inputs = [0, 1].map((j) => {
    const input = el("input", {
      type: "number",
      step: "0.1",
      class: "vae-lab-number",
      "aria-describedby": pad.describe.id,
    });
    input.addEventListener("change", () => pad.set(...pad.value.map((v, i) => (i === j ? Number(input.value) : v))));
    return input;
  });
  const show = (z) => inputs.forEach((input, j) => (input.value = z[j].toFixed(2)));
  const row = el(
    "div",
    { class: "vae-lab-inputs" },
    ...inputs.map((input, j) => el("label", {}, `z${sub(j + 1)} `, input)),
  );
  return { row, show };
}

// ---------------------------------------------------------------------------
// Panel 1: the map (a 2-D VAE)
// ---------------------------------------------------------------------------

function mapPanel(root, model, codes) {
  const digit = digitCanvas("the digit decoded at z", 140);
  const readout = el("p", { class: "vae-lab-readout" });
  const pad = latentPad({
    size: 320,
    extent: codes.extent,
    label: `latent code z on the map of held-out codes (${model.manifest.name})`,
    description:
      "Drag the point, or focus the map and press the arrow keys (Shift: larger steps), or type z below; the " +
      "decoder draws the digit of that z beside the map. Each dot is a held-out test image placed at its encoder " +
      "mean and coloured by its label.",
    drawBackground: (ctx, frame) => drawScatter(ctx, frame, codes),
    onChange: (z) => {
      drawDigit(digit, model.mean(model.decode(Float64Array.from(z)))); // x_hat = E[x|z], (P,)
      readout.textContent = `z = ${zText(z)}`;
      digit.setAttribute("aria-label", `the digit decoded at z = ${zText(z)}`);
      inputs.show(z);
    },
  });
  const inputs = zInputs(pad);
  const side = el("div", { class: "vae-lab-side" }, figure(digit, "decoded: x\u0302 = E[x | z]"), readout, inputs.row);
  root.append(el("div", { class: "vae-lab-row" }, el("div", {}, pad.canvas, legend()), side), pad.describe);
  pad.set(0, 0);
  return { pad, digit, readout, redraw: () => pad.set(...pad.value) };
}

// ---------------------------------------------------------------------------
// Panel 2: draw a digit (its posterior on the map, its bounds under a Burda model)
// ---------------------------------------------------------------------------

function drawPad(onChange) {
  const describe = help(
    "Draw with a mouse, a finger or a pen: every pixel you touch is ink (1), the rest is paper (0). From the " +
      "keyboard, the arrow keys move the cursor, Space puts the pen down or lifts it (a pen that is down inks as " +
      "it moves), and Delete erases under the cursor.",
  );
  const canvas = el("canvas", {
    width: SIDE,
    height: SIDE,
    tabindex: 0,
    role: "img",
    class: "vae-lab-drawpad",
    "aria-roledescription": "drawing pad",
    "aria-label": "drawing pad, 28 by 28 pixels: your digit, binarized",
    "aria-describedby": describe.id,
  });
  canvas.style.width = canvas.style.height = "196px";
  const pad = { canvas, describe, x: new Float64Array(SIDE * SIDE), cursor: [14, 14], penDown: false };
  const show = () => {
    drawDigit(canvas, pad.x);
    if (document.activeElement !== canvas) return;
    const ctx = canvas.getContext("2d"); // the keyboard's cursor: blue, red while the pen is down
    ctx.strokeStyle = pad.penDown ? "#d62728" : "#1f77b4";
    ctx.lineWidth = 0.4;
    ctx.strokeRect(pad.cursor[0] - 0.5, pad.cursor[1] - 0.5, 2, 2);
  };
  // Ink every pixel whose centre lies within one pixel of the segment a-b (pixel units): strokes 2-3 pixels wide.
  const ink = (a, b, value = 1) => {
    const steps = Math.max(1, Math.ceil(3 * Math.hypot(b[0] - a[0], b[1] - a[1])));
    for (let s = 0; s <= steps; s++) {
      const [cx, cy] = [a[0] + ((b[0] - a[0]) * s) / steps, a[1] + ((b[1] - a[1]) * s) / steps];
      for (let r = Math.max(0, Math.floor(cy - 1)); r <= Math.min(SIDE - 1, Math.ceil(cy + 1)); r++) {
        for (let c = Math.max(0, Math.floor(cx - 1)); c <= Math.min(SIDE - 1, Math.ceil(cx + 1)); c++) {
          if (Math.hypot(c + 0.5 - cx, r + 0.5 - cy) <= 1.05) pad.x[r * SIDE + c] = value;
        }
      }
    }
  };
  let last = null; // the pointer's last position while it draws
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * SIDE, ((event.clientY - box.top) / box.height) * SIDE];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    ink(last, last);
    show();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (last === null) return;
    const next = point(event);
    ink(last, next);
    last = next;
    show();
  });
  const lift = () => {
    if (last === null) return;
    last = null;
    onChange(); // the bounds of a stroke are computed once it ends
  };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);
  canvas.addEventListener("keydown", (event) => {
    const move = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[event.key];
    const centre = () => [pad.cursor[0] + 0.5, pad.cursor[1] + 0.5];
    if (move) {
      const from = centre();
      pad.cursor = pad.cursor.map((v, j) => Math.max(0, Math.min(SIDE - 1, v + move[j])));
      if (pad.penDown) ink(from, centre());
    } else if (event.key === " ") {
      pad.penDown = !pad.penDown;
      if (pad.penDown) ink(centre(), centre());
    } else if (event.key === "Delete" || event.key === "Backspace") {
      ink(centre(), centre(), 0);
    } else {
      return;
    }
    event.preventDefault();
    show();
    onChange();
  });
  canvas.addEventListener("focus", show);
  canvas.addEventListener("blur", show);
  pad.set = (x) => {
    pad.x = Float64Array.from(x);
    show();
  };
  return pad;
}

/** The bound plot: L_k against k (log scale), the ELBO dotted, log p(x) ~ L_500 dashed. */
function drawBoundPlot({ ctx, width, height }, result) {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  if (!result) return;
  const values = [result.elbo, ...KS.map((k) => result.Lk[k])];
  const margin = Math.max(0.5, 0.15 * (Math.max(...values) - Math.min(...values)));
  const [lo, hi] = [Math.min(...values) - margin, Math.max(...values) + margin];
  const [left, right, top, bottom] = [58, width - 12, 14, height - 36];
  const xOf = (k) => left + 10 + (Math.log10(k) / Math.log10(N_DRAWS)) * (right - left - 20);
  const yOf = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  ctx.font = "11px sans-serif";
  ctx.strokeStyle = "#444";
  ctx.fillStyle = "#222";
  ctx.beginPath();
  ctx.moveTo(left, top);
  ctx.lineTo(left, bottom);
  ctx.lineTo(right, bottom);
  ctx.stroke();
  ctx.textAlign = "center";
  KS.forEach((k) => ctx.fillText(String(k), xOf(k), bottom + 13));
  ctx.fillText("k, samples (log scale)", (left + right) / 2, bottom + 28);
  ctx.textAlign = "right";
  for (const v of [lo + margin, hi - margin]) ctx.fillText(fmt(v, 1), left - 4, yOf(v) + 4);
  ctx.save();
  ctx.translate(12, (top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText("bound (nats)", 0, 0);
  ctx.restore();
  const hline = (v, dash, colour, text) => {
    ctx.setLineDash(dash);
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.beginPath();
    ctx.moveTo(left, yOf(v));
    ctx.lineTo(right, yOf(v));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillText(text, right, yOf(v) - 4);
  };
  hline(result.elbo, [2, 3], "#7f7f7f", "ELBO");
  hline(result.Lk[N_DRAWS], [6, 4], "#d62728", `log p(x) \u2248 L${sub(N_DRAWS)}`);
  ctx.strokeStyle = ctx.fillStyle = "#1f77b4";
  ctx.lineWidth = 1.8;
  ctx.beginPath();
  KS.forEach((k, i) => (i ? ctx.lineTo(xOf(k), yOf(result.Lk[k])) : ctx.moveTo(xOf(k), yOf(result.Lk[k]))));
  ctx.stroke();
  ctx.lineWidth = 1;
  for (const k of KS) {
    ctx.beginPath();
    ctx.arc(xOf(k), yOf(result.Lk[k]), 3.5, 0, 2 * Math.PI);
    ctx.fill();
  }
}

/** The table of bounds: each row names its estimator and its k. Returns the table and a function to fill it. */
function boundTable(modelName) {
  const cells = {};
  const body = el("tbody");
  const row = (key, name, k, estimator) => {
    cells[key] = el("td", {}, "\u2026");
    body.append(
      el("tr", {}, el("th", { scope: "row" }, ...name), el("td", {}, String(k)), el("td", {}, estimator), cells[key]),
    );
  };
  row("elbo", ["ELBO"], 1, `mean of log p(x|z) over ${N_DRAWS} draws, minus the KL in closed form`);
  for (const k of KS) {
    row(
      k,
      ["L", el("sub", {}, String(k))],
      k,
      k === 1
        ? `mean of the ${N_DRAWS} log-weights`
        : k === N_DRAWS
          ? `log of the mean of ${k} weights`
          : `mean over ${N_DRAWS / k} groups of ${k} draws`,
    );
  }
  row("nll", ["NLL estimate"], N_DRAWS, `\u2212L${sub(N_DRAWS)}`);
  const table = el(
    "table",
    { class: "vae-lab-bounds" },
    el("caption", {}, `Bounds on log p(x) for your digit under ${modelName}, in nats, from ${N_DRAWS} draws of z`),
    el("thead", {}, el("tr", {}, ...["bound", "k", "estimator", "nats"].map((h) => el("th", { scope: "col" }, h)))),
    body,
  );
  const fill = (result) => {
    const show = (v) => (result ? fmt(v) : "\u2026");
    cells.elbo.textContent = show(result && result.elbo);
    for (const k of KS) cells[k].textContent = show(result && result.Lk[k]);
    cells.nll.textContent = show(result && -result.Lk[N_DRAWS]);
  };
  return { table, fill };
}

function drawPanel(root, mapModel, boundModel, codes, digits) {
  const state = { seed: 1, run: 0, result: null, busy: false, posterior: null };
  const pad = drawPad(() => {
    select.value = ""; // the pad now holds the reader's own drawing
    update();
  });
  const reconstruction = digitCanvas(`reconstruction by ${boundModel.name}`, 140);
  const posterior = sharpCanvas(196, 196, { role: "img", class: "vae-lab-posterior" });
  const posteriorText = el("p", { class: "vae-lab-readout" });
  const plot = sharpCanvas(330, 220, { role: "img", class: "vae-lab-plot" });
  const bounds = boundTable(boundModel.name);
  const status = el("p", { class: "vae-lab-readout", role: "status" });
  const metrics = boundModel.manifest.metrics; // a shipped model's record: its NLL over the whole test set
  const context = el("p", { class: "vae-lab-help" });
  if (metrics && metrics.test_nll) {
    context.textContent =
      `For comparison, ${boundModel.name}'s NLL over the ${metrics.n_test.toLocaleString("en")} MNIST test ` +
      `images is ${metrics.test_nll.toFixed(2)} nats (\u2212L${sub(metrics.nll_k)} per image, averaged).`;
  }
  const noiseHelp = help(
    `The bounds use ${N_DRAWS} draws z = \u03bc + \u03c3 \u03b5 from the encoder of ${boundModel.name}, with \u03b5 ` +
      "from a seeded generator: a new seed gives new draws, and the bounds move by their Monte Carlo noise.",
  );
  const select = el("select", { id: `vae-lab-digit-${++uid}`, "aria-describedby": pad.describe.id });
  select.append(el("option", { value: "" }, "your drawing"));
  digits.forEach((d, i) => select.append(el("option", { value: i }, `a held-out ${d.label} (test image ${d.index})`)));
  select.addEventListener("change", () => {
    if (select.value === "") return;
    pad.set(digits[Number(select.value)].x);
    update();
  });
  const clear = el(
    "button",
    { type: "button", class: "vae-lab-button", "aria-describedby": pad.describe.id },
    "Clear the pad",
  );
  clear.addEventListener("click", () => {
    pad.set(new Float64Array(SIDE * SIDE));
    select.value = "";
    update();
  });
  const reseed = el(
    "button",
    { type: "button", class: "vae-lab-button", "aria-describedby": noiseHelp.id },
    "New draws of \u03b5",
  );
  const seedText = el("span", { class: "vae-lab-seed" });
  reseed.addEventListener("click", () => {
    state.seed += 1;
    update();
  });

  const paint = () => {
    const r = state.result;
    bounds.fill(r);
    drawBoundPlot(plot, r);
    seedText.textContent = `seed ${state.seed}`;
    const gap = r && r.Lk[N_DRAWS] - r.elbo;
    const said = r ? `ELBO ${fmt(r.elbo)}, L${sub(N_DRAWS)} ${fmt(r.Lk[N_DRAWS])}, gap ${fmt(gap)} nats` : "not yet";
    plot.canvas.setAttribute("aria-label", `plot of the bound L_k against k for your digit: ${said}`);
    // The posterior under the map's model (the map of panel 1), as the ellipse mu +- 2 sigma.
    const frame = { size: posterior.width, at: toScreen(codes.extent, posterior.width) };
    drawScatter(posterior.ctx, frame, codes);
    if (!state.posterior) return;
    const { mu, sigma } = state.posterior;
    const [cx, cy] = frame.at(mu[0], mu[1]);
    const perUnit = frame.size / (2 * codes.extent);
    posterior.ctx.beginPath();
    const [rx, ry] = sigma.map((s) => Math.max(1, 2 * s * perUnit)); // 2 sigma, in pixels
    posterior.ctx.ellipse(cx, cy, rx, ry, 0, 0, 2 * Math.PI);
    posterior.ctx.fillStyle = "rgba(0, 0, 0, 0.15)";
    posterior.ctx.fill();
    posterior.ctx.lineWidth = 2;
    posterior.ctx.strokeStyle = "#111";
    posterior.ctx.stroke();
  };

  async function update() {
    const run = ++state.run;
    const x = pad.x;
    const q = mapModel.encode(x);
    state.posterior = { mu: q.mu, sigma: q.logvar.map((l) => Math.exp(0.5 * l)) };
    posteriorText.textContent = `q(z|x) of ${mapModel.manifest.name}: \u03bc = ${zText(q.mu)}, \u03c3 = ${zText(state.posterior.sigma)}`;
    posterior.canvas.setAttribute(
      "aria-label",
      `your digit's posterior on the map of ${mapModel.manifest.name}: ${posteriorText.textContent}`,
    );
    drawDigit(reconstruction, boundModel.mean(boundModel.decode(boundModel.encode(x).mu))); // x_hat at z = mu
    state.busy = true;
    state.result = null;
    root.setAttribute("aria-busy", "true");
    status.textContent = `computing the bounds from ${N_DRAWS} draws (seed ${state.seed})\u2026`;
    paint();
    const eps = lab.drawEps(lab.makeRng(state.seed), N_DRAWS, boundModel.latentDim);
    const result = await lab.boundsInChunks(boundModel, x, eps, { isCancelled: () => run !== state.run });
    if (result === null) return; // a newer input took over
    state.result = { elbo: result.elbo, kl: result.kl, Lk: Object.fromEntries(KS.map((k) => [k, result.Lk(k)])) };
    state.busy = false;
    root.setAttribute("aria-busy", "false");
    status.textContent = `done: the bounds from ${N_DRAWS} draws (seed ${state.seed})`;
    paint();
  }

  root.append(
    el(
      "div",
      { class: "vae-lab-controls" },
      el("label", { for: select.id }, "Start from"),
      select,
      clear,
      reseed,
      seedText,
    ),
    el(
      "div",
      { class: "vae-lab-row" },
      figure(pad.canvas, "your digit x (binarized)"),
      figure(reconstruction, `x\u0302 at z = \u03bc (${boundModel.name})`),
      figure(posterior.canvas, "q(z|x) on the map: \u03bc \u00b1 2\u03c3"),
    ),
    posteriorText,
    pad.describe,
    el("div", { class: "vae-lab-row" }, figure(plot.canvas, "L\u2096 against k"), bounds.table),
    status,
    context,
    noiseHelp,
  );
  return { pad, select, state, update, redraw: paint };
}

// ---------------------------------------------------------------------------
// Panel 3: digits on demand (a conditional VAE)
// ---------------------------------------------------------------------------

function cvaePanel(root, model) {
  const labelHelp = help(
    "The decoder gets the label y beside the style z: change y and the same style draws another digit.",
  );
  const labelSelect = el("select", { id: `vae-lab-label-${++uid}`, "aria-describedby": labelHelp.id });
  for (let y = 0; y < model.numClasses; y++) labelSelect.append(el("option", { value: y }, String(y)));
  const digit = digitCanvas("the digit drawn for label 0 and style z", 140);
  const row = el("canvas", { width: SIDE * model.numClasses, height: SIDE, class: "vae-lab-digit-row", role: "img" });
  Object.assign(row.style, { width: `${34 * model.numClasses}px`, height: "34px" });
  const scratch = el("canvas", { width: SIDE, height: SIDE });
  const readout = el("p", { class: "vae-lab-readout" });
  const render = () => {
    const z = Float64Array.from(pad.value);
    const y = Number(labelSelect.value);
    drawDigit(digit, model.mean(model.decode(z, y)));
    digit.setAttribute("aria-label", `the digit drawn for label ${y} and style z = ${zText(z)}`);
    for (let label = 0; label < model.numClasses; label++) {
      drawDigit(scratch, model.mean(model.decode(z, label)));
      row.getContext("2d").drawImage(scratch, SIDE * label, 0);
    }
    row.setAttribute("aria-label", `the style z = ${zText(z)} with every label from 0 to ${model.numClasses - 1}`);
    readout.textContent = `y = ${y}, z = ${zText(z)}`;
  };
  const pad = latentPad({
    size: 240,
    extent: 3.5,
    label: `style z of the conditional VAE (${model.manifest.name})`,
    description:
      "Drag the point, or focus the pad and press the arrow keys (Shift: larger steps). The circles mark 1, 2 and " +
      "3 standard deviations of the prior p(z) = N(0, I); the decoder draws the chosen label in the style z.",
    drawBackground: drawPrior,
    onChange: render,
  });
  labelSelect.addEventListener("change", render);
  root.append(
    el("div", { class: "vae-lab-controls" }, el("label", { for: labelSelect.id }, "Label y"), labelSelect),
    labelHelp,
    el(
      "div",
      { class: "vae-lab-row" },
      pad.canvas,
      el("div", { class: "vae-lab-side" }, figure(digit, "p(x | z, y): its mean"), readout),
    ),
    figure(row, `the same style z, every label y = 0 to ${model.numClasses - 1}`),
    pad.describe,
  );
  pad.set(0, 0);
  return { pad, labelSelect, digit, redraw: render };
}

// ---------------------------------------------------------------------------
// Start: load the models, check them, swap the static figures for the live panels
// ---------------------------------------------------------------------------

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new lab.LabError(`could not load ${url}: HTTP ${response.status}`);
  return response.json();
}

async function start() {
  const statusLine = document.querySelector("[data-vae-lab-assets]");
  if (!statusLine) return null;
  const panels = Object.fromEntries([...document.querySelectorAll("[data-vae-lab]")].map((p) => [p.dataset.vaeLab, p]));
  const assets = new URL(statusLine.dataset.vaeLabAssets, document.baseURI);
  statusLine.textContent = "Loading the models\u2026";
  statusLine.setAttribute("aria-busy", "true"); // until the panels are live (the book's browser check waits for it)
  try {
    // heldout.json names each panel's model ({map, cvae, bounds}: the build's choice) beside the held-out data.
    const heldout = await fetchJson(new URL("heldout.json", assets));
    const { map, cvae, bounds } = heldout.models;
    const [mapModel, cvaeModel, boundModel] = await Promise.all(
      [map, cvae, bounds].map((name) => lab.loadModel(new URL(`${name}.json`, assets))),
    );
    const digits = unpackDigits(heldout.digits);
    for (const panel of Object.values(panels)) {
      for (const fallback of panel.querySelectorAll(".vae-lab-static")) fallback.hidden = true;
      panel.classList.add("vae-lab-live");
    }
    const built = {};
    if (panels.map) built.map = mapPanel(panels.map, mapModel, heldout.codes);
    if (panels.draw) {
      built.draw = drawPanel(panels.draw, mapModel, boundModel, heldout.codes, digits);
      built.draw.select.value = "0";
      built.draw.pad.set(digits[0].x);
      built.draw.update();
    }
    if (panels.cvae) built.cvae = cvaePanel(panels.cvae, cvaeModel);
    const bytes = [mapModel, cvaeModel, boundModel].reduce((a, m) => a + m.manifest.weights.bytes, 0);
    statusLine.textContent =
      `Live: three models run in your browser (${(bytes / 1e6).toFixed(1)} MB of weights, each checked against ` +
      "its SHA-256); nothing you draw leaves this page.";
    statusLine.setAttribute("aria-busy", "false");
    const timings = { interactiveMs: performance.now() }; // since the navigation started
    return { models: { map: mapModel, cvae: cvaeModel, bounds: boundModel }, panels: built, digits, timings };
  } catch (err) {
    const why = `The live lab could not start (${err.message}); `;
    statusLine.textContent = why + "the figures below were made when the book was built.";
    statusLine.classList.add("vae-lab-error");
    statusLine.setAttribute("aria-busy", "false");
    throw err;
  }
}

// window.vaeLab: the running lab, for the tests (tests/test_lab_browser.py) and benchmarks/lab_speed.py.
window.vaeLab = { ready: start() };
window.vaeLab.ready.then(
  (live) => Object.assign(window.vaeLab, live),
  () => {}, // the status line says what failed
);
