"""docs/plugin-api.md documents every public helper with its exact
signature, and its contrastive-loss example is right: in two processes it
gives the same loss and gradients as in one, and both equal a float64
reference written from the formula."""

from __future__ import annotations

import importlib
import inspect
import math
import re
import types
from pathlib import Path

import pytest
import torch
from helpers import REPO

from sslx.testing import run_in_processes

DOC = REPO / "docs" / "plugin-api.md"
MODULES = ("sslx.distributed", "sslx.modules", "sslx.features", "sslx.testing")


def rendered(obj: object) -> str:
    """``name(params) -> return`` as the page writes it: annotations as in
    the source, defaults as ``repr``."""
    sig = inspect.signature(obj)
    parts: list[str] = []
    star_written = False
    for p in sig.parameters.values():
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text, star_written = f"*{p.name}", True
        elif p.kind is p.VAR_KEYWORD:
            text = f"**{p.name}"
        elif p.kind is p.KEYWORD_ONLY and not star_written:
            parts.append("*")
            star_written = True
        if p.annotation is not p.empty:
            text += f": {p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)}"
            if p.default is not p.empty:
                text += f" = {p.default!r}"
        elif p.default is not p.empty:
            text += f"={p.default!r}"
        parts.append(text)
    ret = sig.return_annotation
    arrow = "" if ret is sig.empty else f" -> {ret if isinstance(ret, str) else inspect.formatannotation(ret)}"
    return f"{obj.__name__}({', '.join(parts)}){arrow}"


@pytest.mark.parametrize("module", MODULES)
def test_every_public_helper_is_documented_with_its_signature(module):
    text = DOC.read_text()
    mod = importlib.import_module(module)
    missing = [rendered(getattr(mod, name)) for name in mod.__all__ if rendered(getattr(mod, name)) not in text]
    assert not missing, f"{DOC.name} lacks these signatures of {module} (or shows them differently): {missing}"


def dcl_from_the_doc() -> types.FunctionType:
    source = re.search(r"### A contrastive loss that masks its own rows.*?```python\n(.*?)```", DOC.read_text(), re.S)
    assert source, "the example is missing from docs/plugin-api.md"
    namespace: dict = {}
    exec(compile(source.group(1), str(DOC), "exec"), namespace)
    return namespace["dcl_loss"]


def views(n: int = 8, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, d, generator=gen, dtype=torch.float64)


def reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """DCL from its formula, one term at a time: for each view a of sample i,
    -q.p/t + log sum over every other view of every other sample of exp(q.k/t)."""
    z = [z1 / z1.norm(dim=1, keepdim=True), z2 / z2.norm(dim=1, keepdim=True)]
    n, total = len(z1), 0.0
    for a in range(2):
        for i in range(n):
            q = z[a][i]
            negatives = [math.exp(float(q @ z[b][j]) / t) for b in range(2) for j in range(n) if j != i]
            total += -float(q @ z[1 - a][i]) / t + math.log(sum(negatives))
    return total / (2 * n)


def dcl_worker(rank: int, out_dir: str) -> None:
    """One of two processes: its half of the samples, the loss and the gradients."""
    z1, z2 = views()
    rows = slice(rank * 4, (rank + 1) * 4)
    a, b = z1[rows].clone().requires_grad_(), z2[rows].clone().requires_grad_()
    loss = dcl_from_the_doc()(a, b, temperature=0.5)
    loss.backward()
    torch.save({"loss": loss.detach(), "g1": a.grad, "g2": b.grad}, Path(out_dir) / f"rank{rank}.pt")


def test_the_contrastive_example_masks_its_own_rows_in_one_process_and_in_two(tmp_path):
    z1, z2 = views()
    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    loss = dcl_from_the_doc()(a, b, temperature=0.5)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(reference(z1, z2, 0.5), abs=1e-12)

    run_in_processes(dcl_worker, 2, str(tmp_path))
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # each process's loss is the mean over its samples: their mean is the global batch's loss
    assert float(sum(p["loss"] for p in parts)) / 2 == pytest.approx(float(loss.detach()), abs=1e-12)
    # a process's inputs get the gradient of every process's loss (DDP then averages parameter gradients)
    for r, p in enumerate(parts):
        rows = slice(r * 4, (r + 1) * 4)
        torch.testing.assert_close(p["g1"] / 2, a.grad[rows], rtol=0, atol=1e-12)
        torch.testing.assert_close(p["g2"] / 2, b.grad[rows], rtol=0, atol=1e-12)
