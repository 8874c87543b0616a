"""Behaviour that mutation testing found unpinned (mutmut; scores and survivors in tests/README.md).

Each test here failed on at least one mutant that the rest of the suite let
survive: the memory estimate behind the refusal of huge sample counts, the
rules on ``beta``, ``k``, ``eps`` and the autoencoder's arguments, the chunks
``iwae_bound`` decodes, and float64 arithmetic in the Gaussian helpers.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import vaelib as vl
import vaelib._checks
import vaelib.checkpoint
import vaelib.data
from vaelib.elbo import _default_chunk

B, D, P = 3, 2, 16  # inputs, latent size and pixels of the tiny VAE


@pytest.fixture
def x(binary_data) -> torch.Tensor:
    return binary_data[0][:B]  # (B, P)


def machine_with(monkeypatch, nbytes: int) -> list[torch.device]:
    """Make every device report ``nbytes`` of memory; returns the devices asked about."""
    asked = []

    def memory(device):
        asked.append(torch.device(device))
        return nbytes

    monkeypatch.setattr(vaelib._checks, "memory", memory)
    return asked


# ---------------------------------------------------------------- the memory k samples need


@pytest.mark.parametrize("dtype, itemsize", [(torch.float32, 4), (torch.float64, 8)])
def test_k_samples_decoded_at_once_need_z_noise_output_and_terms_of_each(monkeypatch, tiny_vae, x, dtype, itemsize):
    """objective(k > 1) holds, per sample and input, z and its noise (D each) and the output and terms (P each)."""
    model, x = tiny_vae.to(dtype), x.to(dtype)
    need = itemsize * B * 2 * 2 * (D + P)  # k = 2
    asked = machine_with(monkeypatch, need)
    assert vl.objective(model, x, k=2).objective.shape == (B,)
    assert asked == [torch.device("cpu")]
    machine_with(monkeypatch, need - 1)
    advice = "; use vl.iwae_bound, which decodes the samples in chunks, or fewer samples$"
    with pytest.raises(vl.VaelibError, match=rf"^k=2 importance samples for {B} inputs would need at least .*{advice}"):
        vl.objective(model, x, k=2)
    vl.objective(model, x, k=2, check=False)  # check=False skips it: the loop's data were checked once
    machine_with(monkeypatch, 0)
    vl.objective(model, x)  # one sample: nothing beyond the forward pass to estimate


@pytest.mark.parametrize("dtype, itemsize", [(torch.float32, 4), (torch.float64, 8)])
def test_k_samples_decoded_in_chunks_need_only_their_log_weights(monkeypatch, tiny_vae, x, dtype, itemsize):
    model, x = tiny_vae.to(dtype), x.to(dtype)
    need = itemsize * B * 5 * 2  # k = 5: the (k, B) log-weights and log-likelihoods
    machine_with(monkeypatch, need)
    assert vl.iwae_bound(model, x, 5, chunk_size=2).shape == (B,)
    machine_with(monkeypatch, need - 1)
    with pytest.raises(vl.VaelibError, match=r"; use fewer samples, or fewer inputs at a time \(batch_size\)$"):
        vl.iwae_bound(model, x, 5, chunk_size=2)


def decoded_chunks(model, x, k, **kwargs) -> list[int]:
    """The number of samples in each chunk that ``iwae_bound`` decodes."""
    sizes = []
    decode = model.decode

    def recording(z, *args):
        sizes.append(z.shape[0])  # z: (chunk, B, D)
        return decode(z, *args)

    model.decode = recording
    vl.iwae_bound(model, x, k, **kwargs)
    return sizes


def test_iwae_bound_decodes_k_samples_in_chunks_of_chunk_size(tiny_vae, x):
    assert decoded_chunks(tiny_vae, x, 5, chunk_size=2) == [2, 2, 1]


@pytest.mark.parametrize(("device", "floats"), [("cpu", 2**19), ("cuda", 2**24), ("meta", 2**24)])
def test_the_default_chunk_holds_2_to_the_19_outputs_on_a_cpu_and_2_to_the_24_elsewhere(device, floats):
    device = torch.device(device)
    protocol = floats // (100 * 784)  # the test protocol on MNIST: batches of 100 images, k = 5000
    assert _default_chunk(5000, 100, 784, device) == protocol == {2**19: 6, 2**24: 213}[floats]
    assert _default_chunk(floats, 1, 1, device) == floats  # one value per sample: all of them at once
    assert _default_chunk(7, 2, 16, device) == 7  # never more than k
    assert _default_chunk(7, 2 * floats, 1, device) == 1  # at least one sample per chunk


def test_iwae_bound_decodes_in_chunks_of_the_default_size_for_the_inputs_device(tiny_vae, x):
    chunk = 2**19 // x.numel()  # on the CPU: about 2**19 decoder outputs, x is (B, P)
    assert decoded_chunks(tiny_vae, x, 3 * chunk + 1) == [chunk, chunk, chunk, 1]


# ---------------------------------------------------------------- the arguments of objective and iwae_bound


def test_beta_must_be_a_non_negative_number(tiny_vae, x):
    with pytest.raises(vl.VaelibError, match=r"^beta must be >= 0\.0, got -0\.5$"):
        vl.objective(tiny_vae, x, beta=-0.5)
    assert torch.isfinite(vl.objective(tiny_vae, x, beta=0.0).objective).all()


def test_a_kl_weight_is_refused_for_any_k_above_one(tiny_vae, x):
    for k in (2, 3):
        with pytest.raises(vl.VaelibError, match=r"^the bound L_k \(k > 1\) has no KL weight; use beta=1 with k > 1$"):
            vl.objective(tiny_vae, x, k=k, beta=0.5)


def test_eps_must_hold_k_samples_and_the_error_says_which_k(tiny_vae, x):
    eps = torch.zeros(4, B, D)  # 4 samples of B = 3 inputs
    with pytest.raises(vl.VaelibError, match=r"^eps holds 4 samples per input but k=2; pass k=4$"):
        vl.objective(tiny_vae, x, k=2, eps=eps)


def test_the_autoencoder_refuses_each_argument_of_a_latent_distribution(x):
    model = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=D, hidden_dims=(8,)))
    for extra in ({"eps": torch.zeros(B, D)}, {"q": (0.0, 0.0)}, {"y": torch.zeros(B, dtype=torch.long)}):
        with pytest.raises(vl.VaelibError, match=r"^Autoencoder has no latent distribution"):
            vl.objective(model, x, **extra)
    nan = x.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(vl.VaelibError, match="NaN"):
        vl.objective(model, nan)
    assert vl.objective(model, nan, check=False).objective[0].isnan()  # unchecked, as documented


def test_labels_and_values_are_checked_by_objective_and_iwae_bound(x):
    cvae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=D, hidden_dims=(8,), num_classes=3))
    wrong = torch.tensor([0, 1, 3])  # 3 is not one of the 3 classes
    for score in (lambda y: vl.objective(cvae, x, y=y), lambda y: vl.iwae_bound(cvae, x, 2, y=y)):
        with pytest.raises(vl.VaelibError, match="3"):
            score(wrong)
    nan = x.clone()
    nan[1, 2] = float("nan")
    with pytest.raises(vl.VaelibError, match="NaN"):
        vl.iwae_bound(cvae, nan, 2, y=torch.tensor([0, 1, 2]))


def test_chunk_size_must_be_a_positive_integer(tiny_vae, x):
    with pytest.raises(vl.VaelibError, match=r"^chunk_size must be an integer >= 1, got 0$"):
        vl.iwae_bound(tiny_vae, x, 4, chunk_size=0)


def test_a_proposal_given_as_numbers_is_taken_at_the_datas_precision(tiny_vae, x):
    model, x = tiny_vae.double(), x.double()
    eps = torch.randn(4, B, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    as_numbers = vl.objective(model, x, k=4, eps=eps, q=(0.1, -0.3)).objective
    as_tensors = vl.objective(model, x, k=4, eps=eps, q=(torch.full((B, D), 0.1, dtype=torch.float64), -0.3)).objective
    assert as_numbers.dtype == torch.float64 and torch.equal(as_numbers, as_tensors)


# ---------------------------------------------------------------- float64 in the Gaussian helpers


def test_log_normal_in_float64_with_number_parameters_matches_scipy():
    x = torch.linspace(-2.0, 3.0, 7, dtype=torch.float64)
    ours = vl.gaussian.log_normal(x, 0.1, -0.7, reduce=False)
    reference = stats.norm.logpdf(x.numpy(), loc=0.1, scale=np.exp(-0.35))
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-13)


def test_reparameterize_draws_the_noise_at_the_parameters_precision():
    mu = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    logvar = torch.tensor([[0.4, -2.0]], dtype=torch.float64)
    z = vl.gaussian.reparameterize(mu, logvar, 3, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert z.dtype == torch.float64 and torch.equal(z, mu + torch.exp(0.5 * logvar) * eps)


# ---------------------------------------------------------------- the conditional model, evaluate, checkpoints, data


@pytest.fixture
def cvae() -> vl.VAE:
    return vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=D, hidden_dims=(8,), num_classes=3))


def test_a_conditional_forward_pass_encodes_and_decodes_with_the_labels(cvae, x):
    y = torch.tensor([0, 1, 2])
    x_param, mu, logvar = cvae(x, y, generator=torch.Generator().manual_seed(2))
    mu_y, logvar_y = cvae.encode(x, y)
    z = vl.gaussian.reparameterize(mu_y, logvar_y, generator=torch.Generator().manual_seed(2))
    assert torch.equal(mu, mu_y) and torch.equal(logvar, logvar_y)
    assert torch.equal(x_param, cvae.decode(z, y))
    assert not torch.equal(x_param, cvae.decode(z, torch.tensor([1, 2, 0])))  # the labels matter


def test_evaluate_scores_a_conditional_model_with_its_labels_reproducibly(cvae, x):
    y = torch.tensor([0, 1, 2])
    first, second = vl.evaluate(cvae, x, y=y, k=4), vl.evaluate(cvae, x, y=y, k=4)
    assert np.isfinite(first["nll"]) and first == second  # the seed fixes every draw, L_k's too
    assert vl.evaluate(cvae, x, y=y, k=4, seed=1)["nll"] != first["nll"]


def test_load_model_names_the_file_in_every_refusal(tmp_path, tiny_vae):
    path = tmp_path / "run.pt"
    vaelib.checkpoint.save_checkpoint(path, tiny_vae)
    state = torch.load(path, weights_only=True)
    state["model_state"].pop(next(iter(state["model_state"])))  # one weight missing
    torch.save(state, path)
    with pytest.raises(vl.CheckpointError, match=rf"^{re.escape(str(path))}: weights do not fit the model"):
        vl.load_model(path)
    state["model_config"]["latent_dim"] = -1  # a config no model can be built from
    torch.save(state, path)
    with pytest.raises(vl.CheckpointError, match=rf"^{re.escape(str(path))}: .*latent_dim"):
        vl.load_model(path)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x00\x08",  # shorter than the magic number
        b"\x00\x01\x08\x01" + bytes(5),  # second byte of the magic wrong
        b"\x01\x00\x08\x01" + bytes(5),  # first byte wrong
        b"\x00\x00\x09\x01" + bytes(5),  # not unsigned bytes
    ],
)
def test_a_file_without_the_idx_magic_number_is_refused(tmp_path, content):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(vl.DataError, match="is not an unsigned-byte IDX file; delete it and fetch the data set again$"):
        vaelib.data._read_idx(path)


def test_idx_files_of_several_dimensions_read_back_exactly(tmp_path, idx_writer):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    np.testing.assert_array_equal(vaelib.data._read_idx(idx_writer(tmp_path / "a-idx3-ubyte", array)), array)
    wide = np.arange(2**16 + 1, dtype=np.uint64).astype(np.uint8).reshape(1, 1, -1)  # a dimension above 2 bytes
    np.testing.assert_array_equal(vaelib.data._read_idx(idx_writer(tmp_path / "w-idx3-ubyte", wide)), wide)
    path = idx_writer(tmp_path / "b-idx3-ubyte", array)
    path.write_bytes(path.read_bytes()[:-7])  # 23 of the 30 bytes of data
    with pytest.raises(vl.DataError, match=r"is truncated: 23 bytes of data, 30 expected$"):
        vaelib.data._read_idx(path)


def test_binarize_refuses_what_is_not_grey_levels_and_says_what_it_got():
    with pytest.raises(vl.VaelibError, match=r"got torch\.uint8$"):
        vl.binarize(torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(vl.VaelibError, match=r"got list$"):
        vl.binarize([0.5, 0.5])
    with pytest.raises(vl.VaelibError, match=r"got values in \[0, 1\.5\]; x / 255\?$"):
        vl.binarize(torch.tensor([0.0, 1.5]))
    assert torch.equal(vl.binarize(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))


def test_mnist_is_the_default_data_set(tmp_path, fake_mnist_writer, no_download):
    arrays = fake_mnist_writer(tmp_path / "MNIST" / "raw", fill=7)
    assert vl.data.find_dataset(root=tmp_path) == vl.data.find_dataset("mnist", root=tmp_path) is not None
    x, y = vl.load(split="test", root=tmp_path)
    np.testing.assert_array_equal(y.numpy(), arrays["test_y"])


def test_the_download_budget_must_be_a_positive_number_of_seconds(tmp_path):
    with pytest.raises(vl.VaelibError, match=r"^timeout must be > 0, got 0$"):
        vl.load("mnist", "test", root=tmp_path, timeout=0)


def test_a_data_root_that_is_a_file_is_refused_naming_where_it_came_from(tmp_path, monkeypatch):
    file = tmp_path / "vaelib"
    file.write_text("")
    advice = (
        r"is a file, not a directory; point VAELIB_DATA \(or root=\.\.\.\) at the directory that holds the data"
        r" sets, or is to hold them$"
    )
    with pytest.raises(vl.DataError, match=r"\(from the root argument\) " + advice):
        vl.load(root=file)
    monkeypatch.setenv("VAELIB_DATA", str(file))
    with pytest.raises(vl.DataError, match=r"\(from \$VAELIB_DATA\) " + advice):
        vl.load()
    monkeypatch.delenv("VAELIB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the per-user cache is then <tmp_path>/vaelib: the file
    with pytest.raises(vl.DataError, match=r"\(from the per-user cache\) " + advice):
        vl.load()


def test_load_without_the_files_or_a_download_says_where_to_put_them(tmp_path):
    raw = re.escape(str(tmp_path / "MNIST" / "raw"))
    advice = rf"Put the four IDX files \(\.gz or uncompressed\) in {raw}, set VAELIB_DATA \(or pass root=\.\.\.\) to"
    with pytest.raises(vl.DataError, match=rf"^mnist is not on disk: searched .*{raw}.*\. {advice} where they are, or"):
        vl.load("mnist", "test", root=tmp_path, download=False)
    with pytest.raises(vl.DataError, match=r"or allow download=True\.$"):
        vl.load("mnist", "test", root=tmp_path, download=False)


@pytest.mark.parametrize(
    "images, labels, problem",
    [
        (np.zeros((2, 4, 4)), np.zeros(2), r"holds an array of shape \(2, 4, 4\), not images \(N, 28, 28\); are the"),
        (np.zeros((2, 784)), np.zeros(2), r"holds an array of shape \(2, 784\), not images \(N, 28, 28\)"),
        (np.zeros((2, 28, 28)), np.zeros((2, 1)), r"holds an array of shape \(2, 1\), not labels \(N,\); are the"),
    ],
)
def test_load_refuses_files_that_hold_other_arrays(tmp_path, idx_writer, images, labels, problem):
    raw = tmp_path / "MNIST" / "raw"
    idx_writer(raw / "t10k-images-idx3-ubyte", images)
    idx_writer(raw / "t10k-labels-idx1-ubyte", labels)
    idx_writer(raw / "train-images-idx3-ubyte", np.zeros((1, 28, 28)))
    idx_writer(raw / "train-labels-idx1-ubyte", np.zeros(1))
    with pytest.raises(vl.DataError, match=problem + r".*Fetch the data set again$"):
        vl.load("mnist", "test", root=tmp_path, download=False)


# --- checkpoint.py: where a checkpoint goes, what an interrupted save leaves, what a refusal says ---


def test_a_checkpoint_goes_into_directories_that_do_not_exist_yet(tmp_path, tiny_vae):
    path = tmp_path / "a" / "b" / "checkpoint.pt"
    assert vaelib.checkpoint.writable_path(path) == path and path.parent.is_dir()
    deeper = tmp_path / "c" / "d" / "checkpoint.pt"
    vaelib.checkpoint.save_checkpoint(deeper, tiny_vae, epoch=1)
    assert vaelib.checkpoint.load_checkpoint(deeper)["epoch"] == 1


def test_a_save_writes_a_hidden_temporary_beside_the_file_and_leaves_none(tmp_path, tiny_vae, monkeypatch):
    """The temporary is .NAME.*.tmp in the same directory (so os.replace is atomic and the next save finds
    what a killed one left); it is gone after a save that succeeds and after one that fails."""
    path = tmp_path / "run.pt"
    stale = tmp_path / ".run.pt.x1.tmp"  # what a killed save leaves
    other = tmp_path / ".other.pt.x1.tmp"  # another file's: not ours to delete
    stale.write_bytes(b"partial")
    other.write_bytes(b"partial")
    seen = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(**kwargs):
        fd, name = real_mkstemp(**kwargs)
        seen.append(Path(name))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    vaelib.checkpoint.save_checkpoint(path, tiny_vae)
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".run.pt.") and tmp.name.endswith(".tmp")
    assert not stale.exists() and other.exists() and not list(tmp_path.glob(".run.pt.*.tmp"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # the usual permissions, not mkstemp's 0o600

    def fails(obj, f):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fails)
    with pytest.raises(OSError, match="disk full"):
        vaelib.checkpoint.save_checkpoint(tmp_path / "next.pt", tiny_vae)
    assert not list(tmp_path.glob(".next.pt.*")) and not (tmp_path / "next.pt").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_config_and_kind_refusals_say_what_was_given():
    with pytest.raises(vl.VaelibError, match=r"a VAEConfig must be given as a dict of fields, got list"):
        vaelib.checkpoint.config_from_dict("VAE", [1, 2])
    with pytest.raises(vl.VaelibError, match=r"unknown model kind 'GAN'; expected one of \['Autoencoder', 'VAE'\]"):
        vaelib.checkpoint.config_from_dict("GAN", {})
    with pytest.raises(vl.VaelibError, match=r"unknown VAEConfig fields \['depth'\]; was this saved by a newer"):
        vaelib.checkpoint.config_from_dict("VAE", {"depth": 3})
    with pytest.raises(vl.VaelibError, match="expected a vaelib VAE or Autoencoder, got Linear"):
        vaelib.checkpoint.model_kind(torch.nn.Linear(2, 2))
    assert vaelib.checkpoint.model_kind(vl.VAE(vl.VAEConfig(latent_dim=2, hidden_dims=(4,)))) == "VAE"


def test_load_checkpoint_names_the_file_and_the_first_line_of_what_went_wrong(tmp_path, tiny_vae):
    with pytest.raises(vaelib.checkpoint.CheckpointError, match=r"is a directory; name a checkpoint file"):
        vaelib.checkpoint.save_checkpoint(tmp_path, tiny_vae)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint at all")
    with pytest.raises(vaelib.checkpoint.CheckpointError) as caught:
        vaelib.checkpoint.load_checkpoint(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad} is not a readable checkpoint (truncated or corrupt: ")
    assert "None" not in message and "use an earlier checkpoint or train again" in message
    reason = message.split("truncated or corrupt: ", 1)[1]
    assert reason and not reason.startswith(")")  # the error's own first line is quoted


def test_restore_weights_names_the_checkpoint_and_what_does_not_fit(tmp_path, tiny_vae, tiny_config):
    state = vaelib.checkpoint.load_checkpoint(vaelib.checkpoint.save_checkpoint(tmp_path / "c.pt", tiny_vae))
    other = vl.VAE(vl.VAEConfig(image_shape=tiny_config.image_shape, latent_dim=3, hidden_dims=(32,)))
    with pytest.raises(vaelib.checkpoint.CheckpointError, match=r"^checkpoint was made for VAE\("):
        vaelib.checkpoint.restore_weights(other, state)
    state["model_state"] = {k: v[..., :1] for k, v in state["model_state"].items()}  # cut every tensor
    with pytest.raises(vaelib.checkpoint.CheckpointError, match=r"^run\.pt: weights do not fit the model: \S"):
        vaelib.checkpoint.restore_weights(vl.VAE(tiny_config), state, "run.pt")


# ---------------------------------------------------------------- train.py: what fit does between epochs


def test_the_schedule_reaches_the_optimizer(tiny_config, grey_data, tmp_path):
    """The learning rate that the history reports is the one Adam used: it is in the saved optimizer state,
    and a decaying schedule ends with other weights than a constant one."""
    x_train = grey_data[0][:64]
    weights = {}
    for schedule in ("constant", "burda"):
        config = vl.TrainConfig(epochs=8, batch_size=16, lr_schedule=schedule, device="cpu", seed=1)
        model = vl.build_model(tiny_config, seed=1)
        path = tmp_path / f"{schedule}.pt"
        history = vl.fit(model, x_train, None, config, checkpoint=path, progress=False)
        saved = vaelib.checkpoint.load_checkpoint(path)["optimizer"]["param_groups"][0]["lr"]
        assert saved == history[-1]["lr"]
        weights[schedule] = torch.cat([p.flatten() for p in model.parameters()])
    assert history[-1]["lr"] < config.lr  # the burda schedule has decayed by the last epoch ...
    assert not torch.equal(weights["constant"], weights["burda"])  # ... and the steps felt it


def test_evaluation_follows_eval_every_from_the_first_epoch(tiny_config, grey_data):
    config = vl.TrainConfig(epochs=7, batch_size=64, eval_every=3, device="cpu")
    history = vl.fit(vl.VAE(tiny_config), grey_data[0][:64], grey_data[1][:32], config, progress=False)
    assert [h["epoch"] for h in history if "test_elbo" in h] == [3, 6, 7]


def test_the_history_scores_the_test_set_binarized_once_with_the_eval_stream(tiny_config, grey_data):
    """Under dynamic binarization the test set is binarized once, by the run's "test_pixels" stream, and
    scored with the "eval" stream's seed: the history's test ELBO is vl.evaluate's of the trained model."""
    from vaelib import streams

    x_train, x_test = grey_data[0][:64], grey_data[1][:40]
    config = vl.TrainConfig(epochs=1, batch_size=32, pixels="dynamic", device="cpu", seed=3)
    model = vl.VAE(tiny_config)
    history = vl.fit(model, x_train, x_test, config, progress=False)
    binary = vl.binarize(x_test, streams.generator(3, "test_pixels"))
    expected = vl.evaluate(model, binary, seed=3 + streams.STREAMS["eval"])
    assert history[-1]["test_elbo"] == pytest.approx(expected["elbo"], abs=1e-5)


def test_a_checkpoint_without_an_optimizer_state_is_not_resumed(tiny_config, grey_data, tmp_path):
    config = vl.TrainConfig(epochs=1, batch_size=64, device="cpu")
    path = tmp_path / "run.pt"
    vl.fit(vl.VAE(tiny_config), grey_data[0][:64], None, config, checkpoint=path, progress=False)
    state = vaelib.checkpoint.load_checkpoint(path)
    del state["optimizer"]  # a model and its train_config, but no optimizer state
    vaelib.checkpoint.save_checkpoint(path, vl.VAE(tiny_config), **{k: v for k, v in state.items() if k in KEEP})
    with pytest.raises(vl.CheckpointError, match="holds a model but no training state to resume"):
        vl.fit(vl.VAE(tiny_config), grey_data[0][:64], None, replace(config, epochs=2), checkpoint=path)


def test_a_checkpoint_from_a_newer_vaelib_names_the_fields_it_lacks(tiny_config, grey_data, tmp_path):
    config = vl.TrainConfig(epochs=1, batch_size=64, device="cpu")
    path = tmp_path / "run.pt"
    vl.fit(vl.VAE(tiny_config), grey_data[0][:64], None, config, checkpoint=path, progress=False)
    state = vaelib.checkpoint.load_checkpoint(path)
    state["train_config"]["warp_drive"] = True
    vaelib.checkpoint.save_checkpoint(path, vl.VAE(tiny_config), **{k: v for k, v in state.items() if k in KEEP})
    with pytest.raises(vl.CheckpointError, match=r"has TrainConfig fields \['warp_drive'\] .*upgrade vaelib"):
        vl.fit(vl.VAE(tiny_config), grey_data[0][:64], None, replace(config, epochs=2), checkpoint=path)


KEEP = ("optimizer", "epoch", "history", "train_config", "rng_state", "rng_device")  # fit's run state


@pytest.mark.parametrize("value, shown", [("", True), ("0", True), ("false", True), ("true", False), ("1", False)])
def test_progress_bars_show_unless_ci_is_set(monkeypatch, value, shown):
    from vaelib.train import progress_enabled

    monkeypatch.setenv("CI", value)
    assert progress_enabled(None) is shown
    assert progress_enabled(False) is False and progress_enabled(True) is True
