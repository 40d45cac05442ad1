"""From a dataset split to batches of views, reproducibly.

Every random choice of the data pipeline is a function of the run seed and
the position in training: the order of items in epoch ``e`` comes from
``(seed, e)``, and the sampler's and augmentation's choices for the item at
position ``j`` of global batch ``b`` from ``(seed, e, b)`` and ``j``. So a
seeded run gives the same global batches whatever the number of loader
workers and of training processes (under DDP, rank ``r`` of ``W`` makes
positions ``r*n/W`` to ``(r+1)*n/W`` of each), and a resumed run continues
with the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from sslx.components import Augmentation, Batch, ImageSplit, PairSampler
from sslx.errors import UserError


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class ViewDataset(torch.utils.data.Dataset):
    """Samples of a split as the pair sampler shapes them; fetched a batch at a
    time. Its length is the number of items: each gives the sampler's
    ``group_size`` samples."""

    def __init__(self, split: ImageSplit, sampler: PairSampler, augmentation: Augmentation):
        self.split = split
        self.sampler = sampler
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, keys: list[tuple[int, int]]) -> Batch:
        labels = self.split.labels
        samples, items, label = [], [], []
        for i, item_seed in keys:
            self.augmentation.seed(item_seed)
            self.sampler.seed(derive_seed(item_seed, 2))
            group = self.sampler.sample_group(self.split, i, self.augmentation)
            if len(group) != self.sampler.group_size:
                raise RuntimeError(
                    f"sampler {self.sampler.name!r} returned {len(group)} samples for item {i}, "
                    f"but its group_size is {self.sampler.group_size}"
                )
            samples += group
            items += [i] * len(group)
            item_label = int(labels[i]) if labels is not None else -1
            label += [item_label if s.label is None else s.label for s in group]
        views = [torch.stack([s.views[v] for s in samples]) for v in range(len(samples[0].views))]
        meta = {k: torch.as_tensor(np.asarray([s.meta[k] for s in samples])) for k in samples[0].meta}
        return Batch(
            views=views,
            index=torch.as_tensor(items, dtype=torch.long),
            label=torch.as_tensor(label, dtype=torch.long),
            meta=meta,
        )

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        return self.__getitems__([key])


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches of ``(index, item_seed)`` from ``start_step`` on, epoch
    after epoch, forever; each epoch is a seeded permutation (last partial
    batch dropped). ``batch_size`` counts the items of a global batch; with
    ``world_size`` processes, rank ``rank`` gets its contiguous share of each
    (the same items and seeds as those positions in one process)."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"a global batch of {batch_size} items does not split evenly over {world_size} processes")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.steps_per_epoch = size // batch_size
        per_rank = batch_size // world_size
        self.positions = slice(rank * per_rank, (rank + 1) * per_rank)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, first = divmod(self.start_step, self.steps_per_epoch)
        while True:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order = torch.randperm(self.size, generator=gen).tolist()
            for b in range(first, self.steps_per_epoch):
                chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
                seeds = np.random.SeedSequence([self.seed, epoch, b, 1]).generate_state(
                    len(chunk), np.uint64
                ) >> np.uint64(1)
                yield [(i, int(s)) for i, s in zip(chunk, seeds, strict=True)][self.positions]
            epoch, first = epoch + 1, 0


def worker_user_error(exc: UserError) -> UserError:
    """A ``UserError`` raised in a loader worker reaches the main process with
    the worker's traceback in its message (torch re-raises it that way); keep
    only the paragraph meant for the user."""
    text, marker = str(exc), f"{UserError.__module__}.{UserError.__name__}: "
    if "Original Traceback" in text and marker in text:
        return UserError(text.rsplit(marker, 1)[1].strip())
    return exc


def _identity(batch: Any) -> Any:
    return batch


def _ignore_sigint(worker_id: int) -> None:
    """Workers leave Ctrl-C to the main process, which stops at a step boundary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_loader(
    dataset: ViewDataset,
    batch_size: int,
    seed: int,
    start_step: int,
    num_workers: int,
    pin_memory: bool,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """This process's share (``rank`` of ``world_size``) of global batches of
    ``batch_size`` samples (``batch_size / group_size`` items each)."""
    sampler = SeededBatchSampler(
        len(dataset), batch_size // dataset.sampler.group_size, seed, start_step, rank, world_size
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=_identity,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
        worker_init_fn=_ignore_sigint,
        # its own generator: creating an iterator must not draw from the global RNG, which objectives
        # use (e.g. sampling negatives) and checkpoints restore
        generator=torch.Generator().manual_seed(seed),
    )


class DeviceBatches:
    """Batches whose views are made on the training device
    (``trainer.augment_on_device``): the split's images are kept there as
    one uint8 tensor, and each view of a batch is made for all its samples at
    once by the augmentation's batched path. The items and their order are
    :class:`SeededBatchSampler`'s; the random parameters of view ``v`` of a
    global batch come from a generator seeded by that batch's first item
    seed and ``v``, drawn for the whole global batch, so that each process
    of a distributed run applies its rows of the same draws."""

    def __init__(
        self,
        split: ImageSplit,
        sampler: PairSampler,
        augmentation: Augmentation,
        batch_size: int,
        seed: int,
        start_step: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ):
        batched = augmentation.batched()
        if batched is None or not sampler.views_of_one_image or sampler.group_size != 1:
            missing = (
                f"augmentation {augmentation.name!r} has no batched path"
                if batched is None
                else f"sampler {sampler.name!r} does not make plain views of one image"
            )
            raise UserError(
                f"trainer.augment_on_device needs an augmentation with a batched path and a sampler whose "
                f"samples are views of one image (`sslx describe augmentation NAME` and `sslx describe "
                f"sampler NAME` say whether one has), but {missing}: change it, or set "
                f"trainer.augment_on_device to false."
            )
        if split.info.image_size is None:
            raise UserError(
                "trainer.augment_on_device keeps the images in one tensor, so they must all have one size; "
                "this dataset's vary: set trainer.augment_on_device to false."
            )
        images = np.stack([split.image(i) for i in range(len(split))])  # (N, H, W, C) uint8
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.as_tensor(split.labels if split.labels is not None else np.full(len(split), -1))
        self.batched, self.num_views, self.device = batched, sampler.num_views, device
        self.whole = SeededBatchSampler(len(split), batch_size, seed, start_step)
        per = batch_size // world_size
        self.mine = slice(rank * per, (rank + 1) * per)

    def __iter__(self) -> Iterator[Batch]:
        generator = torch.Generator(self.device)
        c, h, w = self.images.shape[1:]
        for keys in self.whole:
            index = torch.tensor([i for i, _ in keys[self.mine]])
            images = self.images[index.to(self.device)]
            views = []
            for v in range(self.num_views):
                generator.manual_seed(derive_seed(keys[0][1], v))
                params = self.batched.draw(v, len(keys), (c, h, w), generator)
                views.append(self.batched.apply(v, images, {k: p[self.mine] for k, p in params.items()}))
            yield Batch(views=views, index=index, label=self.labels[index])
