"""The scoring pass: every sample once, base indices through random_split, the embedding it hooks, the
weights it names, and that training after it is bit-identical to training without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, random_split

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.scoring import embed, score, state_dict_hash
from onthefly.runtime.errors import InvalidArgument, NotFound


def _model(seed: int = 0) -> BoringModel:
    torch.manual_seed(seed)
    return BoringModel()


def test_every_sample_once_keyed_by_base_index_through_random_split():
    base = boring_dataset(100, seed=1)
    part, _ = random_split(base, [0.6, 0.4], generator=torch.Generator().manual_seed(3))
    model = _model()
    table = score(model, part, batch_size=7)  # 60 samples: the last batch is short and kept
    assert len(table) == 60
    assert np.array_equal(table.index, np.asarray(part.indices))
    x = torch.stack([base[i][0] for i in table.index])
    y = torch.stack([base[i][1] for i in table.index])
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert np.array_equal(table.label, y.numpy())
    assert np.allclose(table.loss, nn.functional.cross_entropy(logits, y, reduction="none").numpy(), atol=1e-6)
    assert np.array_equal(table.pred, logits.argmax(1).numpy())
    assert np.array_equal(table.correct, table.pred == table.label)
    assert np.allclose(table.probs.sum(1), 1.0, atol=1e-5)
    assert np.all((table.margin < 0) == ~table.correct)
    assert table.embedding.shape == (60, 32)  # the input of the last Linear (after ReLU and Dropout)
    assert np.all(table.embedding >= 0)
    rows = table.positions([part.indices[5], part.indices[0]])
    assert rows.tolist() == [5, 0]
    with pytest.raises(NotFound, match="base index"):
        table.positions([10_000])


def test_scoring_leaves_training_bit_identical():
    def train(score_every: int | None) -> dict[str, torch.Tensor]:
        model = _model(seed=4)
        model[0].eval()  # a submodule the user keeps in eval must stay so
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch.manual_seed(11)
        data = boring_dataset(64, seed=2)
        for step, (x, y) in enumerate(DataLoader(data, batch_size=8, shuffle=True)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()  # dropout draws from the global RNG
            opt.step()
            if score_every and step % score_every == 0:
                score(model, data, seed=step)
                assert model.training and not model[0].training
        return {k: v.clone() for k, v in model.state_dict().items()}

    plain, scored = train(None), train(2)
    assert all(torch.equal(plain[k], scored[k]) for k in plain)


def test_named_layer_hash_and_embed():
    model = _model()
    data = boring_dataset(20, seed=0)
    table = score(model, data, layer="0")
    assert table.embedding.shape == (20, 32) and table.layer == "0"
    assert np.allclose(embed(model, data.tensors[0], layer="0"), table.embedding, atol=1e-6)
    assert np.allclose(embed(model, data.tensors[0]), score(model, data).embedding, atol=1e-6)
    assert table.state_hash == state_dict_hash(model)
    with torch.no_grad():
        model[0].weight[0, 0] += 1.0
    assert score(model, data).state_hash != table.state_hash


def test_bad_input_names_the_fix():
    model = _model()
    data = boring_dataset(10, seed=0)
    with pytest.raises(InvalidArgument, match="no layer named 'fc9'.*layers are: 0, 1, 2, 3"):
        score(model, data, layer="fc9")
    with pytest.raises(InvalidArgument, match="no nn.Linear"):
        score(nn.Sequential(nn.Flatten()), data)
    with pytest.raises(InvalidArgument, match="batch_size"):
        score(model, data, batch_size=0)


def test_unsupported_models_and_batches_are_refused_clearly():
    data = boring_dataset(10, seed=0)
    with pytest.raises(InvalidArgument, match="at least 2 classes"):
        score(nn.Sequential(nn.Linear(16, 1)), data)
    with pytest.raises(InvalidArgument, match="batches of \\(inputs, targets"):
        score(_model(), data.tensors[0])
