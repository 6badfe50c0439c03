"""Distillation of the routed specialists into one model (onthefly.lab.merges.distill)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.budget import BudgetExceeded, Ledger
from onthefly.lab.merges.distill import distill_merge, distillation_loss
from onthefly.lab.merges.result import state_dict_hash
from onthefly.lab.train_steps import DataSource, clone_model, replay
from onthefly.runtime.errors import InvalidArgument


def test_distillation_loss_is_half_cross_entropy_half_tempered_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    p_t, log_p_s = F.softmax(t / 2, dim=1), F.log_softmax(s / 2, dim=1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * 4
    assert torch.allclose(distillation_loss(s, t, y), 0.5 * F.cross_entropy(s, y) + 0.5 * kl, atol=1e-6)
    assert torch.allclose(distillation_loss(s, s, y, alpha=0.0), torch.zeros(()), atol=1e-6)


def test_distilled_student_moves_toward_the_teacher_and_spends_exactly_its_budget():
    torch.manual_seed(0)
    data = DataSource(boring_dataset(256, seed=1), batch_size=32)
    generalist = BoringModel()
    teacher = clone_model(generalist)
    with torch.no_grad():
        teacher[3].bias.add_(torch.tensor([3.0, 0.0, 0.0]))  # a teacher that strongly prefers class 0
    optimizer = torch.optim.Adam(generalist.parameters(), lr=1e-2)
    before = (state_dict_hash(generalist), state_dict_hash(teacher))
    ledger = Ledger(640, "merge")
    mix = replay(np.arange(64), np.arange(64, 256), 0.5)
    result = distill_merge(generalist, teacher, optimizer=optimizer, data=data, mix=mix, ledger=ledger, seed=0,
                           alpha=0.0)
    assert ledger.spent == 640 and result.sample_gradients == 640
    assert 0 < result.forward_samples <= 256 and ledger.forward_samples == result.forward_samples
    assert (state_dict_hash(generalist), state_dict_hash(teacher)) == before
    assert result.state_hash == state_dict_hash(result.model) and result.kind == "distill"
    x = data.dataset.tensors[0]
    generalist.eval(), teacher.eval(), result.model.eval()
    with torch.no_grad():
        gap_before = F.kl_div(F.log_softmax(generalist(x), 1), F.log_softmax(teacher(x), 1), log_target=True,
                              reduction="batchmean")
        gap_after = F.kl_div(F.log_softmax(result.model(x), 1), F.log_softmax(teacher(x), 1), log_target=True,
                             reduction="batchmean")
    assert gap_after < 0.5 * gap_before
    again = distill_merge(generalist, teacher, optimizer=optimizer, data=data, mix=mix, ledger=Ledger(640), seed=0,
                          alpha=0.0)
    assert again.state_hash == result.state_hash  # seeded

    with pytest.raises(BudgetExceeded):
        distill_merge(generalist, teacher, optimizer=optimizer, data=data, mix=mix, ledger=Ledger(10), seed=0,
                      budget=20)
    with pytest.raises(InvalidArgument, match="temperature"):
        distill_merge(generalist, teacher, optimizer=optimizer, data=data, mix=mix, ledger=Ledger(10), seed=0,
                      temperature=0)


def test_specialists_teach_their_own_region_and_the_generalist_the_rest():
    torch.manual_seed(0)
    data = DataSource(boring_dataset(256, seed=1), batch_size=32)
    generalist = BoringModel()
    a, b = clone_model(generalist), clone_model(generalist)
    with torch.no_grad():
        a[3].bias.add_(torch.tensor([4.0, 0.0, 0.0]))
        b[3].bias.add_(torch.tensor([0.0, 0.0, 4.0]))
    optimizer = torch.optim.Adam(generalist.parameters(), lr=1e-2)
    regions = [np.arange(0, 40), np.arange(40, 80)]
    ledger = Ledger(1280)
    result = distill_merge(generalist, [a, b], region_indices=regions, optimizer=optimizer, data=data,
                           mix=replay(np.arange(80), np.arange(80, 256), 0.5), ledger=ledger, seed=0, alpha=0.0)
    assert ledger.summary().forward_by_label["teacher-logits"] == result.forward_samples <= 256
    x = data.dataset.tensors[0]
    result.model.eval()
    with torch.no_grad():
        p = F.softmax(result.model(x), 1)
    assert p[:40, 0].mean() > p[80:, 0].mean() + 0.1  # learned from a on a's region only
    assert p[40:80, 2].mean() > p[80:, 2].mean() + 0.1
    with pytest.raises(InvalidArgument, match="region_indices"):
        distill_merge(generalist, [a, b], optimizer=optimizer, data=data, mix=replay(np.arange(80), np.arange(80, 256),
                      0.5), ledger=Ledger(64), seed=0)
