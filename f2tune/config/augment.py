"""Recipe section `data.augment`: the knobs of the training-time image augmentation.

Every geometric knob defaults to "no change" and `enabled` to False, so turning augmentation on is
an explicit choice per recipe: geometric augmentation can make a target wrong (a crop can cut the
object a caption names, a flip swaps "left" and "right"), and only the user knows their data.
`f2tune.data.transforms.build_augmentation` turns this section into an `Augmentation`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from f2tune.config.base import Section


class AugmentConfig(Section):
    """Image augmentation that moves boxes, polygons, quads and the input region with the image.

    Geometry is one affine warp (scale about the centre, translation, rotation) that keeps the
    image size; areas it uncovers are black. Annotations that the warp makes degenerate (mostly
    outside, too small) are dropped and counted; see `f2tune.data.transforms` for the exact rules.
    """

    enabled: bool = Field(False, description="Apply augmentation to training samples (never to validation).")
    hflip: float = Field(0.0, ge=0.0, le=1.0, description="Probability of a horizontal flip.")
    allow_hflip_with_sides: bool = Field(
        False,
        description=(
            "Also flip samples whose text mentions left/right. Words are NOT swapped, so the text may "
            "become wrong; only for data where sides do not matter."
        ),
    )
    scale: tuple[float, float] = Field(
        (1.0, 1.0),
        description=(
            "Range of the zoom about the image centre: > 1 zooms in (a random crop resized back to the "
            "image size, with `translate`), < 1 zooms out (black border)."
        ),
    )
    translate: float = Field(
        0.0, ge=0.0, le=0.5, description="Largest shift, as a fraction of the image width/height, each axis."
    )
    rotate_degrees: float = Field(
        0.0, ge=0.0, le=180.0, description="Rotation drawn from [-rotate_degrees, rotate_degrees]."
    )
    color_jitter: float = Field(
        0.0, ge=0.0, lt=1.0, description="Brightness, contrast and saturation factors drawn from [1-v, 1+v]."
    )
    hue: float = Field(
        0.0, ge=0.0, le=0.5, description="Hue shift range; keep 0 when texts name colours (captions, grounding)."
    )
    min_visibility: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Drop a box or polygon part when less than this fraction of its area stays in the image.",
    )
    min_area: float = Field(
        16.0, ge=0.0, description="Drop a box, polygon part or quad smaller than this many pixels after the warp."
    )
    region_min_visibility: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description=(
            "Fraction of the input `region` that must stay in the image; otherwise the draw is rejected "
            "(the region's text describes what was inside it)."
        ),
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description=(
            "Draws tried per sample before giving up and returning it unaugmented; a draw is rejected "
            "when it loses the region or every box/polygon/quad."
        ),
    )

    @model_validator(mode="after")
    def _scale_range(self) -> AugmentConfig:
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        return self

    @property
    def is_noop(self) -> bool:
        """True when every transform is the identity, so building a pipeline would only cost time."""
        return (
            self.hflip == 0.0
            and self.scale == (1.0, 1.0)
            and self.translate == 0.0
            and self.rotate_degrees == 0.0
            and self.color_jitter == 0.0
            and self.hue == 0.0
        )

    @property
    def active(self) -> bool:
        """True when training images are augmented: enabled, and some transform is not the identity."""
        return self.enabled and not self.is_noop
