"""The losses of instance discrimination with a memory bank (NPID): the
non-parametric softmax over sampled bank rows, and its NCE approximation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.ndim != 2 or positive.shape != query.shape or negatives.ndim != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(
            f"need query (B, D), positive (B, D) and negatives (K, D), got {tuple(query.shape)}, "
            f"{tuple(positive.shape)} and {tuple(negatives.shape)}"
        )


def bank_softmax(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The non-parametric softmax of instance discrimination (Wu et al., 2018,
    arXiv:1805.01978, eq. 2), with the denominator's sum over all bank rows
    replaced by the positive and ``K`` sampled rows (cross-entropy over
    ``[positive, negatives]``).

    Args:
        query: ``(B, D)`` embeddings ``f`` (normalised here).
        positive: ``(B, D)`` bank rows ``v_i`` of the queries' own images (used
            as given, normally unit rows; no gradient flows into them).
        negatives: ``(K, D)`` bank rows sampled uniformly, shared by all
            queries (used as given).
        temperature: ``tau``, > 0.

    Returns:
        The mean over queries of
        ``-log(exp(f.v_i / tau) / (exp(f.v_i / tau) + sum_k exp(f.v_k / tau)))``.

    Example:
        >>> f = torch.randn(4, 8)
        >>> bank = F.normalize(torch.randn(100, 8), dim=1)
        >>> loss = bank_softmax(f, bank[:4], bank[torch.randint(100, (32,))], temperature=0.07)
    """
    _check(query, positive, negatives, temperature)
    with torch.autocast(query.device.type, enabled=False):
        dtype = torch.promote_types(query.dtype, torch.float32)
        q = F.normalize(query.to(dtype), dim=1)
        pos = (q * positive.to(dtype).detach()).sum(dim=1, keepdim=True)  # (B, 1)
        neg = q @ negatives.to(dtype).detach().T  # (B, K)
        logits = torch.cat([pos, neg], dim=1) / temperature
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target)


def nce_log_z(query: torch.Tensor, negatives: torch.Tensor, temperature: float, dataset_size: int) -> torch.Tensor:
    """The log of NPID's normalisation constant ``Z`` estimated by Monte Carlo
    (Wu et al., 2018, sec. 3.2, eq. 6): ``Z ~= n E_j[exp(v_j.f / tau)]``, the
    expectation taken over the ``B x K`` pairs of queries and uniformly sampled
    bank rows. Computed in log space (``Z`` overflows float32 at small
    temperatures), without gradient.

    Args:
        query: ``(B, D)`` embeddings (normalised here).
        negatives: ``(K, D)`` uniformly sampled bank rows (used as given).
        temperature: ``tau``, > 0.
        dataset_size: ``n``, the number of bank rows.

    Returns:
        ``log Z = log n + logsumexp_{b,k}(f_b.v_k / tau) - log(B K)``, a scalar.

    Example:
        >>> f, bank = torch.randn(4, 8), F.normalize(torch.randn(100, 8), dim=1)
        >>> log_z = nce_log_z(f, bank[torch.randint(100, (32,))], 0.07, dataset_size=100)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.no_grad(), torch.autocast(query.device.type, enabled=False):
        dtype = torch.promote_types(query.dtype, torch.float32)
        s = F.normalize(query.to(dtype), dim=1) @ negatives.to(dtype).T / temperature
        return math.log(dataset_size) + torch.logsumexp(s.flatten(), dim=0) - math.log(s.numel())


def npid_nce(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    log_z: torch.Tensor | float,
    dataset_size: int,
) -> torch.Tensor:
    """NPID's noise-contrastive estimation loss (Wu et al., 2018,
    arXiv:1805.01978, sec. 3.2, eqs. 4-6), with uniform noise ``P_n = 1/n``
    and ``m = K`` noise samples per query.

    ``P(i|f) = exp(v_i.f / tau) / Z`` is the non-parametric softmax with its
    normalisation constant ``Z`` fixed (see :func:`nce_log_z`);
    ``h(i, f) = P(i|f) / (P(i|f) + K/n)`` is the posterior that row ``i`` is
    data rather than noise. The loss of one query is

        ``-log h(i, f) - sum_k log(1 - h(k, f))``

    (its own row ``i`` as data, the ``K`` sampled rows as noise), computed
    stably as ``softplus(c - a_i) + sum_k softplus(a_k - c)`` with
    ``a = v.f / tau - log Z`` and ``c = log(K / n)``.

    Args:
        query: ``(B, D)`` embeddings ``f`` (normalised here).
        positive: ``(B, D)`` bank rows of the queries' own images (as given, no gradient).
        negatives: ``(K, D)`` bank rows sampled uniformly, shared by all queries (as given).
        temperature: ``tau``, > 0.
        log_z: ``log Z`` (scalar tensor or float, no gradient).
        dataset_size: ``n``, the number of bank rows.

    Returns:
        The mean over queries of the per-query loss above.

    Example:
        >>> f, bank = torch.randn(4, 8), F.normalize(torch.randn(100, 8), dim=1)
        >>> negatives = bank[torch.randint(100, (32,))]
        >>> log_z = nce_log_z(f, negatives, 0.07, 100)
        >>> loss = npid_nce(f, bank[:4], negatives, 0.07, log_z, dataset_size=100)
    """
    _check(query, positive, negatives, temperature)
    if dataset_size < 1 or negatives.shape[0] < 1:
        raise ValueError(
            f"NCE needs dataset_size >= 1 and K >= 1 noise rows, got {dataset_size} and {negatives.shape[0]}"
        )
    with torch.autocast(query.device.type, enabled=False):
        dtype = torch.promote_types(query.dtype, torch.float32)
        q = F.normalize(query.to(dtype), dim=1)
        log_z = torch.as_tensor(log_z, dtype=dtype, device=q.device).detach()
        a_pos = (q * positive.to(dtype).detach()).sum(dim=1) / temperature - log_z  # (B,)
        a_neg = q @ negatives.to(dtype).detach().T / temperature - log_z  # (B, K)
        c = math.log(negatives.shape[0] / dataset_size)
        per_query = F.softplus(c - a_pos) + F.softplus(a_neg - c).sum(dim=1)
        return per_query.mean()
