"""Mask R-CNN + FPN on COCO with Florence-2's DaViT-B encoder (LazyConfig).

Data: COCO 2017 (train2017, val2017, annotations/instances_*.json from https://cocodataset.org),
  laid out as $DETECTRON2_DATASETS/coco/{train2017,val2017,annotations}.
Launch (8 GPUs, one node; --num-machines N --machine-rank R --dist-url tcp://HOST:PORT for more nodes):
  python backbones/detectron2/train_net.py --config-file backbones/detectron2/configs/mask_rcnn_davit_b_fpn_1x_coco.py \
      --num-gpus 8
Overrides use key=value: `train.max_iter=1000 dataloader.train.total_batch_size=8`.
Schedule: 1x = 90k iterations at 16 images (~12 COCO epochs), multi-scale training (shorter side 480..800).
Expected: 53.6 box AP / 46.4 mask AP (Florence-2 paper, DaViT-B with Florence-2 weights, Mask R-CNN 1x);
  not reproduced by this project yet. AdamW 1e-4 / weight decay 0.05 / drop path 0.2 are the usual
  transformer-backbone settings, not values stated by the paper.
"""

from functools import partial

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from f2tune_detectron2 import DaViT, davit_lr_factor

CHECKPOINT = "florence-community/Florence-2-base"
DEPTHS = (1, 1, 9, 1)  # DaViT-B blocks per stage, for the layer-wise learning rates

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
optimizer = model_zoo.get_config("common/optim.py").AdamW
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo.get_config("common/train.py").train

model.backbone.bottom_up = L(DaViT)(
    config=CHECKPOINT,
    weights=CHECKPOINT,
    out_features=["res2", "res3", "res4", "res5"],
    frozen_stages=0,
    drop_path_rate=0.2,
)
model.backbone.in_features = ["res2", "res3", "res4", "res5"]
# Florence-2's processor normalizes RGB with the ImageNet mean / std.
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]

dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=tuple(range(480, 801, 32)), sample_style="choice", max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 16

optimizer.lr = 1e-4
optimizer.weight_decay = 0.05
optimizer.params.lr_factor_func = partial(davit_lr_factor, depths=DEPTHS, backbone_multiplier=1.0, layer_decay=1.0)

train.max_iter = 90000
train.amp.enabled = True
train.init_checkpoint = ""  # a whole detector to start from; the encoder comes from `weights` above
train.eval_period = 10000
train.checkpointer.period = 10000
train.output_dir = "./output/mask_rcnn_davit_b_fpn_1x_coco"
