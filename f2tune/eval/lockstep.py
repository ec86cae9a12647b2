"""Generation in step with the other processes, for sharded weights (FSDP).

Under FSDP each process holds a shard of every layer and gathers the rest from the others at each
forward, so every process must run the same forwards in the same order. Evaluation does not on its
own: a process makes one `generate` call per decoding setting among its samples' tasks, its samples
differ from the others' (an `<OD>` row here, captions only there; a task's `max_samples` quota
reached on one process first; no sample at all in the last batch of a shorter share), and a call
that one process makes and another does not leaves both waiting for each other forever. Here the
processes agree on the calls first; a process runs the calls it has no rows for on a stand-in
row and discards the output. (The number of decoding steps inside one call is kept in step by
`generate(synced_gpus=True)`.)
"""

from __future__ import annotations

from typing import Any

import torch

from f2tune.eval.generate import MODEL_INPUTS


def agreed_calls(local: dict[Any, bool]) -> list[tuple[Any, bool]]:
    """Every process's decoding settings (sortable values), each once and in one order, with
    whether any process scores that call's tokens (the scoring pass is a forward of its own).
    `local` maps this process's settings to whether it scores them."""
    gathered: list[dict[Any, bool] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, local)
    agreed: dict[Any, bool] = {}
    for calls in gathered:
        for setting, scored in (calls or {}).items():
            agreed[setting] = agreed.get(setting, False) or scored
    return sorted(agreed.items())


def stand_in_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Model inputs of one row to run a call on that this process has no rows for: the batch's first
    sample, or the collator's blank `stand_in` where the batch has none."""
    if batch.get("ids"):
        return {key: batch[key][:1] for key in MODEL_INPUTS}
    return {key: batch["stand_in"][key] for key in MODEL_INPUTS}
