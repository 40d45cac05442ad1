"""SwAV: online clustering of the views into learned prototypes, with codes
from Sinkhorn-Knopp and a swapped-prediction loss; works with multi-crop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import sslx
from sslx.distributed import rank, world_size
from sslx.modules import FeatureQueue, projection_mlp
from sslx_swav.loss import sinkhorn, swapped_prediction


class SwAVParams(sslx.Params):
    temperature: float = Field(
        0.1, gt=0, le=10, description="Softmax temperature of the swapped prediction (0.1 in the paper)."
    )
    epsilon: float = Field(
        0.05,
        ge=0.01,
        le=1,
        description="Entropy regularisation of Sinkhorn-Knopp: smaller gives sharper "
        "codes (0.05 in the paper; 0.03 in some of its runs). At "
        "least 0.01: below, exp(scores/epsilon) spans more than "
        "float32 holds.",
    )
    sinkhorn_iterations: int = Field(
        3, ge=1, le=100, description="Sinkhorn-Knopp iterations per batch (3 in the paper)."
    )
    num_prototypes: int = Field(
        3000,
        ge=2,
        description="Number of prototypes K (3000 on ImageNet; a few times the number "
        "of classes suits small datasets, e.g. 30 to 100 for 10 classes).",
    )
    proj_hidden_dim: int | None = Field(
        None,
        ge=1,
        description="Hidden width of the projection MLP (null: the encoder's output size; 2048 in the paper).",
    )
    proj_dim: int = Field(
        128, ge=1, description="Output size of the projection MLP, i.e. of the prototypes (128 in the paper)."
    )
    freeze_prototypes_steps: int = Field(
        313,
        ge=0,
        description="The prototypes get no gradient during the first this many "
        "optimizer steps (313, one ImageNet epoch at batch 4096, in "
        "the paper's code; about one epoch is a good choice).",
    )
    queue_length: int = Field(
        0,
        ge=0,
        description="Past projections kept per code view and added to the Sinkhorn batch, so "
        "small batches still spread over all prototypes (0: no queue; the "
        "paper uses 3840 with batches of 256). Useful when the batch is "
        "small next to num_prototypes.",
    )
    queue_start_step: int = Field(
        0,
        ge=0,
        description="Optimizer step from which the queue is used (the paper starts it "
        "at epoch 15 of 200, once the network has moved away from its "
        "random start); it is filled from the start.",
    )


class SwAV(sslx.Objective):
    """SwAV (Caron et al., 2020, arXiv:2006.09882): each view is projected
    (MLP, L2-normalised) and scored against K learned unit prototypes; codes
    of the large views come from Sinkhorn-Knopp over the batch (equal use of
    the prototypes), and every view predicts the codes of the other large
    views (swapped prediction). Code views are those with the size of view 0,
    so use multicrop (large views first) or a same-size pipeline with at
    least 2 views. Optional queue of past projections for small batches.

    Following the paper's code, the prototypes are renormalised to unit rows
    at the start of every forward and get no gradient during the first
    ``freeze_prototypes_steps`` optimizer steps (the scores then use
    ``prototypes.weight.detach()``). The prototypes, the queues and the
    count of optimizer steps done are part of the checkpoint, so a resumed
    run freezes and queues exactly as an uninterrupted one. Under DDP the
    Sinkhorn marginals are over the global batch (see ``sinkhorn``).
    """

    name = "swav"
    ddp_find_unused_parameters = True  # the frozen prototypes get no gradient in the first steps
    Params = SwAVParams

    def __init__(self, params: SwAVParams, encoder: sslx.Encoder, info: sslx.TrainInfo):
        super().__init__(params, encoder, info)
        if info.num_views < 2:
            raise sslx.UserError(self._too_few_views_message(f"the sampler gives {info.num_views} view per sample"))
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = projection_mlp(encoder.out_dim, hidden, params.proj_dim)
        self.prototypes = nn.Linear(params.proj_dim, params.num_prototypes, bias=False)
        self._normalize_prototypes()
        # Which views are code views is known only from a batch (their sizes),
        # so there is a queue for every view; only the code views' are filled
        # and read. All are filled together: rows [0, queue_filled) of each hold
        # real projections (the ring starts at row 0), the rest their random start.
        self.queues = nn.ModuleList(
            [FeatureQueue(params.queue_length, params.proj_dim) for _ in range(info.num_views)]
            if params.queue_length
            else []
        )
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        # optimizer steps done, for the prototype freeze and the queue start (in the checkpoint, so a resumed run knows)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._to_enqueue: list[tuple[int, torch.Tensor]] = []  # (code view, its projections) of the last forward

    @staticmethod
    def _too_few_views_message(what: str) -> str:
        return (
            f"objective 'swav' computes codes on the views that have the size of view 0 (the large views) and needs "
            f"at least 2 of them, but {what}: set sampler.views to 2 or more with a pipeline whose views all have "
            f"one size, or use augmentation 'multicrop' with n_large >= 2 and sampler.views = n_large + n_small."
        )

    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        """Unit rows, as the paper's code does before every step."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    @property
    def prototypes_frozen(self) -> bool:
        return int(self.steps_done) < self.params.freeze_prototypes_steps

    @property
    def queue_active(self) -> bool:
        return bool(self.queues) and int(self.steps_done) >= self.params.queue_start_step and int(self.queue_filled) > 0

    def _encode(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Encoder features of all views, in view order (``(V * B, D)``): one
        encoder pass per view size (BatchNorm statistics per size, as in the paper)."""
        by_size: dict[tuple[int, ...], list[int]] = {}
        for v, x in enumerate(views):
            by_size.setdefault(tuple(x.shape[-2:]), []).append(v)
        features: list[torch.Tensor | None] = [None] * len(views)
        for indices in by_size.values():
            out = self.encoder(torch.cat([views[v] for v in indices]))
            for v, f in zip(indices, out.chunk(len(indices)), strict=True):
                features[v] = f
        return torch.cat(features)  # type: ignore[arg-type]

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor, queue: FeatureQueue | None, weight: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes of one code view's ``(B, K)`` scores. With the queue
        active, the Sinkhorn runs over [queue scores; batch scores] and only
        the batch's rows are returned. Under DDP each process adds the queue
        rows ``rank::world_size`` (every process holds the same queue), so
        each queued projection counts once in the global batch."""
        batch_size = scores.shape[0]
        if queue is not None:
            past = queue.features[: int(self.queue_filled)][rank() :: world_size()]
            scores = torch.cat([past.to(weight.dtype) @ weight.T, scores.to(weight.dtype)])
        return sinkhorn(scores, self.params.epsilon, self.params.sinkhorn_iterations)[-batch_size:]

    def forward(self, batch: sslx.Batch) -> sslx.ObjectiveOutput:
        p = self.params
        views = batch.views
        code_views = [v for v, x in enumerate(views) if x.shape[-2:] == views[0].shape[-2:]]
        if len(code_views) < 2:
            sizes = ", ".join("x".join(map(str, x.shape[-2:])) for x in views)
            raise sslx.UserError(
                self._too_few_views_message(f"the batch has {len(code_views)} view of that size (sizes: {sizes})")
            )
        self._normalize_prototypes()

        z = F.normalize(self.projector(self._encode(views)), dim=1)  # (V * B, proj_dim), unit rows
        # frozen prototypes: the scores see the weight as a constant, so no gradient reaches it
        weight = self.prototypes.weight.detach() if self.prototypes_frozen else self.prototypes.weight
        scores = (z @ weight.T).chunk(len(views))  # V x (B, K)
        z_views = z.detach().chunk(len(views))

        use_queue = self.queue_active
        codes = [
            self._codes(
                scores[v].detach(), self.queues[v] if use_queue else None, self.prototypes.weight.detach().float()
            )
            for v in code_views
        ]
        loss = swapped_prediction(scores, codes, code_views, p.temperature)
        if self.queues:  # enqueued after the optimizer step, like MoCo's keys: the loss's graph read the queue
            self._to_enqueue = [(v, z_views[v]) for v in code_views]

        with torch.no_grad():
            entropy = torch.stack([-torch.special.xlogy(q, q).sum(dim=1).mean() for q in codes]).mean()
        return sslx.ObjectiveOutput(loss=loss, embeddings=z_views[0], metrics={"code_entropy": entropy.detach()})

    def on_step_end(self, step: int) -> None:
        if self._to_enqueue:
            for v, z in self._to_enqueue:
                self.queues[v].enqueue(z)
            rows = self._to_enqueue[0][1].shape[0] * world_size()  # enqueue gathers every process's rows
            self.queue_filled.fill_(min(self.params.queue_length, int(self.queue_filled) + rows))
            self._to_enqueue = []
        self.steps_done.fill_(step)
