"""The recipe's `trainer` section: where and how Lightning runs, and for how long.

A section of its own beside the others of `f2tune.config.sections`: it holds the most keys and
most checks (run folder name, run length, validation interval, compile with the strategy), each
refused here, before any model or data is loaded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from f2tune.config.base import Section

LoggerName = Literal["tensorboard", "csv", "wandb"]
Precision = Literal["bf16-mixed", "16-mixed", "32-true", "bf16-true", "16-true"]


class TrainerConfig(Section):
    """Where and how Lightning runs: devices, precision, length, validation, logging, checkpoints."""

    output_dir: str = "runs"
    run_name: str | None = Field(
        None, description="The run's folder in output_dir (one name, no path); defaults to the recipe file name."
    )
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: (
        Annotated[int, Field(ge=-1)]
        | Literal["auto"]
        | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    ) = Field("auto", description="A count (-1: every one), auto, or a list of device indices.")
    num_nodes: int = Field(1, gt=0)
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="Used when more than one process trains; fsdp shards weights and state."
    )
    precision: Precision = "bf16-mixed"
    max_steps: int = Field(-1, ge=-1, description="-1: run max_epochs.")
    max_epochs: int | None = Field(None, gt=0)
    val_check_interval: Annotated[int, Field(gt=0)] | Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="Validate every N training batches (int) or fraction of an epoch (float, up to 1.0)."
    )
    check_val_every_n_epoch: int | None = Field(1, gt=0)
    log_every_n_steps: int = Field(10, gt=0)
    loggers: list[LoggerName] = Field(default_factory=lambda: ["tensorboard", "csv"])
    save_top_k: int = Field(1, ge=0, description="Best checkpoints kept by trainer.monitor (last is always kept).")
    monitor: str = Field(
        "val/loss",
        pattern=r"^val/(loss|[A-Za-z_]+/\w+)$",
        description="The validation value that picks the best checkpoint: val/loss, or a task metric the run "
        "logs (val/OD/map, val/CAPTION/cider, val/OPEN_VOCABULARY_DETECTION/grounding_acc...).",
    )
    monitor_mode: Literal["auto", "min", "max"] = Field(
        "auto", description="auto: min for val/loss and error rates (CER, WER), max for scores."
    )
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop after this many validations in a row without a better trainer.monitor."
    )
    gradient_checkpointing: bool = False
    checkpoint_every_n_steps: int | None = Field(
        None, gt=0, description="Also write checkpoints/last.ckpt every N optimizer steps (what --resume reads)."
    )
    max_nonfinite_steps: int = Field(
        10, gt=0, description="Stop after this many steps in a row with NaN/inf loss or gradients (each is skipped)."
    )
    cache_image_features: Literal["auto", "off"] = Field(
        "auto",
        description="auto: compute each image's features once and reuse them while the vision tower and "
        "projector are frozen and augmentation is off (the log says whether it is on and why).",
    )
    image_feature_cache_gb: float = Field(
        8.0, gt=0, description="Memory (CPU RAM, per process) the image feature cache may fill; later images miss."
    )
    image_feature_cache_disk_gb: float = Field(
        0.0,
        ge=0,
        description="Disk (per process, a file in image_feature_cache_dir, deleted when the process ends) "
        "for the image features beyond image_feature_cache_gb; 0: none.",
    )
    image_feature_cache_dir: str | None = Field(
        None,
        description="Folder of that file; a local disk (node-local scratch where the run folder is on a network "
        "file system). Default: the run folder's feature_cache/.",
    )
    compile: bool = Field(
        False,
        description="torch.compile each BART layer and DaViT block in place for training (the DaViT's not where "
        "the feature cache serves it; compiles once per shape on the first steps; validation and generation run "
        "eager; not with fsdp). On a CPU it measured no faster at Florence-2-base size (benchmarks/README.md).",
    )
    seed: int = 42

    @field_validator("run_name")
    @classmethod
    def _one_folder_name(cls, name: str | None) -> str | None:
        """`..`, `../x` or `` would put the run's checkpoints, logs and export outside output_dir, or
        straight into it beside other runs."""
        if name is not None and (name in ("", ".", "..") or "/" in name or "\\" in name):
            raise ValueError(f"{name!r} is not a folder name: give one name, without / (the run goes in output_dir)")
        return name

    @field_validator("cache_image_features", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value: object) -> object:
        """YAML reads a bare `off` as false: `cache_image_features: off` means the setting's `off`."""
        return "off" if value is False else value

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, devices: int | str | list[int]) -> int | str | list[int]:
        """Lightning refuses 0 only once the data is read."""
        if devices == 0:
            raise ValueError("0 devices train nothing: a count (1, 2, ...), -1 for every device, auto, or indices")
        return devices

    @field_validator("max_steps")
    @classmethod
    def _trains_something(cls, steps: int) -> int:
        if steps == 0:
            raise ValueError("0 trains nothing: give the optimizer steps to train, or -1 to run trainer.max_epochs")
        return steps

    @model_validator(mode="after")
    def _has_length(self) -> TrainerConfig:
        if self.max_steps == -1 and self.max_epochs is None:
            raise ValueError("set trainer.max_steps or trainer.max_epochs")
        return self

    @model_validator(mode="after")
    def _interval_fits_its_count(self) -> TrainerConfig:
        if isinstance(self.val_check_interval, float) and self.check_val_every_n_epoch is None:
            raise ValueError(
                "trainer.val_check_interval is a fraction of an epoch, but trainer.check_val_every_n_epoch is "
                "null (batches counted across epochs): give the interval in batches, or an epoch count"
            )
        return self

    @model_validator(mode="after")
    def _compile_fits_strategy(self) -> TrainerConfig:
        if self.compile and self.strategy == "fsdp":
            raise ValueError("trainer.compile does not work with trainer.strategy: fsdp (FSDP wraps the same blocks)")
        return self
