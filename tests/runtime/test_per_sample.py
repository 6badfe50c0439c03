"""Per-sample loss equals the reduction='none' value, for every supported kind of loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from onthefly.runtime.per_sample import PerSampleLoss

torch.manual_seed(0)
B = 12
LOGITS = torch.randn(B, 5)
CLASSES = torch.randint(0, 5, (B,))
REG_PRED = torch.randn(B, 3)
REG_TARGET = torch.randn(B, 3)
BIN_TARGET = torch.randint(0, 2, (B, 3)).float()


def _mean_rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).mean(dim=1) if t.dim() > 1 else t


CASES = [
    ("cross_entropy", nn.CrossEntropyLoss(), LOGITS, CLASSES, nn.CrossEntropyLoss(reduction="none")),
    ("mse", nn.MSELoss(), REG_PRED, REG_TARGET, nn.MSELoss(reduction="none")),
    ("l1", nn.L1Loss(), REG_PRED, REG_TARGET, nn.L1Loss(reduction="none")),
    ("huber", nn.HuberLoss(delta=0.5), REG_PRED, REG_TARGET, nn.HuberLoss(delta=0.5, reduction="none")),
    ("bce_logits", nn.BCEWithLogitsLoss(), REG_PRED, BIN_TARGET, nn.BCEWithLogitsLoss(reduction="none")),
    ("functional_ce", F.cross_entropy, LOGITS, CLASSES, lambda p, t: F.cross_entropy(p, t, reduction="none")),
    ("label_smoothing", nn.CrossEntropyLoss(label_smoothing=0.1), LOGITS, CLASSES,
     nn.CrossEntropyLoss(label_smoothing=0.1, reduction="none")),
]


@pytest.mark.parametrize("name,loss_fn,pred,target,reference", CASES, ids=[c[0] for c in CASES])
def test_matches_reduction_none(name, loss_fn, pred, target, reference):
    values = PerSampleLoss(loss_fn)(pred, target)
    assert values.shape == (B,)
    torch.testing.assert_close(values, _mean_rows(reference(pred, target)), rtol=0, atol=1e-6)


def test_plain_function_of_pred_and_target_is_vectorised():
    def my_loss(pred, target):
        return ((pred - target) ** 2).sum(dim=-1).mean() + pred.abs().mean()

    per_sample = PerSampleLoss(my_loss)
    values = per_sample(REG_PRED, REG_TARGET)
    expected = torch.stack([my_loss(REG_PRED[i : i + 1], REG_TARGET[i : i + 1]) for i in range(B)])
    assert per_sample.strategy == "vmap"
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=1e-6)


def test_dict_predictions_fall_back_to_a_per_sample_loop():
    def dict_loss(pred, target):
        if pred["logits"].shape[0] > 1 and bool(pred["logits"].sum() > 1e9):  # data-dependent branch
            return pred["logits"].sum()
        return F.cross_entropy(pred["logits"], target["y"])

    pred = {"logits": LOGITS}
    target = {"y": CLASSES}
    values = PerSampleLoss(dict_loss)(pred, target)
    torch.testing.assert_close(values, F.cross_entropy(LOGITS, CLASSES, reduction="none"), rtol=0, atol=1e-6)


def test_user_loss_module_is_not_modified():
    loss = nn.CrossEntropyLoss()
    PerSampleLoss(loss)(LOGITS, CLASSES)
    assert loss.reduction == "mean"


GRAPH_CASES = [
    ("plain", nn.CrossEntropyLoss(), LOGITS, CLASSES),
    ("sum_weighted_ignore", nn.CrossEntropyLoss(weight=torch.rand(5), ignore_index=2, reduction="sum"),
     LOGITS, CLASSES),
    ("images", nn.CrossEntropyLoss(), torch.randn(B, 5, 4, 4), torch.randint(0, 5, (B, 4, 4))),
    ("sequences", nn.CrossEntropyLoss(), torch.randn(B, 5, 7), torch.randint(0, 5, (B, 7))),
    ("soft_targets", nn.CrossEntropyLoss(), LOGITS, torch.softmax(torch.randn(B, 5), 1)),
    ("label_smoothing", nn.CrossEntropyLoss(label_smoothing=0.1), LOGITS, CLASSES),
    ("mse", nn.MSELoss(), REG_PRED, REG_TARGET),
    ("functional_ce", F.cross_entropy, LOGITS, CLASSES),
    # The general path (vmap, mean per sample) would give NaN for an ignored sample; the graph gives 0, as
    # reduction='none' does: the reference here is that.
    ("nll_of_log_softmax", lambda p, t: F.nll_loss(F.log_softmax(p, 1), t, ignore_index=0), LOGITS, CLASSES,
     lambda p, t: F.nll_loss(F.log_softmax(p, 1), t, ignore_index=0, reduction="none")),
]


@pytest.mark.parametrize("name,loss_fn,pred,target,reference", [(*c, None)[:5] for c in GRAPH_CASES],
                         ids=[c[0] for c in GRAPH_CASES])
def test_of_loss_in_a_training_step_equals_reduction_none_bit_for_bit(name, loss_fn, pred, target, reference,
                                                                      monkeypatch):
    """In a step whose loss ends in nll_loss, per-sample values come off the loss's own graph; every case
    (including the losses that must take the general path) equals the general path's values exactly."""
    import onthefly.runtime.per_sample as module

    # The general path (a reduction='none' copy for a module loss), unless the case names its reference.
    reference = PerSampleLoss(loss_fn)(pred, target) if reference is None else reference(pred, target)
    from_graph = []
    nll_loss = F.nll_loss

    def counted(*args, **kwargs):
        values = nll_loss(*args, **kwargs)
        from_graph.append(1)
        return values

    monkeypatch.setattr(module, "F", type("F", (), {"nll_loss": staticmethod(counted)}))
    per_sample = PerSampleLoss(loss_fn)
    for _ in range(2):  # a fallback, once chosen, stays correct
        pred_ = pred.clone().requires_grad_(True)
        loss = loss_fn(pred_, target)
        values = per_sample.of_loss(loss, pred_, target)
        loss.backward()
        assert not values.requires_grad and values.shape == (B,)
        assert torch.equal(values, reference)
    assert bool(from_graph) == (name in ("plain", "sum_weighted_ignore", "images", "sequences", "functional_ce",
                                         "nll_of_log_softmax"))
