"""The recipe schema: every key a recipe may hold, its type, default and meaning.

A recipe is validated against these classes before any model or data is loaded, so a typo costs
seconds, not a GPU allocation. Unknown keys are refused (`extra="forbid"`); `f2tune.recipe` turns
pydantic's errors into messages that name the key and suggest close ones.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from f2tune.config.augment import AugmentConfig
from f2tune.config.base import TINY_MODEL, Section
from f2tune.config.export import ExportConfig
from f2tune.config.sources import DataSource
from f2tune.config.trainer import TrainerConfig


class ModelConfig(Section):
    """Which Florence-2 to start from and how to load it."""

    name_or_path: str | None = Field(
        None,
        description=f"Hub id, local folder (model + processor), or {TINY_MODEL}; defaults to the adapter's base.",
    )
    adapter: str | None = Field(
        None, description="Hub id or folder of a peft adapter to start from (train on, validate, test, predict)."
    )
    revision: str | None = Field(
        None,
        description="Hub revision (branch, tag or commit) of the base model; with adapter alone, default: "
        "the revision its adapter_config.json records.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype at load; keep float32 with *-mixed precision."
    )
    attn_implementation: Literal["auto", "sdpa", "eager"] = Field(
        "auto",
        description="Attention kernels; auto: sdpa, except eager when training on a CPU in bf16 (faster there).",
    )
    trust_remote_code: bool = Field(
        False, description="Run model code from the Hub repo; only for old remote-code checkpoints."
    )
    allow_pickle: bool = Field(
        False, description="Also load .bin (pickle) weights; pickles can run code, so only from sources you trust."
    )

    @model_validator(mode="after")
    def _has_a_model(self) -> ModelConfig:
        # Sharing an adapter is sharing a pointer to its base: either names the model to load.
        if self.name_or_path is None and self.adapter is None:
            raise ValueError("set model.name_or_path (a base model) or model.adapter (a peft adapter), or both")
        return self


class FreezeConfig(Section):
    """Parts of the model whose parameters get `requires_grad=False` (applies to LoRA weights too)."""

    vision_tower: bool = Field(False, description="The whole DaViT image encoder.")
    vision_stages: list[int] = Field(
        default_factory=list, description="DaViT stages 0..3 (patch embedding + blocks of each)."
    )
    projector: bool = Field(False, description="multi_modal_projector (image features -> text width).")
    language_encoder: bool = Field(False, description="The BART encoder (not the decoder).")

    @model_validator(mode="after")
    def _stages_in_range(self) -> FreezeConfig:
        bad = [s for s in self.vision_stages if not 0 <= s <= 3]
        if bad:
            raise ValueError(f"vision_stages must be in 0..3, got {bad}")
        return self


class AdaptationConfig(Section):
    """How the model is adapted: every weight, or LoRA adapters (settings under `lora`)."""

    method: Literal["full", "lora"] = "full"
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)


class LoraSettings(Section):
    """peft LoRA settings, used when `adaptation.method` is `lora`."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    use_dora: bool = False
    use_rslora: bool = Field(
        False, description="Scale updates by alpha/sqrt(r) instead of alpha/r (rank-stabilized LoRA: large r learns)."
    )
    target: str = Field(
        "language",
        description="Preset `language`, `vision`, `all`, or a regex over full module names.",
    )
    merge: bool = Field(False, description="Export a merged model instead of an adapter folder.")

    @field_validator("target")
    @classmethod
    def _compiles(cls, target: str) -> str:
        """Checked when the recipe is read (the preset names compile too), not once the data is."""
        try:
            re.compile(target)
        except re.error as err:
            raise ValueError(
                f"{target!r} is neither a preset (language, vision, all) nor a valid regex: {err}"
            ) from None
        return target


class DataConfig(Section):
    """Training, validation and test data: lists of sources, training sources mixed by weight."""

    train: list[DataSource] = Field(min_length=1)
    val: list[DataSource] = Field(default_factory=list)
    test: list[DataSource] = Field(default_factory=list, description="Used by `f2tune test` only.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training samples only.")
    batch_size: int = Field(8, gt=0, description="Per device.")
    val_batch_size: int | None = Field(None, gt=0, description="Defaults to batch_size.")
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="Loader processes per training process; auto: the CPUs each training process of the machine "
        "can have, less one for itself, at most 8.",
    )
    max_target_tokens: int = Field(256, gt=1, description="Longer targets are truncated (and counted in the log).")
    on_bad_record: Literal["error", "skip"] = Field(
        "error", description="skip: drop bad records, report their count and the first few."
    )
    group_by_length: bool = Field(
        False,
        description="Batch training samples of similar target length (less padding); each sample once per epoch.",
    )

    @field_validator("train")
    @classmethod
    def _every_caption_trained(cls, sources: list[DataSource]) -> list[DataSource]:
        """`one_per_image` makes one sample of an image's captions, all of them references: in
        data.train that trained each image's first caption alone, without a word."""
        for index, source in enumerate(sources):
            if getattr(source, "one_per_image", False):
                raise ValueError(
                    f"source {index} has one_per_image: true, which is for data.val and data.test (every caption "
                    "a reference); in training it would train each image's first caption only: leave it out here "
                    "(a sample per caption)"
                )
        return sources

    @field_validator("val", "test")
    @classmethod
    def _captions_scored_per_image(cls, sources: list[DataSource]) -> list[DataSource]:
        """Caption sources here give one sample per image unless told otherwise: CIDEr-D, BLEU-4
        and ROUGE-L score one prediction per image against all its captions, and a sample per
        caption scored each image about five times against one caption each (CIDEr 2.50 where
        the same predictions score 3.05)."""
        return [
            source.model_copy(update={"one_per_image": True})
            if "one_per_image" in type(source).model_fields and "one_per_image" not in source.model_fields_set
            else source
            for source in sources
        ]


ModelPart = Literal["vision_tower", "projector", "language_model"]
"""The parts `optim.lr_scale` can give their own learning rate (the tied token table and lm_head are
`language_model`)."""


class OptimConfig(Section):
    """AdamW (no weight decay on norms and biases) with warmup and a decay schedule."""

    lr: float = Field(1e-5, gt=0)
    lr_scale: dict[ModelPart, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Multipliers of lr per part, e.g. {vision_tower: 0.1} (1 for parts not named; the schedule "
        "scales every part alike). To stop a part training, use adaptation.freeze.",
    )
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps; overrides warmup_ratio when > 0.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm; null disables.")
    accumulate: int = Field(1, gt=0, description="Batches per optimizer step.")


MetricName = Literal[
    "auto", "none", "coco_map", "grounding_acc", "grounding_acc_merged", "miou", "cider", "bleu4", "rougeL",
    "vqa_accuracy", "exact_match", "anls", "cer", "wer",
]  # fmt: skip
"""`auto`: each task's metric from the task table (`f2tune.tasks.TASKS`)."""


class EvalConfig(Section):
    """Task metrics from generated text on (a capped part of) the validation data.

    Decoding settings left unset come from each task's row of the task table.
    """

    metric: MetricName = "auto"
    max_samples: int = Field(64, gt=0, description="Per task, per process, per validation.")
    every_n_validations: int = Field(1, gt=0, description="Generate on every N-th validation (loss: always).")
    max_new_tokens: int | None = Field(None, gt=0)
    num_beams: int | None = Field(None, gt=0)
    no_repeat_ngram_size: int | None = Field(None, ge=0, description="Keep 0 for outputs with <loc_N> tokens.")
    before_fit: bool = Field(False, description="Also validate once before training (baseline).")
    pictures: int = Field(
        8,
        ge=0,
        description="Samples per task drawn at each validation that generates, reference beside prediction: "
        "predictions/<stage>-step<N>/pictures/ and TensorBoard images; 0: none.",
    )


class Recipe(Section):
    """A whole recipe: one YAML file maps onto this class."""

    model: ModelConfig
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    data: DataConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="after")
    def _best_is_measured(self) -> Recipe:
        """Checks that need two sections: what picks the best checkpoint must be measured at every
        validation (a task metric computed every N-th one would compare stale values)."""
        trainer = self.trainer
        if trainer.monitor != "val/loss" and (self.eval.metric == "none" or self.eval.every_n_validations != 1):
            raise ValueError(
                f"trainer.monitor is {trainer.monitor!r}, a task metric: it needs eval.metric other than none "
                "and eval.every_n_validations: 1 (then every validation computes it)"
            )
        if not self.data.val and (trainer.early_stopping_patience or self.export.weights == "best"):
            raise ValueError("trainer.early_stopping_patience and export.weights: best need data.val")
        if self.export.weights == "best" and trainer.save_top_k == 0:
            raise ValueError("export.weights: best needs trainer.save_top_k >= 1 (a best checkpoint to export)")
        if 0 < trainer.max_steps <= self.optim.warmup_steps:
            raise ValueError(warmup_too_long(self.optim.warmup_steps, f"trainer.max_steps is {trainer.max_steps}"))
        return self


def warmup_too_long(warmup_steps: int, length: str) -> str:
    """Why a warmup as long as the run is refused: the learning rate would still be climbing when
    training ends, never reaching optim.lr nor decaying."""
    return (
        f"optim.warmup_steps is {warmup_steps}, but {length}: the learning rate would never reach optim.lr; "
        "give fewer warmup steps or use optim.warmup_ratio (a share of the run)"
    )
