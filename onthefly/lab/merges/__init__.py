"""Merging specialists back into one model, at matched compute. Each merge returns a ``MergeResult``.

Entry points for ``onthefly/lab/resolutions.py`` (each spends exactly the sample-gradients it is given,
charged to the ledger it is given, and never modifies the generalist or the specialists):

- ``average.uniform_merge``   uniform (or weighted) average, BatchNorm recalibration, fine-tune (``swa=True``)
- ``fisher.fisher_merge``     normalised diagonal-Fisher-weighted average, then fine-tune
- ``distill.distill_merge``   the routed specialists distilled into a copy of the generalist (T=2, 0.5 CE + 0.5 KL)
- ``adapters.adapter_merge``  rank-4 LoRA adapters per region, fused into one model or gated by the router

The routed model (experts + label-free router as one ``nn.Module``) is ``onthefly.lab.routing``.
"""

from onthefly.lab.merges.result import MergeResult, state_dict_hash

__all__ = ["MergeResult", "state_dict_hash"]
