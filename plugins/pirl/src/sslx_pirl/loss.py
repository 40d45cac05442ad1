"""PIRL's loss (Misra & van der Maaten, 2020, arXiv:1912.01991, eq. 5): the
image's memory-bank entry is the positive of both the image's embedding and
its jigsaw embedding, against the same sampled negatives."""

from __future__ import annotations

import torch
from sslx_memorybank.loss import bank_softmax, npid_nce


def pirl_loss(
    jigsaw: torch.Tensor,
    image: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    jigsaw_weight: float,
    log_z: tuple[torch.Tensor | float, torch.Tensor | float] | None = None,
    dataset_size: int | None = None,
) -> torch.Tensor:
    """PIRL's convex combination of two memory-bank losses (eq. 5)::

        L = lambda * L(m_I, g(v_It)) + (1 - lambda) * L(m_I, f(v_I))

    where ``m_I`` is the bank row of image ``I`` (the positive), ``g(v_It)``
    the embedding of its shuffled tiles and ``f(v_I)`` the embedding of the
    image; both terms use the same negatives (rows sampled from the bank).

    ``L`` is the sampled softmax of :func:`sslx_memorybank.loss.bank_softmax`
    (cross-entropy of the positive against ``[positive, negatives]`` with
    logits ``q.v / tau``) when ``log_z``
    is ``None``, otherwise NPID's NCE loss :func:`sslx_memorybank.loss.npid_nce`
    with the fixed normalisation constants ``log_z = (log Z_jigsaw, log Z_image)``
    over a bank of ``dataset_size`` rows.

    Args:
        jigsaw: ``(B, D)`` jigsaw embeddings ``g(v_It)`` (normalised inside the losses).
        image: ``(B, D)`` image embeddings ``f(v_I)`` (normalised inside the losses).
        positive: ``(B, D)`` bank rows ``m_I`` of the batch's images (no gradient).
        negatives: ``(K, D)`` sampled bank rows (no gradient).
        temperature: ``tau``, > 0.
        jigsaw_weight: ``lambda`` in ``[0, 1]``.
        log_z: ``None`` for the softmax form, or the two ``log Z`` of the NCE form.
        dataset_size: ``n``, the number of bank rows (NCE form only).

    Example:
        >>> bank = torch.nn.functional.normalize(torch.randn(100, 8), dim=1)
        >>> g, f = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = pirl_loss(g, f, bank[:4], bank[torch.randint(100, (32,))], 0.07, jigsaw_weight=0.5)
    """
    if not 0.0 <= jigsaw_weight <= 1.0:
        raise ValueError(f"jigsaw_weight must be in [0, 1], got {jigsaw_weight}")
    if log_z is None:
        jigsaw_term = bank_softmax(jigsaw, positive, negatives, temperature)
        image_term = bank_softmax(image, positive, negatives, temperature)
    else:
        if dataset_size is None:
            raise ValueError("the NCE form of the PIRL loss needs dataset_size")
        jigsaw_term = npid_nce(jigsaw, positive, negatives, temperature, log_z[0], dataset_size)
        image_term = npid_nce(image, positive, negatives, temperature, log_z[1], dataset_size)
    return jigsaw_weight * jigsaw_term + (1.0 - jigsaw_weight) * image_term
