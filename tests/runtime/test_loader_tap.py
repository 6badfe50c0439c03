from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset, random_split

from onthefly.runtime.loader_tap import TappedLoader, base_index_map


def _dataset(n=200):
    return TensorDataset(torch.arange(n).float().unsqueeze(1), torch.arange(n))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_indices_follow_the_sampler_through_random_split(num_workers):
    torch.manual_seed(1)
    train, _ = random_split(_dataset(), [150, 50])
    loader = DataLoader(Subset(train, list(range(0, 150, 2))), batch_size=8, shuffle=True, num_workers=num_workers)
    seen = []
    for (x, y), indices in TappedLoader(loader):
        assert np.array_equal(y.numpy(), indices)  # y is the base index by construction
        seen.extend(indices.tolist())
    assert sorted(seen) == sorted(base_index_map(loader.dataset).tolist())


def test_rng_use_and_batches_match_plain_iteration():
    loader = DataLoader(_dataset(), batch_size=16, shuffle=True)
    torch.manual_seed(3)
    plain = [y.tolist() for _, y in loader]
    after_plain = torch.rand(1)
    torch.manual_seed(3)
    tapped = [y.tolist() for (_, y), _ in TappedLoader(loader)]
    after_tapped = torch.rand(1)
    assert plain == tapped
    assert torch.equal(after_plain, after_tapped)


def test_skip_batches_resumes_mid_epoch_without_loading_skipped_batches():
    loads = []

    class Counting(TensorDataset):
        def __getitem__(self, i):
            loads.append(i)
            return super().__getitem__(i)

    ds = Counting(torch.arange(64).float(), torch.arange(64))
    loader = DataLoader(ds, batch_size=8, shuffle=True)
    torch.manual_seed(5)
    full = [y.tolist() for (_, y), _ in TappedLoader(loader)]
    loads.clear()
    torch.manual_seed(5)
    tapped = TappedLoader(loader)
    tapped.skip_batches(3)
    resumed = [y.tolist() for (_, y), _ in tapped]
    assert resumed == full[3:]
    assert len(loads) == 64 - 24


def test_custom_loader_subclass_is_iterated_as_is_with_unknown_indices():
    class MyLoader(DataLoader):
        def __iter__(self):
            yield from super().__iter__()

    out = list(TappedLoader(MyLoader(_dataset(32), batch_size=8)))
    assert len(out) == 4 and all(indices is None for _, indices in out)
