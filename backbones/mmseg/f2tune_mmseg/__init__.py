"""Florence-2's DaViT encoder as an mmsegmentation backbone.

Importing this package registers `Florence2DaViT` in mmseg's MODELS registry; configs do it with
`custom_imports = dict(imports=["f2tune_mmseg"], allow_failed_imports=False)`.
"""

from f2tune_mmseg.backbone import Florence2DaViT

__all__ = ["Florence2DaViT"]
