"""The VAE that CLUE searches: it learns to reconstruct, is seeded, and is cached."""

import torch

from uattr.zoo import data
from uattr.zoo.vae import VAE, VAEConfig, load_or_train_vae, reconstruction_error, train_vae

SMALL = VAEConfig(latent=8, hidden=64, epochs=20, batch_size=32)


def _splits():
    train = data.load("digits", "train")
    return train, data.load("digits", "test")


def test_training_cuts_the_held_out_reconstruction_error_by_more_than_half():
    train, test = _splits()
    torch.manual_seed(0)
    untrained = VAE(tuple(train.images.shape[1:]), SMALL.latent, SMALL.hidden).eval()
    trained = train_vae(train, SMALL, log=lambda _: None)
    before, after = reconstruction_error(untrained, test), reconstruction_error(trained, test)
    # an untrained decoder outputs ~0.5 everywhere: its error is near the mean distance of
    # the pixels from 0.5
    assert after < 0.5 * before
    z = trained.encode(test.images[:5])[0].detach()
    assert z.shape == (5, SMALL.latent)
    decoded = trained.decode(z).detach()
    assert decoded.shape == test.images[:5].shape
    assert 0.0 < float(decoded.min()) and float(decoded.max()) < 1.0  # a Bernoulli mean


def test_training_is_seeded_and_the_cache_returns_the_same_weights(tmp_path):
    train, test = _splits()
    one, info = load_or_train_vae("digits", train, test, config=SMALL, cache=tmp_path,
                                  log=lambda _: None)
    again, info_again = load_or_train_vae("digits", train, test, config=SMALL,
                                          cache=tmp_path, log=lambda _: None)
    fresh = train_vae(train, SMALL, log=lambda _: None)
    for a, b, c in zip(one.state_dict().values(), again.state_dict().values(),
                       fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, c)
    assert info["test_l1"] == info_again["test_l1"] == reconstruction_error(one, test)
    assert len(list(tmp_path.glob("digits-vae-*.pt"))) == 1
