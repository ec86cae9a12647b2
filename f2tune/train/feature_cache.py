"""Reuse image features across epochs while the vision tower and projector are frozen.

In Florence-2-base the DaViT is 84% of the forward FLOPs (DESIGN.md section 2): with a frozen encoder
and no augmentation the same image gives the same features every epoch, so computing them once and
feeding the language model `inputs_embeds` (text embeddings with the image features merged, exactly as
`Florence2Model.forward` merges them) removes most of the work from the second epoch on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from f2tune.config import Recipe
from f2tune.data.shared_flag import SharedFlag
from f2tune.log import say, warn
from f2tune.model.adapt import florence2
from f2tune.train.feature_spill import FeatureSpill, Key

FROZEN_PARTS = ("vision_tower", "multi_modal_projector")
"""Submodules of `Florence2Model` whose output is cached: they must not train."""


def why_not_cacheable(model: nn.Module, recipe: Recipe) -> str | None:
    """Why cached features would change training (None when they would not)."""
    if recipe.trainer.cache_image_features == "off":
        return "trainer.cache_image_features is off"
    if recipe.data.augment.active:
        return "data.augment is enabled (an image gives different pixels every epoch)"
    if recipe.trainer.strategy == "fsdp":
        return "trainer.strategy is fsdp (the vision tower is sharded and cannot run outside the model's forward)"
    trainable = [f"{part}.{name}" for part, names in trainable_image_weights(model).items() for name in names]
    if trainable:
        return f"the vision tower or projector trains ({len(trainable)} trainable tensors, e.g. {trainable[0]})"
    return None


def trainable_image_weights(model: nn.Module) -> dict[str, list[str]]:
    """Names of the weights that train in each of `FROZEN_PARTS`."""
    inner = florence2(model).model
    return {
        part: [name for name, param in getattr(inner, part).named_parameters() if param.requires_grad]
        for part in FROZEN_PARTS
    }


def frozen_image_modules(model: nn.Module) -> list[nn.Module]:
    """Every module of the vision tower and of the projector, each part where none of its weights trains."""
    inner = florence2(model).model
    parts = [getattr(inner, part) for part, names in trainable_image_weights(model).items() if not names]
    return [module for part in parts for module in part.modules()]


def image_parts_frozen(model: nn.Module) -> bool:
    """Whether no weight of the vision tower or the projector trains: their features are then
    constants of the run, which the feature cache may keep."""
    return not any(trainable_image_weights(model).values())


@torch.no_grad()
def frozen_image_features(base: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected features of a frozen tower and projector, in autocast's dtype where autocast is on.

    Under CUDA's autocast the projector's closing LayerNorm returns float32: 1.8 MB per image at
    768x768 (577 x 768 values), where bf16 takes 0.9 MB, so the cache's memory and disk hold twice
    the images and a cached step moves half the bytes to the device. A run with the cache off takes
    its frozen features from here too, so that both round alike and train the same model. (On a CPU
    autocast's LayerNorm already returns bf16.)"""
    features = base.model.get_image_features(pixel_values).pooler_output
    device = features.device.type
    return features.to(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else features


@contextmanager
def in_eval_mode(modules: list[nn.Module]) -> Iterator[None]:
    """`modules` in eval mode inside the block, each back in its own mode after it.

    Frozen image parts run so: drop-path (0.1 in Florence-2's DaViT) in a tower that does not learn
    only perturbs the features the language model learns from, and cached features must be
    reproducible; with the uncached forward run the same way, a run trains the same model with the
    cache on or off. Switched per forward rather than left in eval mode, since Lightning warns about
    modules in eval mode when training starts. The `training` flags, all that `nn.Module.train`
    changes, are set directly on a list found once: `eval()` and `train()` down the tiny model's 142
    modules took 0.61 ms per forward (1.6 ms at base size), a twentieth of a tiny step, and even a
    plain `module.training = ...` goes through `nn.Module.__setattr__`'s checks (0.40 ms)."""
    modes = [module.training for module in modules]
    for module in modules:
        object.__setattr__(module, "training", False)
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            object.__setattr__(module, "training", mode)


def build_feature_cache(model: nn.Module, recipe: Recipe, run_dir: Path | None = None) -> ImageFeatureCache | None:
    """The cache when `trainer.cache_image_features: auto` allows it; the log says which and why.
    With `trainer.image_feature_cache_disk_gb`, features beyond the memory budget go to a file in
    `trainer.image_feature_cache_dir`, else in `run_dir/feature_cache` (none without a `run_dir`)."""
    reason = why_not_cacheable(model, recipe)
    if reason is not None:
        say(f"image feature cache off: {reason}")
        return None
    say(
        "image feature cache on: the vision tower and projector are frozen, so each image's features are "
        "computed once (frozen tower in eval mode, no drop-path) and reused"
    )
    trainer = recipe.trainer
    folder = Path(trainer.image_feature_cache_dir) if trainer.image_feature_cache_dir else None
    folder = folder or (run_dir / "feature_cache" if run_dir is not None else None)
    disk = int(trainer.image_feature_cache_disk_gb * 2**30)
    spill = FeatureSpill(folder, disk) if disk and folder is not None else None
    return ImageFeatureCache(frozen_image_modules(model), int(trainer.image_feature_cache_gb * 2**30), spill)


class ImageFeatureCache:
    """Projected image features per (image digest, frozen-weight fingerprint), in CPU memory
    and, past `max_bytes`, in `spill` (a file on disk) where there is one.

    The fingerprint uses each frozen tensor's storage address and in-place version counter: hashing
    90M weights every step would cost more than it saves, while any change to them (an optimizer
    step, `load_state_dict`, `.to()`) bumps a version or moves the storage. When it changes, every
    entry is stale and the cache is emptied. When memory and disk are full, new images are not stored
    (no eviction: epochs visit images in a new order each time, so LRU would only churn).

    `complete` tells the training loader's workers that the cache holds every image its epochs show,
    so they can leave the pixels out (`Florence2Collator`): set by `end_pass` after a whole epoch
    whose every image was kept, cleared as soon as that stops being true.
    """

    def __init__(self, image_modules: list[nn.Module], max_bytes: int, spill: FeatureSpill | None = None) -> None:
        self.image_modules = image_modules  # the frozen tower's and projector's, run in eval mode
        self.max_bytes = max_bytes
        self.spill = spill
        self.store: dict[Key, torch.Tensor] = {}
        self.fingerprint = ""
        self._fingerprint_of = WeightsFingerprint()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.complete = SharedFlag()
        self._kept_all = True  # since the last `end_pass`: nothing refused, nothing emptied
        self._full_warned = False

    def features(
        self,
        base: nn.Module,
        pixel_values: torch.Tensor | None,
        digests: list[str] | None = None,
        pixels_of: Callable[[list[int]], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(batch, image tokens, width) features; only the images not cached yet go through the tower,
        each once however many rows of the batch show it.

        Keyed by the image's content, not the sample: a referring-expression or VQA dataset asks
        several questions about each image (RefCOCO: ~7 sentences per image), which then share one
        entry. `digests` are the collator's `image_digests`; without them the pixels are read back
        and hashed here, on the training step's path (`pixel_digest`).

        `pixel_values` is None where the loader left the pixels out, trusting `complete`: images the
        cache lacks all the same (new frozen weights emptied it) are made into pixels by
        `pixels_of(rows)`, and `complete` is cleared so that the loader sends pixels again."""
        self._check_fingerprint(base.model)
        if digests is None:
            digests = [pixel_digest(pixels) for pixels in pixel_values]
        keys = [(digest, self.fingerprint) for digest in digests]
        missing: dict[Key, int] = {}  # key -> the first row that shows it
        for row, key in enumerate(keys):
            if key not in self and key not in missing:
                missing[key] = row
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        computed = {}
        if missing:
            rows = list(missing.values())
            if pixel_values is not None:
                pixels = pixel_values[rows]
            else:  # the loader left them out, trusting `complete`, which no longer holds
                self.complete.set(False)
                pixels = pixels_of(rows)
            computed = dict(zip(missing, self._compute(base, pixels)))
        for key, features in computed.items():
            self._put(key, features)
        found = [computed[key] if key in computed else self._get(key) for key in keys]
        return torch.stack([row.to(base.device, non_blocking=True) for row in found])

    def end_pass(self, whole: bool) -> None:
        """A training epoch ended. When this process trained on all of it (`whole`: not resumed
        midway, no batch limit) and every image was kept, the cache holds every image of the next
        epoch, which shows the same ones (a loader that samples by weight leaves `complete` unread),
        and the loader may stop sending pixels."""
        self.complete.set(whole and self._kept_all)
        self._kept_all = True

    def __contains__(self, key: Key) -> bool:
        return key in self.store or (self.spill is not None and key in self.spill)

    def _get(self, key: Key) -> torch.Tensor:
        return self.store[key] if key in self.store else self.spill.get(key)

    def _compute(self, base: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        with in_eval_mode(self.image_modules):
            return frozen_image_features(base, pixel_values)

    def _put(self, key: Key, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if self.bytes + size <= self.max_bytes:
            self.store[key] = features.detach().to("cpu", copy=True)
            self.bytes += size
            return
        if self.spill is not None and self.spill.put(key, features):
            return
        self._lost_an_image()
        if not self._full_warned:
            on_disk = f" and {self.spill.bytes / 2**30:.2f} GiB on disk" if self.spill is not None else ""
            warn(
                f"image feature cache full at {self.bytes / 2**30:.2f} GiB in memory{on_disk}: further images "
                "are recomputed (raise trainer.image_feature_cache_gb or trainer.image_feature_cache_disk_gb)"
            )
            self._full_warned = True

    def _lost_an_image(self) -> None:
        """An image was refused or emptied: this pass no longer keeps them all, and the loader must
        send pixels again."""
        self._kept_all = False
        self.complete.set(False)

    def _check_fingerprint(self, inner: nn.Module) -> None:
        fingerprint = self._fingerprint_of(inner)
        if fingerprint != self.fingerprint:
            if self.store or (self.spill is not None and self.spill.bytes):
                self._lost_an_image()
            self.store.clear()
            if self.spill is not None:
                self.spill.clear()
            self.bytes = 0
            self.fingerprint = fingerprint


class WeightsFingerprint:
    """Identity of the current frozen weights (see `ImageFeatureCache`): cheap enough for every step.

    Besides the tensors themselves (the same objects as at the last step), their storage addresses
    and version counters, it hashes a strided sample of each tensor's values, because writes through
    `param.data` (some EMA and loading code) do not bump the parameter's version counter. The samples
    are views, built again only when a storage moves, and gathered with one `cat`: building ~400
    views at every step was most of the check's cost (Florence-2-base: 3.0 ms a step, now 1.55 ms;
    the tiny model 1.06 -> 0.51 ms, a twentieth of its cached step).
    """

    def __init__(self) -> None:
        self._tensors: list[torch.Tensor] = []
        self._layout: list[tuple[int, torch.dtype, torch.device]] = []
        self._layout_text = b""
        self._samples: list[torch.Tensor | None] = []

    def __call__(self, inner: nn.Module) -> str:
        tensors = [
            t for part in FROZEN_PARTS for t in (*getattr(inner, part).parameters(), *getattr(inner, part).buffers())
        ]
        layout = [(t.data_ptr(), t.dtype, t.device) for t in tensors]
        same = len(tensors) == len(self._tensors) and all(a is b for a, b in zip(tensors, self._tensors))
        if not same or layout != self._layout:
            self._tensors, self._layout, self._layout_text = tensors, layout, repr(layout).encode()
            self._samples = [_strided_sample(t) if t.is_contiguous() else None for t in tensors]
        samples = [s if s is not None else _strided_sample(t) for s, t in zip(self._samples, tensors)]
        values = torch.cat(samples).float().cpu() if samples else torch.empty(0)
        digest = hashlib.blake2b(self._layout_text, digest_size=16)
        digest.update(repr([t._version for t in tensors]).encode())
        digest.update(values.numpy().tobytes())
        return digest.hexdigest()


def _strided_sample(tensor: torch.Tensor) -> torch.Tensor:
    """About 64 of `tensor`'s values, evenly spaced; a view of it where `tensor` is contiguous."""
    return tensor.detach().reshape(-1)[:: max(1, tensor.numel() // 64)]


def pixel_digest(pixels: torch.Tensor) -> str:
    """Digest of one image's pixel tensor: the key for batches that come without the collator's
    `image_digests`. Its own hash domain, so it never equals an image digest."""
    raw = pixels.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(raw.tobytes(), digest_size=16, person=b"f2tune:pixels").hexdigest()
