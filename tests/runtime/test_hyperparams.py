"""Every optimizer in torch.optim: a hyperparameter set to a boundary value is either refused with
InvalidArgument or the next steps run (no overflow mid-step), and the key keeps its type."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from onthefly.runtime import hyperparams
from onthefly.runtime.errors import InvalidArgument

OPTIMIZERS = sorted((cls for cls in vars(torch.optim).values()
                     if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
                     and cls is not torch.optim.Optimizer), key=lambda c: c.__name__)
VALUES = [0.0, 1.0, 2.0, -1.0, 0.5, 1e-300, 5e-324, 3.0, 99.0, 100.0, 1e4, 1e18, 1.8e19, 1.9e19, -1e19, 1e30,
          3.4e38, 1e39, 1e300, float(2**70), -float(2**70)]


def _model_and_optimizer(cls):
    torch.manual_seed(0)
    if cls is torch.optim.SparseAdam:
        model = torch.nn.Embedding(10, 3, sparse=True)
    else:
        model = torch.nn.Linear(4, 3, bias=cls.__name__ != "Muon")  # Muon takes 2-D parameters only
    kwargs = {"lr": 0.01} if "lr" in inspect.signature(cls).parameters else {}
    return model, cls(model.parameters(), **kwargs)


def _steps(model, optimizer, n=2):
    def closure():
        optimizer.zero_grad()
        if isinstance(model, torch.nn.Embedding):
            loss = model(torch.tensor([1, 2])).sum()
        else:
            loss = model(torch.ones(2, 4)).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(n):
        optimizer.step(closure)


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_boundary_values_are_refused_or_safe(cls):
    _, probe = _model_and_optimizer(cls)
    keys = list(hyperparams.read_groups(probe)[0][1])
    assert keys, f"{cls.__name__} has no numeric hyperparameters"
    tried = applied = 0
    for key in keys:
        for value in VALUES:
            model, optimizer = _model_and_optimizer(cls)
            before = optimizer.param_groups[0][key]
            tried += 1
            try:
                targets = hyperparams.validate(optimizer, {key: value}, [])
            except InvalidArgument:
                assert optimizer.param_groups[0][key] is before
                continue
            hyperparams.apply(optimizer, {key: value}, targets)
            after = optimizer.param_groups[0][key]
            assert isinstance(after, torch.Tensor) == isinstance(before, torch.Tensor), (key, value)
            if isinstance(before, int) and not isinstance(before, bool) and value.is_integer() and abs(value) < 2**53:
                assert isinstance(after, int), (key, value)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _steps(model, optimizer)  # must not raise
            applied += 1
    assert applied and applied < tried  # some values are fine, the absurd ones are refused


def test_the_limit_follows_the_parameters_dtype():
    half = torch.nn.Linear(2, 2).half()
    optimizer = torch.optim.SGD(half.parameters(), lr=0.1)
    with pytest.raises(InvalidArgument, match="too large"):
        hyperparams.validate(optimizer, {"lr": 1000.0}, [])  # fine for float32, not for float16
    assert hyperparams.validate(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), {"lr": 1000.0}, [])


def test_counts_stay_whole_numbers():
    optimizer = torch.optim.LBFGS(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(InvalidArgument, match="whole number"):
        hyperparams.validate(optimizer, {"history_size": 2.5}, [])
    hyperparams.apply(optimizer, {"history_size": 7.0}, hyperparams.validate(optimizer, {"history_size": 7.0}, []))
    assert optimizer.param_groups[0]["history_size"] == 7 and isinstance(optimizer.param_groups[0]["history_size"], int)
