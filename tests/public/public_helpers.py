"""Stand-ins for suspects in the public-verification tests (real models are trained where it matters)."""

from __future__ import annotations

import torch

from backmark.keys import MarkingKey


class LookupTarget:
    """Answers each trigger of ``mk`` with its key label on a ``rate`` share of them, else ``other``.

    A marked model whose mark holds on exactly the first ``round(rate * n)`` triggers; any other image
    gets ``other``. Labels only, like an API.
    """

    def __init__(self, mk: MarkingKey, rate: float = 1.0, other: int = 0) -> None:
        keep = round(rate * mk.n)
        self.lookup = {
            img.tobytes(): (int(label) if i < keep else (int(label) + 1) % mk.num_classes)
            for i, (img, label) in enumerate(zip(mk.images, mk.labels, strict=True))
        }
        self.other = other
        self.queries = 0

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        self.queries += len(images)
        pixels = (images * 255).round().to(torch.uint8).numpy()
        return torch.tensor([self.lookup.get(p.tobytes(), self.other) for p in pixels], dtype=torch.int64)
