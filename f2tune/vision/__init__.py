"""The pretrained DaViT encoder of Florence-2 as a multi-scale backbone for dense tasks."""
