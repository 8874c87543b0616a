"""The conditional VAE: a VAEConfig with num_classes > 0 conditions encoder and
decoder on a one-hot label; everything that takes x also takes its labels y."""

import pytest
import torch

import vaelib as vl
from vaelib.cli import main


@pytest.fixture
def cvae() -> vl.VAE:
    return vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(32,), num_classes=3))


def _labelled(binary_data=None, n=512):
    """Three classes of 4x4 binary images: class c lights up row c (with probability 0.9) over noise."""
    g = torch.Generator().manual_seed(7)
    y = torch.randint(0, 3, (n,), generator=g)
    p = torch.full((n, 4, 4), 0.1)
    p[torch.arange(n), y] = 0.9
    return torch.bernoulli(p, generator=g).reshape(n, 16), y


def test_the_label_enters_as_a_one_hot_next_to_x_and_next_to_z(cvae):
    first_enc, first_dec = cvae.encoder[0], cvae.decoder[0]
    assert first_enc.in_features == 16 + 3 and first_dec.in_features == 2 + 3
    x = torch.rand(5, 16)
    y = torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        mu, _ = cvae.encode(x, y)
        by_hand = cvae.to_mu(cvae.encoder(torch.cat([x, torch.nn.functional.one_hot(y, 3).float()], -1)))
        torch.testing.assert_close(mu, by_hand)
        z = torch.randn(4, 5, 2)  # (k, B, D): the labels broadcast over the k samples
        out = cvae.decode(z, y)
        assert out.shape == (4, 5, 16)
        torch.testing.assert_close(out[1], cvae.decode(z[1], y))


def test_a_conditional_model_needs_labels_and_an_unconditional_one_refuses_them(cvae, tiny_vae):
    x = torch.rand(3, 16)
    with pytest.raises(vl.VaelibError, match="pass labels y"):
        cvae.encode(x)
    with pytest.raises(vl.VaelibError, match=r"labels must lie in \[0, 3\)"):
        cvae.encode(x, torch.tensor([0, 1, 3]))
    with pytest.raises(vl.VaelibError, match="one label per input"):
        cvae.encode(x, torch.tensor([0, 1]))
    with pytest.raises(vl.VaelibError, match="1-D integer tensor"):
        cvae.encode(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(vl.VaelibError, match="model is unconditional"):
        tiny_vae.encode(x, torch.tensor([0, 1, 2]))


def test_the_objective_of_a_cvae_is_the_conditional_elbo(cvae, binary_data):
    x, y = _labelled(binary_data)
    x, y = x[:8], y[:8]
    eps = torch.randn(1, 8, 2, generator=torch.Generator().manual_seed(0))
    terms = vl.objective(cvae, x, y=y, eps=eps)
    with torch.no_grad():
        mu, logvar = cvae.encode(x, y)
        z = mu + torch.exp(0.5 * logvar) * eps[0]
        recon = vl.elbo.bernoulli_log_likelihood(x, cvae.decode(z, y))
        kl = vl.gaussian.kl_standard_normal(mu, logvar)
    torch.testing.assert_close(terms.reconstruction, recon)
    torch.testing.assert_close(terms.elbo, recon - kl)
    # L_k of a CVAE bounds log p(x|y) from below, tighter with k (on average)
    l1 = vl.iwae_bound(cvae, x, 1, y=y, generator=torch.Generator().manual_seed(1)).mean()
    l50 = vl.iwae_bound(cvae, x, 50, y=y, generator=torch.Generator().manual_seed(1)).mean()
    assert l50 > l1


def test_fit_trains_a_cvae_whose_labels_matter(cvae, binary_data):
    x, y = _labelled(binary_data)
    history = vl.fit(
        cvae,
        x,
        x[:128],
        vl.TrainConfig(epochs=15, batch_size=64, lr=1e-2, device="cpu"),
        y_train=y,
        y_test=y[:128],
        progress=False,
    )
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]
    right = vl.evaluate(cvae, x[:256], y=y[:256])["elbo"]
    wrong = vl.evaluate(cvae, x[:256], y=(y[:256] + 1) % 3)["elbo"]
    assert right > wrong + 0.5  # the decoder uses the label: the wrong one costs nats
    with pytest.raises(vl.VaelibError, match="pass labels y"):
        vl.fit(cvae, x, config=vl.TrainConfig(epochs=1, device="cpu"), progress=False)


def test_samples_on_demand_follow_the_label(cvae, binary_data):
    x, y = _labelled(binary_data)
    vl.fit(cvae, x, config=vl.TrainConfig(epochs=15, batch_size=64, lr=1e-2, device="cpu"), y_train=y, progress=False)
    g = torch.Generator().manual_seed(0)
    for label in range(3):
        rows = vl.sample_prior(cvae, 500, y=label, generator=g).reshape(-1, 4, 4).mean((0, 2))  # (4,) mean ink per row
        assert rows.argmax() == label and rows[label] > 0.7  # the drawn class lights its own row
    per_sample = vl.sample_prior(cvae, 3, y=torch.tensor([2, 0, 1]), generator=torch.Generator().manual_seed(1))
    assert per_sample.shape == (3, 16)
    with pytest.raises(vl.VaelibError, match="pass labels y"):
        vl.sample_prior(cvae, 4)


def test_a_cvae_checkpoint_round_trips_and_the_cli_samples_a_label(tmp_path, cvae, binary_data, capsys):
    x, y = _labelled(binary_data)
    path = tmp_path / "cvae.pt"
    vl.fit(cvae, x, config=vl.TrainConfig(epochs=1, device="cpu"), y_train=y, checkpoint=path, progress=False)
    loaded = vl.load_model(path)
    assert loaded.config.num_classes == 3
    assert main(["sample", str(path), "--label", "1", "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["sample", str(path), "--n", "4", "--out", str(tmp_path / "t.png")]) == 1
    assert "pass --label" in capsys.readouterr().err
