"""The `export:` section of a recipe: what fit writes at its end, and what its model card states."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from f2tune.config.base import Section


class ExportConfig(Section):
    """What fit writes at the end (rank 0 only): a peft adapter or a full model folder."""

    enabled: bool = True
    dir: str | None = Field(None, description="Defaults to <run dir>/export.")
    weights: Literal["final", "best"] = Field(
        "final",
        description="final: the weights training ended with; best: the best checkpoint by trainer.monitor, "
        "its model card with the metrics measured at its step (the summary's after-training column stays "
        "the final weights').",
    )
    push_to: str | None = Field(
        None, description="Hub repo (user/name) the export is uploaded to at the end of fit (token: HF_TOKEN or login)."
    )
    license: str | None = Field(
        None,
        description="Hub license id the model card states (mit, apache-2.0, cc-by-nc-4.0, other...); default: mit for "
        "Microsoft's Florence-2 weights (microsoft/ and florence-community/ Florence-2-*), else not stated: a "
        "fine-tune carries the terms of its base model and data, which f2tune cannot read.",
    )

    @field_validator("license")
    @classmethod
    def _is_a_hub_license_id(cls, value: str | None) -> str | None:
        """The Hub refuses a card whose license is not one of its ids, and only at the push."""
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", value):
            raise ValueError(
                f"{value!r} is not a Hub license id: write it as the Hub lists them, e.g. mit, apache-2.0, "
                "cc-by-4.0, other (https://huggingface.co/docs/hub/repositories-licenses)"
            )
        return value
