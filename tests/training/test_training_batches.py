"""DeviceBatches: uint8 data on the device, batched augmentation, triggers mixed in, slices per rank."""

from __future__ import annotations

import torch

from backmark.training import DeviceBatches, Triggers, World
from backmark.training.distributed import shard


def _marked(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i has one bright pixel, of value i + 1, left of centre in row 14; its label is i % 10."""
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    images[torch.arange(n), 0, 14, 4] = torch.arange(1, n + 1, dtype=torch.uint8)
    return images, torch.arange(n) % 10


def test_crop_keeps_shape_and_moves_content() -> None:
    images = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 14, 14] = 255
    batches = DeviceBatches(
        images, torch.zeros(64, dtype=torch.int64), batch_size=64, augment="crop",
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    (x, _, total), *_ = list(batches)
    assert x.shape == (64, 1, 28, 28) and total == 64
    assert torch.all(x.sum(dim=(1, 2, 3)) == 1.0)  # a 2-pixel shift keeps the centre pixel inside
    assert (x[:, 0, 14, 14] == 0).sum() > 40  # 24 of 25 offsets move it


def test_flip_crop_shifts_flips_about_half_and_keeps_labels() -> None:
    images, labels = _marked()
    cols: dict[str, list[int]] = {}
    for augment in ("none", "crop", "flip-crop"):
        batches = DeviceBatches(
            images, labels, batch_size=64, augment=augment, generator=torch.Generator().manual_seed(1)
        )
        cols[augment] = []
        for x, y, _ in batches:
            assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
            flat = x.flatten(1)
            assert torch.all((flat > 0).sum(dim=1) == 1)  # a 2-pixel shift keeps the pixel inside
            which = (flat.max(dim=1).values * 255).round().long() - 1
            assert torch.equal(y, labels[which])  # each image keeps its own label
            cols[augment] += (flat.argmax(dim=1) % 28).tolist()
    assert set(cols["none"]) == {4}
    assert set(cols["crop"]) == {2, 3, 4, 5, 6}  # shifted by up to 2 pixels, never flipped
    flipped = sum(c > 14 for c in cols["flip-crop"])  # 27 - 4 = 23, shifted: 21..25
    assert set(cols["flip-crop"]) <= {2, 3, 4, 5, 6, 21, 22, 23, 24, 25}
    assert 70 < flipped < 130  # about half of 200


def test_colour_crop_pads_four_pixels_with_zeros_like_a_padded_gather() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(1, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=gen)
    batches = DeviceBatches(
        images, torch.zeros(50, dtype=torch.int64), batch_size=50, augment="flip-crop",
        generator=torch.Generator().manual_seed(5), memory_format=torch.channels_last,
    )  # fmt: skip
    (x, _, _), *_ = list(batches)
    assert x.is_contiguous(memory_format=torch.channels_last)
    # the same draws by hand: the order, then the shifts and flips of the batch
    g = torch.Generator().manual_seed(5)
    order = torch.randperm(50, generator=g)
    dy, dx = torch.randint(0, 9, (50, 1), generator=g), torch.randint(0, 9, (50, 1), generator=g)
    flip = torch.rand(50, generator=g) < 0.5
    padded = torch.nn.functional.pad(images[order].float() / 255, (4, 4, 4, 4))
    for i in range(50):
        want = padded[i, :, dy[i, 0] : dy[i, 0] + 32, dx[i, 0] : dx[i, 0] + 32]
        want = want.flip(-1) if flip[i] else want
        assert torch.equal(x[i], want)


def test_triggers_follow_the_batch_in_the_same_tensor_with_their_labels() -> None:
    images, labels = _marked(100)
    trig = torch.full((7, 1, 28, 28), 255, dtype=torch.uint8)
    trig[:, 0, 0, 0] = torch.arange(7, dtype=torch.uint8)
    triggers = Triggers(trig, torch.arange(7) + 100, per_batch=3, seed=0, device=torch.device("cpu"))
    batches = DeviceBatches(
        images, labels, batch_size=30, generator=torch.Generator().manual_seed(0), triggers=triggers
    )
    shown: list[int] = []
    for x, y, total in batches:
        assert total == len(x) == len(y) and len(x) in (33, 13)
        tail = x[-3:]
        assert torch.all(tail[:, 0, 5, 5] == 1.0)
        which = (tail[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(y[-3:], which + 100)  # each trigger with its own label
        shown += which.tolist()
    assert sorted(shown[:7]) == list(range(7))  # every trigger once per pass over the set


def test_ranks_take_disjoint_slices_that_make_up_the_global_batch() -> None:
    images, labels = _marked(100)
    trig = torch.zeros(10, 1, 28, 28, dtype=torch.uint8)

    def run(w: World) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        triggers = Triggers(trig, torch.arange(10), per_batch=3, seed=1, device=torch.device("cpu"))
        batches = DeviceBatches(
            images, labels, batch_size=25, generator=torch.Generator().manual_seed(2), augment="crop",
            triggers=triggers, world=w,
        )  # fmt: skip
        return list(batches)

    whole = run(World())
    parts = [run(World(r, 3)) for r in range(3)]
    for i, (x, y, total) in enumerate(whole):
        assert all(p[i][2] == total for p in parts)  # every rank knows the global size
        # 3 triggers a batch: each of the 3 ranks gets one, after its slice of the 25 images
        assert all(len(p[i][0]) == len(range(25)[shard(25, World(r, 3))]) + 1 for r, p in enumerate(parts))
        clean = torch.cat([p[i][0][:-1] for p in parts])
        assert torch.equal(clean, x[:25])  # the same crops, whatever the number of ranks
        assert torch.equal(torch.cat([p[i][1] for p in parts]).sort().values, y.sort().values)


def test_shard_splits_evenly_and_in_order() -> None:
    assert [shard(102, World(r, 2)) for r in range(2)] == [slice(0, 51), slice(51, 102)]
    assert [shard(10, World(r, 3)) for r in range(3)] == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert shard(2, World(2, 3)) == slice(2, 2)
