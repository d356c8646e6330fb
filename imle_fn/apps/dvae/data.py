"""Binary image data sets for the discrete VAE, behind one small interface.

A data set is a function ``load(*, binarize, seed) -> BinaryImages`` registered under a name in
`DATASETS` (`register_dataset` adds one). Each loader reads real, public data that ships with a
package (no download), binarises it and makes a fixed, seeded train / test split:

* ``digits``: scikit-learn's copy of the UCI handwritten digits (`sklearn.datasets.load_digits`):
  1,797 images of 8 x 8 pixels, intensities 0..16 (each pixel counts the "on" pixels of a 4 x 4 block
  of a 32 x 32 bitmap). Split: 1,500 train / 297 test, stratified by digit class.
* ``sample-patches``: the two photographs that scikit-learn ships (`sklearn.datasets.load_sample_images`:
  ``china.jpg`` and ``flower.jpg``, 427 x 640 RGB), turned grey (mean of the channels, 0..255) and cut
  into non-overlapping 8 x 8 patches: 2 x 53 x 80 = 8,480 patches. Split: 7,480 train / 1,000 test,
  stratified by photograph. Needs Pillow (scikit-learn reads the JPEGs with it).

Binarisation (``binarize``), the same rule for every data set, with ``m`` the intensity maximum (16 or
255):

* ``"threshold"`` (default): a pixel is 1 iff its intensity is ``>= m / 2`` (digits: ``>= 8``, i.e. at
  least half of its 4 x 4 block was on). Deterministic and faithful to the strokes: at 8 x 8 the
  digits have few pixels, and sampling each one would add as much noise as there is shape.
* ``"sample"``: one fixed Bernoulli draw per pixel with probability ``intensity / m`` from
  ``numpy.random.default_rng(seed)`` (the "statically binarised" convention of binarised MNIST).

The split is `sklearn.model_selection.train_test_split` with ``random_state=seed``; the same ``seed``
always gives the same binary images and the same split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from imle_fn.core.checks import check_choice, check_int

__all__ = [
    "BINARIZE",
    "DATASETS",
    "Binarize",
    "BinaryImages",
    "DatasetLoader",
    "binarize_intensities",
    "load_dataset",
    "load_digits",
    "load_sample_patches",
    "register_dataset",
    "split_indices",
]

Binarize = Literal["threshold", "sample"]
BINARIZE: tuple[Binarize, ...] = ("threshold", "sample")


@dataclass(frozen=True)
class BinaryImages:
    """A binarised image data set with its train / test split.

    Attributes:
        name: the registry name.
        train: ``[N_train, H * W]`` float32 tensor of 0/1 pixels.
        test: ``[N_test, H * W]`` float32 tensor of 0/1 pixels.
        image_shape: ``(H, W)``.
        train_index: ``[N_train]`` positions of the training images in the source data.
        test_index: ``[N_test]`` positions of the test images in the source data.
        binarize: the binarisation rule used (see the module docstring).
        source: one line saying where the data come from.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, int]
    train_index: np.ndarray
    test_index: np.ndarray
    binarize: Binarize
    source: str

    @property
    def num_pixels(self) -> int:
        """``H * W``."""
        return self.image_shape[0] * self.image_shape[1]


class DatasetLoader(Protocol):
    """What a registered data set is: ``load(binarize=..., seed=...) -> BinaryImages``."""

    def __call__(self, *, binarize: Binarize, seed: int) -> BinaryImages: ...


def binarize_intensities(
    values: np.ndarray, maximum: float, binarize: Binarize, seed: int
) -> np.ndarray:
    """``[N, D]`` intensities in ``[0, maximum]`` -> ``[N, D]`` float32 0/1 pixels.

    Args:
        values: intensities, any real dtype.
        maximum: the largest possible intensity ``m``.
        binarize: ``"threshold"`` (1 iff ``>= m / 2``) or ``"sample"`` (Bernoulli ``value / m``).
        seed: seed of the Bernoulli draws (``"sample"`` only).

    Raises:
        ValueError: an unknown ``binarize``, or intensities outside ``[0, maximum]``.
    """
    check_choice("binarize", binarize, BINARIZE)
    values = np.asarray(values, dtype=np.float64)
    if values.size and (values.min() < 0 or values.max() > maximum):
        raise ValueError(
            f"values: expected intensities in [0, {maximum}], got [{values.min()}, {values.max()}]"
        )
    if binarize == "threshold":
        return (values >= 0.5 * maximum).astype(np.float32)
    rng = np.random.default_rng(seed)
    return (rng.random(values.shape) < values / maximum).astype(np.float32)


def split_indices(labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train / test split of ``range(len(labels))``, stratified by ``labels``.

    Returns:
        ``(train_index, test_index)``, each sorted, disjoint, together every index once.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_size, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def _make(
    name: str,
    pixels: np.ndarray,
    labels: np.ndarray,
    image_shape: tuple[int, int],
    test_size: int,
    binarize: Binarize,
    seed: int,
    source: str,
) -> BinaryImages:
    train_index, test_index = split_indices(labels, test_size, seed)
    return BinaryImages(
        name=name,
        train=torch.from_numpy(pixels[train_index]),
        test=torch.from_numpy(pixels[test_index]),
        image_shape=image_shape,
        train_index=train_index,
        test_index=test_index,
        binarize=binarize,
        source=source,
    )


def load_digits(*, binarize: Binarize = "threshold", seed: int = 0) -> BinaryImages:
    """scikit-learn's UCI digits: 1,500 train / 297 test binary 8 x 8 images (see the module docstring).

    Raises:
        ValueError: an unknown ``binarize``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    pixels = binarize_intensities(digits.data, 16.0, binarize, seed)  # [1797, 64]
    return _make(
        "digits", pixels, digits.target, (8, 8), 297, binarize, seed,
        "UCI handwritten digits as shipped by scikit-learn (sklearn.datasets.load_digits)",
    )  # fmt: skip


def load_sample_patches(*, binarize: Binarize = "threshold", seed: int = 0) -> BinaryImages:
    """8 x 8 patches of scikit-learn's two sample photographs: 7,480 train / 1,000 test.

    Raises:
        ValueError: an unknown ``binarize``.
    """
    from sklearn.datasets import load_sample_images

    patches, owners = [], []
    for owner, image in enumerate(load_sample_images().images):
        grey = np.asarray(image, dtype=np.float64).mean(axis=-1)  # [427, 640]
        rows, cols = grey.shape[0] // 8, grey.shape[1] // 8
        blocks = grey[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3)
        patches.append(blocks.reshape(rows * cols, 64))  # [rows * cols, 64]
        owners.append(np.full(rows * cols, owner))
    pixels = binarize_intensities(np.concatenate(patches), 255.0, binarize, seed)
    return _make(
        "sample-patches", pixels, np.concatenate(owners), (8, 8), 1000, binarize, seed,
        "8x8 patches of scikit-learn's sample photographs (sklearn.datasets.load_sample_images)",
    )  # fmt: skip


DATASETS: dict[str, DatasetLoader] = {
    "digits": load_digits,
    "sample-patches": load_sample_patches,
}


def register_dataset(name: str, loader: DatasetLoader | Callable[..., BinaryImages]) -> None:
    """Add a data set to `DATASETS` (the command's ``--dataset`` choices are read from it).

    Raises:
        ValueError: ``name`` is already registered.
    """
    if name in DATASETS:
        raise ValueError(f"name: data set {name!r} is already registered")
    DATASETS[name] = loader


def load_dataset(name: str, *, binarize: Binarize = "threshold", seed: int = 0) -> BinaryImages:
    """Load the registered data set ``name``.

    Raises:
        ValueError: an unknown ``name`` or ``binarize``; a negative ``seed``.
        TypeError: ``seed`` is not an int.
    """
    check_choice("dataset", name, tuple(DATASETS))
    check_choice("binarize", binarize, BINARIZE)
    seed = check_int("seed", seed, minimum=0)
    return DATASETS[name](binarize=binarize, seed=seed)
