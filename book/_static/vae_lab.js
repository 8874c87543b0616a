// vae_lab.js: a trained vaelib VAE, run in the browser.
//
// A plain ES module with no dependencies.  It loads what `vaelib export-web`
// (vaelib/web.py) writes, a JSON manifest and a file of little-endian float32
// or float16 weights, checks the weights' SHA-256, and runs the encoder and
// the decoder.  Below them, one function per equation of the book, each named
// after the chapter's symbol, computes the ELBO and the bound L_k in nats, as
// vaelib/elbo.py does.  tests/test_lab_browser.py checks every function against
// vaelib on the shipped models.

export const FORMAT = "vaelib-web";
export const FORMAT_VERSION = 1;
const LOG_2PI = Math.log(2 * Math.PI);
const CHUNK = 25; // draws decoded together: a batch reuses the weights; 25 keeps each pause for the page short

/** A manifest or weights file that the lab cannot use; the message says why. */
export class LabError extends Error {
  constructor(message) {
    super(message);
    this.name = "LabError";
  }
}

// ---------------------------------------------------------------------------
// Loading an export
// ---------------------------------------------------------------------------

/** The SHA-256 of an ArrayBuffer as 64 hex digits (the Web Crypto API: https or localhost only). */
export async function sha256Hex(buffer) {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new LabError("checking the weights' SHA-256 needs a secure context: open the page over https or localhost");
  }
  const digest = await globalThis.crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One IEEE 754 half-precision number, from its 16 bits. */
function halfToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero or subnormal
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Each tensor of the manifest as a Float32Array, read little-endian from the weights. */
function readTensors(manifest, buffer) {
  const bytesPer = { float32: 4, float16: 2 }[manifest.dtype];
  const view = new DataView(buffer);
  const tensors = {};
  for (const [name, { shape, offset }] of Object.entries(manifest.tensors)) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(offset) || offset < 0 || offset + n * bytesPer > buffer.byteLength) {
      throw new LabError(
        `tensor ${name} (offset ${offset}, ${n} values) lies outside the ${buffer.byteLength}-byte weights`,
      );
    }
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const at = offset + i * bytesPer;
      values[i] = bytesPer === 4 ? view.getFloat32(at, true) : halfToFloat(view.getUint16(at, true));
    }
    tensors[name] = { shape, values };
  }
  return tensors;
}

/** Refuse a manifest that is not a vaelib-web export this module can run. */
function checkManifest(manifest) {
  if (!manifest || manifest.format !== FORMAT) {
    throw new LabError(
      `not a ${FORMAT} manifest (format: ${manifest && manifest.format}); write one with vaelib export-web`,
    );
  }
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new LabError(`manifest format_version ${manifest.format_version}; this lab reads version ${FORMAT_VERSION}`);
  }
  if (!["float32", "float16"].includes(manifest.dtype) || manifest.byte_order !== "little") {
    throw new LabError(
      `weights must be little-endian float32 or float16, got ${manifest.byte_order} ${manifest.dtype}`,
    );
  }
}

/** A model from a manifest and the bytes of its weights file: checks size and SHA-256 first. */
export async function modelFromBuffer(manifest, buffer) {
  checkManifest(manifest);
  const { file, bytes, sha256 } = manifest.weights;
  if (buffer.byteLength !== bytes) {
    throw new LabError(
      `${file} has ${buffer.byteLength} bytes but its manifest says ${bytes}: truncated or another file`,
    );
  }
  const digest = await sha256Hex(buffer);
  if (digest !== sha256) {
    throw new LabError(
      `${file} does not match its manifest (SHA-256 ${digest.slice(0, 12)}..., expected ${sha256.slice(0, 12)}...): ` +
        "the file is corrupt or belongs to another export",
    );
  }
  return new LabVAE(manifest, readTensors(manifest, buffer));
}

/** Fetch a manifest and the weights file it names (resolved against the manifest's URL), and build the model. */
export async function loadModel(manifestUrl) {
  const url = new URL(manifestUrl, globalThis.location ? globalThis.location.href : undefined);
  const response = await fetch(url);
  if (!response.ok) throw new LabError(`could not load ${url}: HTTP ${response.status}`);
  const manifest = await response.json();
  checkManifest(manifest);
  const weights = await fetch(new URL(manifest.weights.file, url));
  if (!weights.ok) throw new LabError(`could not load ${manifest.weights.file}: HTTP ${weights.status}`);
  return modelFromBuffer(manifest, await weights.arrayBuffer());
}

// ---------------------------------------------------------------------------
// The networks (vaelib/models.py): linear layers with an activation between
// ---------------------------------------------------------------------------

// erf by Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7), for the exact GELU that torch's nn.GELU computes.
function erf(x) {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const y = 1 - poly * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

/** log(1 + e^x) without overflow (torch's softplus: beta 1, linear above 20). */
function softplus(x) {
  return x > 20 ? x : x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

const ACTIVATIONS = {
  relu: (x) => (x > 0 ? x : 0),
  tanh: Math.tanh,
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  softplus,
};

/**
 * Y = X W^T + b for one linear layer and n inputs at once: X holds n rows of nIn values, Y n rows of nOut;
 * W is (out, in), row-major, as PyTorch stores it.  Each row of W is read once for all n inputs, while it
 * sits in the processor's cache: a batch of draws costs far less than one draw at a time.
 */
function linear(layer, X, n = 1) {
  const { W, b, nIn, nOut } = layer;
  const Y = new Float64Array(n * nOut);
  const n4 = nIn - (nIn % 4);
  for (let j = 0; j < nOut; j++) {
    const row = j * nIn;
    for (let s = 0; s < n; s++) {
      const x = s * nIn;
      // Four running sums: the additions of one do not wait for the others (about 3x faster than one sum).
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0; // prettier-ignore
      let i = 0;
      for (; i < n4; i += 4) {
        s0 += W[row + i] * X[x + i];
        s1 += W[row + i + 1] * X[x + i + 1];
        s2 += W[row + i + 2] * X[x + i + 2];
        s3 += W[row + i + 3] * X[x + i + 3];
      }
      for (; i < nIn; i++) s0 += W[row + i] * X[x + i];
      Y[s * nOut + j] = b[j] + (s0 + s1 + (s2 + s3));
    }
  }
  return Y;
}

/** [h_s, onehot(y)] for each of the n rows h_s of H (width w) for a conditional model, H itself otherwise. */
function withLabel(H, y, numClasses, n = 1) {
  if (!numClasses) return H;
  if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
    throw new LabError(
      `this model is conditioned on ${numClasses} classes: pass a label y from 0 to ${numClasses - 1}`,
    );
  }
  const w = H.length / n;
  const out = new Float64Array(n * (w + numClasses));
  for (let s = 0; s < n; s++) {
    out.set(H.subarray(s * w, (s + 1) * w), s * (w + numClasses));
    out[s * (w + numClasses) + w + y] = 1;
  }
  return out;
}

/** A VAE exported by vaelib.export_web: encode, decode and the likelihood of its decoder. */
export class LabVAE {
  constructor(manifest, tensors) {
    this.manifest = manifest;
    this.name = manifest.name;
    const m = manifest.model;
    this.inputDim = m.input_dim; // P
    this.latentDim = m.latent_dim; // D
    this.numClasses = m.num_classes;
    this.likelihood = m.likelihood;
    this.activation = ACTIVATIONS[m.activation];
    if (!this.activation) throw new LabError(`unknown activation ${m.activation}`);
    if (!["bernoulli", "gaussian"].includes(this.likelihood)) {
      throw new LabError(`unknown likelihood ${this.likelihood}`);
    }
    this.networks = {};
    for (const [net, layers] of Object.entries(manifest.layers)) {
      this.networks[net] = layers.map(([name, nIn, nOut]) => {
        const W = tensors[`${name}.weight`];
        const b = tensors[`${name}.bias`];
        if (!W || !b || W.shape[0] !== nOut || W.shape[1] !== nIn || b.shape[0] !== nOut) {
          throw new LabError(`layer ${name} does not match its manifest entry ${nIn} -> ${nOut}`);
        }
        return { W: W.values, b: b.values, nIn, nOut };
      });
    }
    const dec = this.networks.decoder;
    if (!dec || dec[0].nIn !== this.latentDim + this.numClasses || dec[dec.length - 1].nOut !== this.inputDim) {
      throw new LabError(
        `the decoder does not map D + classes = ${this.latentDim + this.numClasses} to P = ${this.inputDim}`,
      );
    }
    this.hasEncoder = "encoder" in this.networks;
    if (this.likelihood === "gaussian") {
      if (!tensors.x_logvar || tensors.x_logvar.values.length !== this.inputDim) {
        throw new LabError(
          `a Gaussian decoder needs x_logvar, one log sigma_x^2 for each of the P = ${this.inputDim} pixels`,
        );
      }
      this.xLogvar = Float64Array.from(tensors.x_logvar.values); // log sigma_x^2 per pixel, (P,)
      const floor = m.gaussian_logvar_floor;
      if (floor !== null && floor !== undefined) this.xLogvar = this.xLogvar.map((v) => Math.max(v, floor));
    }
  }

  /** Run the layers of `net` on n inputs (rows of X), with the activation after each layer but the last
   * (after every one with `final`). */
  run(net, X, final, n = 1) {
    const layers = this.networks[net];
    let h = X;
    layers.forEach((layer, i) => {
      h = linear(layer, h, n);
      if (final || i < layers.length - 1) h = h.map(this.activation);
    });
    return h;
  }

  /** q_phi(z|x): {mu, logvar}, each a Float64Array of length D. x: P values in [0, 1]; y: label if conditional. */
  encode(x, y) {
    if (!this.hasEncoder) throw new LabError(`${this.name} was exported without its encoder (decoder_only)`);
    if (x.length !== this.inputDim) {
      throw new LabError(`x has ${x.length} values, the model expects P = ${this.inputDim}`);
    }
    const h = this.run("encoder", withLabel(x, y, this.numClasses), true); // (F,)
    return { mu: this.run("to_mu", h, false), logvar: this.run("to_logvar", h, false) };
  }

  /** The decoder's output for z (length D): logits (Bernoulli) or means (Gaussian), length P.  With n > 1,
   * z holds n codes one after another (n * D values) and the output n rows of P. */
  decode(z, y, n = 1) {
    if (z.length !== n * this.latentDim) {
      throw new LabError(`z has ${z.length} values for ${n} code(s), the model's D is ${this.latentDim}`);
    }
    return this.run("decoder", withLabel(z, y, this.numClasses, n), false, n);
  }

  /** x_hat = E[x|z]: the sigmoid of the logits, or the Gaussian mean. */
  mean(xParam) {
    return this.likelihood === "bernoulli" ? xParam.map((l) => 1 / (1 + Math.exp(-l))) : xParam;
  }

  /** log p_theta(x|z) from the decoder's output, summed over pixels, in nats. */
  logLikelihood(x, xParam) {
    return this.likelihood === "bernoulli"
      ? logPxGivenZBernoulli(x, xParam)
      : logPxGivenZGaussian(x, xParam, this.xLogvar);
  }
}

// ---------------------------------------------------------------------------
// Seeded noise: eps ~ N(0, I)
// ---------------------------------------------------------------------------

/** A seeded generator of uniforms in (0, 1): a 32-bit counter passed through an integer hash. */
export function makeRng(seed) {
  let state = seed >>> 0;
  let spare = null; // Box-Muller makes normals in pairs
  const uniform = () => {
    state = (state + 0x9e3779b9) >>> 0; // the golden-ratio increment
    let h = state;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    h ^= h >>> 16;
    return ((h >>> 0) + 0.5) / 4294967296; // never 0 or 1, so log(u) is finite
  };
  // Box-Muller: two uniforms give two independent standard normals.
  const normal = () => {
    if (spare !== null) {
      const value = spare;
      spare = null;
      return value;
    }
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
  return { uniform, normal };
}

/** k draws of eps ~ N(0, I_D): an array of k Float64Arrays of length D. */
export function drawEps(rng, k, D) {
  return Array.from({ length: k }, () => Float64Array.from({ length: D }, rng.normal));
}

// ---------------------------------------------------------------------------
// The equations, one function each, named after the chapters' symbols
// ---------------------------------------------------------------------------

/** z = mu + sigma * eps with sigma = exp(logvar / 2): the reparameterization, eq. (ch4-reparam). */
export function z(mu, logvar, eps) {
  return mu.map((m, j) => m + Math.exp(0.5 * logvar[j]) * eps[j]);
}

/** log N(x; mu, diag exp(logvar)), summed: the Gaussian log-density of vaelib.gaussian.log_normal. */
export function logNormal(x, mu, logvar) {
  let sum = 0;
  for (let j = 0; j < x.length; j++) {
    const lv = logvar ? logvar[j] : 0;
    const d = x[j] - (mu ? mu[j] : 0);
    sum += -0.5 * (LOG_2PI + lv + d * d * Math.exp(-lv));
  }
  return sum;
}

/** log p(z) = log N(z; 0, I), the prior. */
export function logPz(zValue) {
  return logNormal(zValue, null, null);
}

/** log q_phi(z|x) = log N(z; mu, diag sigma^2), the encoder's density at z. */
export function logQzGivenX(zValue, mu, logvar) {
  return logNormal(zValue, mu, logvar);
}

/**
 * log p(x|z) = sum_p [x_p log xhat_p + (1 - x_p) log(1 - xhat_p)], eq. (ch3-bernoulli-recon), from the logits l:
 * x l - log(1 + e^l) per pixel, finite for any logit (vaelib.elbo.bernoulli_log_likelihood).
 */
export function logPxGivenZBernoulli(x, logits) {
  let sum = 0;
  for (let p = 0; p < x.length; p++) sum += x[p] * logits[p] - softplus(logits[p]);
  return sum;
}

/** log p(x|z) = log N(x; f(z), diag sigma_x^2), eqs. (ch3-gaussian-recon) and (ch5-gaussian), per-pixel variance. */
export function logPxGivenZGaussian(x, means, xLogvar) {
  return logNormal(x, means, xLogvar);
}

/** KL(q_phi(z|x) || N(0, I)) = 1/2 sum_j (mu_j^2 + e^l_j - 1 - l_j) with l = log sigma^2, eq. (ch4-kl-gradients). */
export function KL(mu, logvar) {
  let sum = 0;
  for (let j = 0; j < mu.length; j++) sum += 0.5 * (mu[j] * mu[j] + Math.exp(logvar[j]) - 1 - logvar[j]);
  return sum;
}

/**
 * log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), the log importance weights of eq. (ch3-importance), one
 * for each eps_i of the array eps (the draws are decoded together).  Returns [{logW, logPxZ}, ...]: each
 * weight and its reconstruction term.
 */
export function logWeights(model, x, mu, logvar, eps, y) {
  const D = mu.length;
  const P = model.inputDim;
  const codes = eps.map((e) => z(mu, logvar, e)); // z_i, each (D,)
  const Z = new Float64Array(eps.length * D);
  codes.forEach((zi, i) => Z.set(zi, i * D));
  const out = model.decode(Z, y, eps.length); // (n, P): logits or means
  return codes.map((zi, i) => {
    const logPxZ = model.logLikelihood(x, out.subarray(i * P, (i + 1) * P));
    return { logW: logPxZ + logPz(zi) - logQzGivenX(zi, mu, logvar), logPxZ };
  });
}

/** log w for one eps: logWeights of a single draw. */
export function logW(model, x, mu, logvar, eps, y) {
  return logWeights(model, x, mu, logvar, [eps], y)[0];
}

/** log((1/k) sum_i exp(a_i)) by log-sum-exp: the largest term is taken out first, so nothing overflows. */
export function logMeanExp(a) {
  let max = -Infinity;
  for (const v of a) if (v > max) max = v;
  if (max === -Infinity || max === Infinity) return max;
  let sum = 0;
  for (const v of a) sum += Math.exp(v - max);
  return max + Math.log(sum) - Math.log(a.length);
}

/** L_k = log (1/k) sum_i w_i from k log-weights: the importance-weighted bound, eqs. (ch3-iwae) and (ch5-iwae). */
export function Lk(logWeights) {
  return logMeanExp(logWeights);
}

/**
 * ELBO = E_q[log p(x|z)] - KL(q || p(z)), eqs. (ch3-elbo-vae) and (ch5-elbo): the reconstruction averaged over
 * the samples, the KL in closed form (as vaelib.objective computes it).
 */
export function ELBO(reconstructions, kl) {
  return reconstructions.reduce((a, b) => a + b, 0) / reconstructions.length - kl;
}

/**
 * L_k estimated from n draws: the mean of L_k over the n / k disjoint groups of k consecutive log-weights.
 * Each group is one draw of the bound of eq. (ch5-iwae), so the mean estimates its expectation E[L_k] with
 * n / k times less variance than one group; k = n is the single group, Lk(logWeights).
 */
export function LkFromGroups(logWeights, k) {
  const groups = Math.floor(logWeights.length / k);
  if (!(groups >= 1)) throw new LabError(`L_k needs k from 1 to ${logWeights.length} draws, got k = ${k}`);
  let sum = 0;
  for (let g = 0; g < groups; g++) sum += Lk(logWeights.subarray(g * k, (g + 1) * k));
  return sum / groups;
}

/**
 * The bounds of one input x (P binary pixels) from n = eps.length samples z_i = mu + sigma * eps_i:
 * {mu, logvar, kl, logWeights, reconstructions, elbo, Lk(k)}, with Lk(k) = LkFromGroups(logWeights, k),
 * so L_1, L_5, ..., L_n all come from one set of draws.  Pass eps (the tests do) or draw it:
 * drawEps(makeRng(seed), n, D).
 */
export function bounds(model, x, eps, y) {
  const steps = boundSteps(model, x, eps, y, CHUNK);
  let step = steps.next();
  while (!step.done) step = steps.next();
  return step.value;
}

/**
 * The work of bounds() one chunk of draws at a time: a generator that yields after each chunk (where
 * boundsInChunks lets the page draw) and returns the summary of all the draws.
 */
function* boundSteps(model, x, eps, y, chunk) {
  const { mu, logvar } = model.encode(x, y);
  const weights = new Float64Array(eps.length);
  const reconstructions = new Float64Array(eps.length);
  for (let start = 0; start < eps.length; start += chunk) {
    logWeights(model, x, mu, logvar, eps.slice(start, start + chunk), y).forEach((w, i) => {
      weights[start + i] = w.logW;
      reconstructions[start + i] = w.logPxZ;
    });
    yield;
  }
  return summarize(mu, logvar, weights, reconstructions);
}

function summarize(mu, logvar, logWeights, reconstructions) {
  const kl = KL(mu, logvar);
  return {
    mu,
    logvar,
    kl,
    logWeights,
    reconstructions,
    elbo: ELBO(reconstructions, kl),
    Lk: (k) => LkFromGroups(logWeights, k),
  };
}

/**
 * The same as bounds(), computed `chunk` samples at a time with a pause for the browser in between, so that
 * a large k (500) never freezes the page.  `isCancelled()` stops early (a newer input arrived): returns null.
 */
export async function boundsInChunks(model, x, eps, { y, chunk = CHUNK, isCancelled = () => false } = {}) {
  const steps = boundSteps(model, x, eps, y, chunk);
  for (let step = steps.next(); ; step = steps.next()) {
    if (step.done) return step.value;
    await new Promise((resolve) => setTimeout(resolve, 0)); // let the page draw and answer input
    if (isCancelled()) return null;
  }
}
