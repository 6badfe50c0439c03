"""The label-free feature space regions live in: PCA of the inputs beside PCA of the embedding.

Each block (raw inputs, the model's embedding) is centred, projected on its top principal components
(8 by default) and divided by one number so that its total variance is 1; the blocks are then placed
side by side. Equal-variance blocks keep a 64-pixel input from drowning a 32-wide embedding (or the
reverse). No labels and no losses enter it, so any sample, including an unlabelled test sample, can
be placed in it: that is what makes the region assignment a router.

The map is affine (``(a - mean) @ components.T / scale`` per block), so it can be rebuilt from the
arrays below as a torch module (``onthefly/lab/routing.py`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onthefly.runtime.errors import InvalidArgument


@dataclass(frozen=True, eq=False)
class Block:
    """One standardized PCA block: ``transform(a) = (a - mean) @ components.T / scale``."""

    name: str  # "input" or "embedding"
    mean: np.ndarray  # (d,)
    components: np.ndarray  # (p, d), rows are principal axes
    scale: float  # sqrt of the projected total variance on the fitted data (1.0 if it was 0)

    def transform(self, values: np.ndarray) -> np.ndarray:
        values = _matrix(values, self.name)
        if values.shape[1] != self.mean.shape[0]:
            raise InvalidArgument(f"{self.name} has {values.shape[1]} features here but {self.mean.shape[0]} "
                                  "when the regions were fitted")
        return ((values - self.mean) @ self.components.T / self.scale).astype(np.float64)


@dataclass(frozen=True, eq=False)
class FeatureSpace:
    """The fitted blocks, in order (input first when both are used)."""

    blocks: tuple[Block, ...]

    @property
    def uses_input(self) -> bool:
        return any(b.name == "input" for b in self.blocks)

    @property
    def uses_embedding(self) -> bool:
        return any(b.name == "embedding" for b in self.blocks)

    def transform(self, x: np.ndarray | None = None, embedding: np.ndarray | None = None) -> np.ndarray:
        """Place samples in the space; every block it was fitted with needs its array."""
        parts = []
        for block in self.blocks:
            values = x if block.name == "input" else embedding
            if values is None:
                raise InvalidArgument(f"these regions were fitted on the {block.name} too; pass "
                                      f"{'x' if block.name == 'input' else 'embedding'}=")
            parts.append(block.transform(values))
        rows = {len(p) for p in parts}
        if len(rows) > 1:
            raise InvalidArgument(f"x and embedding have different numbers of rows: {sorted(rows)}")
        return np.concatenate(parts, axis=1)


def fit_space(x: np.ndarray | None, embedding: np.ndarray | None, n_components: int = 8) -> FeatureSpace:
    """Fit the blocks on the given samples (either array may be None, not both)."""
    if n_components < 1:
        raise InvalidArgument(f"n_components must be >= 1, got {n_components}")
    blocks = []
    for name, values in (("input", x), ("embedding", embedding)):
        if values is not None:
            blocks.append(_fit_block(name, _matrix(values, name), n_components))
    if not blocks:
        raise InvalidArgument("regions need a feature space: pass the inputs, an embedding, or both")
    return FeatureSpace(tuple(blocks))


def _fit_block(name: str, values: np.ndarray, n_components: int) -> Block:
    mean = values.mean(axis=0)
    centred = values - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    p = min(n_components, vt.shape[0])
    components = vt[:p]
    # Fix each axis's sign (largest |loading| positive) so the space does not depend on the LAPACK build.
    signs = np.sign(components[np.arange(p), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    variance = float((singular[:p] ** 2).sum() / max(len(values) - 1, 1))
    scale = float(np.sqrt(variance)) if variance > 0 else 1.0
    return Block(name=name, mean=mean, components=components, scale=scale)


def _matrix(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)
    if array.ndim == 0 or len(array) == 0:
        raise InvalidArgument(f"{name} is empty")
    array = array.reshape(len(array), -1)
    if not np.all(np.isfinite(array)):
        raise InvalidArgument(f"{name} holds NaN or infinite values; regions need finite features")
    return array
