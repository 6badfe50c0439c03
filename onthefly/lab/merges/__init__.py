"""Merging specialists back into one model, at matched compute. Each merge returns a ``MergeResult``.

Entry points for ``onthefly/lab/resolutions.py`` (each spends exactly the sample-gradients it is given,
charged to the ledger it is given, and never modifies the generalist or the specialists):

- ``average.uniform_merge``   uniform (or weighted) average, BatchNorm recalibration, fine-tune (``swa=True``)
- ``fisher.fisher_merge``     normalised diagonal-Fisher-weighted average, then fine-tune
- ``distill.distill_merge``   the routed specialists distilled into a copy of the generalist (T=2, 0.5 CE + 0.5 KL)
- ``adapters.adapter_merge``  rank-4 LoRA adapters per region, fused into one model or gated by the router

Every merge copies what it is given (``train_steps.clone_model``: a deep copy, or the user's factory +
``load_state_dict``) and reads the generalist's weights while doing so: when the live run keeps training,
pass a snapshot of the generalist taken at the fork (as the specialists were), not the live module.

The routed model (experts + label-free router as one ``nn.Module``) is ``onthefly.lab.routing``.
"""

from onthefly.lab.merges.result import MergeResult, state_dict_hash

__all__ = ["MergeResult", "state_dict_hash"]
