"""SwAV's two computations (Caron et al., 2020, "Unsupervised Learning of
Visual Features by Contrasting Cluster Assignments", arXiv:2006.09882):
the Sinkhorn-Knopp codes of a batch (section 3.1, appendix A.1) and the
swapped-prediction loss (eq. 1-2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sslx.distributed import all_reduce_sum, gather_no_grad


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Soft codes of a batch with equal use of the prototypes: SwAV's
    Sinkhorn-Knopp (Caron et al., 2020, arXiv:2006.09882, eq. 3-4 and
    appendix A.1, as in the paper's ``distributed_sinkhorn``).

    With ``S = scores`` (``(B, K)``: sample ``b``'s similarity to prototype
    ``k``), it starts from ``Q = exp(S / epsilon).T`` (``(K, B)``), divides
    ``Q`` by its total sum, then ``iterations`` times

    * divides each row ``k`` (prototype) by its sum and by ``K``: every
      prototype then holds mass ``1/K``;
    * divides each column ``b`` (sample) by its sum and by ``B``: every
      sample then holds mass ``1/B``;

    and returns ``(B * Q).T``: row ``b`` is sample ``b``'s code, which sums to
    1; each prototype's column sums to ``B/K`` once the iterations have
    converged (3 iterations get close; the columns are exact after every
    iteration, the rows only at convergence).

    Numerics: computed in float32 (float64 when ``scores`` is float64), with
    autocast off and without gradient (codes are targets). The global
    maximum ``m`` of ``S`` is subtracted before the exponential so that it
    cannot overflow: that multiplies every entry of ``Q`` by the same
    constant ``exp(-m / epsilon)``, which the first division by the total
    sum cancels exactly, so the codes are unchanged.

    Distributed: the batch is the global batch. Each process passes its own
    ``scores`` (its columns); the row sums, the total sum and ``B`` are
    summed over processes (``sslx.distributed.all_reduce_sum``), and ``m``
    is the maximum over all processes (a per-process constant would scale
    that process's columns and change the row sums). Columns are
    per-sample, so they need no communication. Every process must call this
    together; in one process it is the plain algorithm.

    Args:
        scores: ``(B, K)`` similarities of ``B`` samples (this process's) to ``K`` prototypes.
        epsilon: entropy regularisation, > 0 (0.05 in the paper); smaller
            values give sharper codes.
        iterations: number of row-then-column normalisations, >= 1 (3 in the paper).

    Returns:
        ``(B, K)`` codes of this process's samples, each row summing to 1.

    Example:
        >>> codes = sinkhorn(torch.randn(32, 10), epsilon=0.05, iterations=3)
        >>> codes.sum(dim=1)  # all ones
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"scores must be a non-empty (B, K) matrix, got shape {tuple(scores.shape)}")
    with torch.autocast(scores.device.type, enabled=False):
        dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
        s = scores.detach().to(dtype)
        num_prototypes = s.shape[1]
        global_max = gather_no_grad(s.max().reshape(1)).max()
        q = torch.exp((s - global_max) / epsilon).T  # (K, B)
        batch = all_reduce_sum(torch.tensor(float(s.shape[0]), dtype=dtype, device=s.device))  # global B
        q = q / all_reduce_sum(q.sum())
        for _ in range(iterations):
            q = q / all_reduce_sum(q.sum(dim=1, keepdim=True)) / num_prototypes  # each prototype: 1/K
            q = q / q.sum(dim=0, keepdim=True) / batch  # each sample: 1/B
        return (q * batch).T


def swapped_prediction(
    scores: Sequence[torch.Tensor],
    codes: Sequence[torch.Tensor],
    code_views: Sequence[int],
    temperature: float,
) -> torch.Tensor:
    """SwAV's swapped-prediction loss (Caron et al., 2020, arXiv:2006.09882,
    eq. 1-2, averaged as in the paper's ``main_swav.py``).

    With ``V`` views, ``p_j = softmax(scores[j] / temperature)`` (row-wise)
    and ``q_i`` the codes of code view ``i``:

        loss = 1/|C| * sum_{i in C} 1/(V-1) * sum_{j != i}
               mean_b ( -sum_k q_i[b, k] * log p_j[b, k] )

    where ``C`` is ``code_views``: every view predicts the codes of every code
    view other than itself. Codes are targets (no gradient flows into them).
    Computed in float32 (float64 for float64 scores) with autocast off.

    Args:
        scores: ``V`` tensors ``(B, K)``: each view's similarities to the prototypes.
        codes: ``(B, K)`` codes (rows summing to 1), one per entry of ``code_views``.
        code_views: the view index each code belongs to (distinct, in ``range(V)``).
        temperature: softmax temperature, > 0 (0.1 in the paper).

    Returns:
        The scalar loss.

    Example:
        >>> scores = [torch.randn(8, 5) for _ in range(4)]
        >>> codes = [sinkhorn(scores[v], 0.05, 3) for v in (0, 1)]
        >>> loss = swapped_prediction(scores, codes, code_views=[0, 1], temperature=0.1)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    num_views = len(scores)
    if num_views < 2:
        raise ValueError(f"swapped prediction needs at least 2 views, got {num_views}")
    if len(codes) != len(code_views) or not codes:
        raise ValueError(f"need one code per code view, got {len(codes)} codes for code views {list(code_views)}")
    if len(set(code_views)) != len(code_views) or not all(0 <= i < num_views for i in code_views):
        raise ValueError(f"code_views must be distinct view indices in [0, {num_views}), got {list(code_views)}")
    with torch.autocast(scores[0].device.type, enabled=False):
        dtype = torch.promote_types(scores[0].dtype, torch.float32)
        log_p = [F.log_softmax(s.to(dtype) / temperature, dim=1) for s in scores]
        total = torch.zeros((), dtype=dtype, device=scores[0].device)
        for q, i in zip(codes, code_views):
            q = q.detach().to(dtype)
            cross_entropies = [-(q * log_p[j]).sum(dim=1).mean() for j in range(num_views) if j != i]
            total = total + torch.stack(cross_entropies).sum() / (num_views - 1)
        return total / len(code_views)
