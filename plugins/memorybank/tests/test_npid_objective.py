"""The NPID objective: what its loss reads (the bank as it was before the
batch, sampled negatives), when and with what the bank is written (after
the optimizer step, the mean embedding of a sample's views), NCE's Z
(estimated once, checkpointed), 1 or 2 views, and its user errors."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
import torch.nn.functional as F
from sslx_encoders.models import SmallCNN
from sslx_memorybank.objective import NPID

import sslx
from sslx.testing import train_step

DATA = sslx.DataInfo(channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,), num_classes=None)
N, K, D = 40, 16, 6  # bank rows (dataset size), negatives, embedding size


def make_npid(seed: int = 0, num_views: int = 1, **params) -> NPID:
    torch.manual_seed(seed)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=2), DATA)
    info = sslx.TrainInfo(data=DATA, num_views=num_views, batch_size=4, total_steps=20, dataset_size=N)
    return NPID(NPID.Params(**{"num_negatives": K, "embedding_dim": D, **params}), encoder, info)


def random_batch(num_views: int = 1, index=(3, 17, 0, 39), seed: int = 1) -> sslx.Batch:
    gen = torch.Generator().manual_seed(seed)
    b = len(index)
    views = [torch.randn(b, 1, 8, 8, generator=gen) for _ in range(num_views)]
    return sslx.Batch(views=views, index=torch.tensor(index), label=torch.full((b,), -1))


def embed(obj: NPID, batch: sslx.Batch) -> torch.Tensor:
    """The unnormalised embeddings of all views, view after view (train-mode
    BatchNorm: the same batch gives the same outputs as in forward)."""
    with torch.no_grad():
        return obj.head(obj.encoder(torch.cat(batch.views)))


def softmax_reference(z, positive, negatives, t) -> float:
    """Wu et al. (2018) eq. 2 over the positive and sampled rows, with loops in float64."""
    total = 0.0
    for i in range(len(z)):
        f = z[i].double() / z[i].double().norm()
        logits = [float(f @ positive[i].double()) / t] + [
            float(f @ negatives[k].double()) / t for k in range(len(negatives))
        ]
        total -= logits[0] - math.log(sum(math.exp(x) for x in logits))
    return total / len(z)


def log_z_reference(z, negatives, t, n) -> float:
    """Eq. 6: log(n * mean_{b,k} exp(v_k.f_b / t))."""
    f = z.double() / z.double().norm(dim=1, keepdim=True)
    terms = [math.exp(float(f[b] @ negatives[k].double()) / t) for b in range(len(f)) for k in range(len(negatives))]
    return math.log(n * sum(terms) / len(terms))


def nce_reference(z, positive, negatives, t, log_z, n) -> float:
    """Eqs. 4-5: -log h(i) - sum_k log(1 - h(k)), h = P / (P + K/n), P = exp(v.f/t) / Z."""
    total, noise = 0.0, len(negatives) / n
    for i in range(len(z)):
        f = z[i].double() / z[i].double().norm()
        p = math.exp(float(f @ positive[i].double()) / t - log_z)
        total -= math.log(p / (p + noise))
        for k in range(len(negatives)):
            p_k = math.exp(float(f @ negatives[k].double()) / t - log_z)
            total -= math.log(1 - p_k / (p_k + noise))
    return total / len(z)


# -- what the loss reads, what the bank receives --------------------------------


@pytest.mark.parametrize("loss", ["softmax", "nce"])
@pytest.mark.parametrize("num_views", [1, 2])
def test_loss_reads_the_old_bank_which_is_written_only_after_the_step(loss, num_views):
    """forward's loss queries every view's embedding against its sample's bank
    row and K rows sampled with torch's RNG, from the bank as it was before
    the batch; forward leaves the bank alone; on_step_end writes each
    sample's row with the mean of its views' normalised embeddings (as
    computed in forward, before the optimizer step), momentum bank_momentum."""
    obj = make_npid(num_views=num_views, loss=loss, temperature=0.1, bank_momentum=0.3)
    batch = random_batch(num_views)
    bank_before = obj.bank.features.clone()
    torch.manual_seed(5)
    out = obj(batch)
    assert torch.equal(obj.bank.features, bank_before)

    torch.manual_seed(5)
    negatives = bank_before[obj.bank.sample(K)]
    z = embed(obj, batch)
    positive = bank_before[batch.index].repeat(num_views, 1)
    if loss == "softmax":
        expected = softmax_reference(z, positive, negatives, 0.1)
    else:
        log_z = log_z_reference(z, negatives, 0.1, N)
        assert obj.nce_log_z.item() == pytest.approx(log_z, rel=1e-5)
        expected = nce_reference(z, positive, negatives, 0.1, log_z, N)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(out.embeddings, z[: len(batch)])

    out.loss.backward()
    torch.optim.SGD(obj.parameters(), lr=0.5).step()
    assert torch.equal(obj.bank.features, bank_before)  # the optimizer step does not touch the bank
    obj.on_step_end(1)
    mean = F.normalize(z, dim=1).view(num_views, len(batch), D).mean(dim=0)
    expected_rows = F.normalize(0.3 * bank_before[batch.index] + 0.7 * mean, dim=1)
    torch.testing.assert_close(obj.bank.features[batch.index], expected_rows, rtol=1e-5, atol=1e-6)
    others = [i for i in range(N) if i not in batch.index.tolist()]
    assert torch.equal(obj.bank.features[others], bank_before[others])
    obj.on_step_end(2)  # nothing pending: a second call changes nothing
    torch.testing.assert_close(obj.bank.features[batch.index], expected_rows, rtol=1e-5, atol=1e-6)


def test_the_positive_similarity_metric_is_the_mean_cosine_to_the_own_row():
    obj = make_npid(num_views=2, loss="softmax")
    batch = random_batch(2)
    out = obj(batch)
    z = F.normalize(embed(obj, batch), dim=1)
    expected = (z * obj.bank.features[batch.index].repeat(2, 1)).sum(dim=1).mean()
    torch.testing.assert_close(out.metrics["positive_similarity"], expected)


def test_training_pulls_the_embeddings_towards_their_rows():
    """A few steps on the same batch raise the similarity of every view to its own row."""
    obj = make_npid(num_views=2, loss="softmax", temperature=0.1)
    batch = random_batch(2)
    first = train_step(obj, batch, 1).metrics["positive_similarity"].item()
    for step in range(2, 8):
        last = train_step(obj, batch, step, lr=0.2).metrics["positive_similarity"].item()
    assert last > first + 0.2


def test_only_the_encoder_and_head_get_gradients():
    obj = make_npid(loss="nce")
    obj(random_batch()).loss.backward()
    for name, p in obj.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert not obj.bank.features.requires_grad and obj.bank.features.grad is None


# -- NCE's Z ---------------------------------------------------------------------


def test_nce_log_z_is_estimated_on_the_first_batch_then_fixed_and_checkpointed():
    obj = make_npid(loss="nce", temperature=0.1)
    assert torch.isnan(obj.nce_log_z) and "nce_log_z" in obj.state_dict()
    train_step(obj, random_batch(seed=1), 1)
    log_z = obj.nce_log_z.clone()
    assert torch.isfinite(log_z)
    for step, seed in [(2, 2), (3, 3)]:
        train_step(obj, random_batch(index=(5, 6, 7, 8), seed=seed), step)
        assert torch.equal(obj.nce_log_z, log_z)
    state = obj.state_dict()
    assert torch.equal(state["nce_log_z"], log_z) and "bank.features" in state

    fresh = make_npid(seed=1, loss="nce", temperature=0.1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.nce_log_z, log_z) and torch.equal(fresh.bank.features, obj.bank.features)
    # the restored objective continues exactly like the original (same negatives under the same seed)
    batch = random_batch(index=(1, 2, 3, 4), seed=9)
    torch.manual_seed(11)
    a = train_step(obj, batch, 4).loss
    torch.manual_seed(11)
    b = train_step(fresh, batch, 4).loss
    assert torch.equal(a, b) and torch.equal(obj.bank.features, fresh.bank.features)


def test_the_softmax_loss_has_no_z():
    """No NaN placeholder in its checkpoints either (a resumed run compares equal)."""
    obj = make_npid(loss="softmax")
    for step in (1, 2):
        out = train_step(obj, random_batch(seed=step), step)
        assert torch.isfinite(out.loss)
    assert not hasattr(obj, "nce_log_z") and list(obj.state_dict()).count("bank.features") == 1
    assert not any("log_z" in key for key in obj.state_dict())


# -- user errors and parameters --------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 9, 1, 3, 3), (4, 64)])
def test_non_image_views_raise_a_user_error(shape):
    obj = make_npid()
    batch = sslx.Batch(views=[torch.randn(*shape)], index=torch.arange(4), label=torch.full((4,), -1))
    with pytest.raises(
        sslx.UserError, match=r"objective 'npid' needs image views \(B, C, H, W\), but view 0 has shape"
    ):
        obj(batch)


@pytest.mark.parametrize(
    "bad",
    [{"loss": "infonce"}, {"temperature": 0.0}, {"num_negatives": 0}, {"bank_momentum": 1.0}, {"embedding_dim": 0}],
)
def test_params_reject_invalid_values(bad):
    with pytest.raises(pydantic.ValidationError):
        NPID.Params(**bad)


def test_every_parameter_has_a_description():
    for name, field in NPID.Params.model_fields.items():
        assert field.description, name
