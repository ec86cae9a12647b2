"""The typed recipe schema (`Recipe` and its sections), importable from one place."""

from f2tune.config.augment import AugmentConfig
from f2tune.config.base import TINY_MODEL, Section
from f2tune.config.export import ExportConfig
from f2tune.config.sections import (
    AdaptationConfig,
    DataConfig,
    EvalConfig,
    FreezeConfig,
    LoraSettings,
    ModelConfig,
    OptimConfig,
    Recipe,
)
from f2tune.config.sources import (
    CocoCaptionsSource,
    CocoDetectionSource,
    DataSource,
    Flickr30kEntitiesSource,
    HfDatasetSource,
    JsonlSource,
    KarpathyCaptionsSource,
    OcrSource,
    RefCocoSource,
    ShapesSource,
    StructuredJsonlSource,
    VqaSource,
)
from f2tune.config.trainer import TrainerConfig

__all__ = [
    "TINY_MODEL",
    "AdaptationConfig",
    "AugmentConfig",
    "CocoCaptionsSource",
    "CocoDetectionSource",
    "DataConfig",
    "DataSource",
    "Flickr30kEntitiesSource",
    "EvalConfig",
    "ExportConfig",
    "FreezeConfig",
    "HfDatasetSource",
    "JsonlSource",
    "KarpathyCaptionsSource",
    "LoraSettings",
    "ModelConfig",
    "OcrSource",
    "OptimConfig",
    "Recipe",
    "RefCocoSource",
    "Section",
    "ShapesSource",
    "StructuredJsonlSource",
    "TrainerConfig",
    "VqaSource",
]
