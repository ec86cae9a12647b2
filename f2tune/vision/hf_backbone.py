"""The DaViT extractor registered as a transformers backbone (`AutoConfig` / `AutoBackbone`).

transformers does not know Florence-2's DaViT as a backbone, so heads that build theirs through
`load_backbone` (UperNet, Mask2Former, DPT...) cannot use it. Registering a config and model type here
makes `UperNetForSemanticSegmentation(UperNetConfig(backbone_config=Florence2DaViTBackboneConfig()))`
work. Importing this module registers them; registration is idempotent.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from transformers import AutoBackbone, AutoConfig, Florence2VisionConfig, PreTrainedModel
from transformers.backbone_utils import BackboneConfigMixin, BackboneMixin
from transformers.modeling_outputs import BackboneOutput

from f2tune.vision.extractor import DaViTFeatureExtractor

MODEL_TYPE = "florence2_davit"


@strict
class Florence2DaViTBackboneConfig(BackboneConfigMixin, Florence2VisionConfig):
    """The Florence-2 vision config plus backbone choices; all four stages are output by default,
    as feature-pyramid heads expect (transformers' own default is the last stage only)."""

    model_type = MODEL_TYPE
    frozen_stages: int = 0
    gradient_checkpointing: bool = False
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs) -> None:
        self.stage_names = [f"stage{i}" for i in range(1, len(self.depths) + 1)]
        out_indices, out_features = kwargs.pop("out_indices", None), kwargs.pop("out_features", None)
        if out_indices is None and out_features is None:
            out_indices = list(range(len(self.depths)))
        self.set_output_features_output_indices(out_indices=out_indices, out_features=out_features)
        super().__post_init__(**kwargs)


class Florence2DaViTBackbone(BackboneMixin, PreTrainedModel):
    """`DaViTFeatureExtractor` behind the `BackboneMixin` interface (`channels`, `out_features`)."""

    config_class = Florence2DaViTBackboneConfig
    config: Florence2DaViTBackboneConfig
    main_input_name = "pixel_values"
    has_attentions = False

    def __init__(self, config: Florence2DaViTBackboneConfig) -> None:
        super().__init__(config)
        self.extractor = DaViTFeatureExtractor(
            config,
            out_indices=config.out_indices,
            frozen_stages=config.frozen_stages,
            gradient_checkpointing=config.gradient_checkpointing,
        )
        self.num_features = list(config.embed_dim)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> BackboneOutput:
        """Extra keyword arguments (`output_hidden_states`, `return_dict`) are accepted and ignored:
        the heads pass them, and the stage maps are all this backbone has to give."""
        return BackboneOutput(feature_maps=tuple(self.extractor(pixel_values)))


AutoConfig.register(MODEL_TYPE, Florence2DaViTBackboneConfig, exist_ok=True)
AutoBackbone.register(Florence2DaViTBackboneConfig, Florence2DaViTBackbone, exist_ok=True)
