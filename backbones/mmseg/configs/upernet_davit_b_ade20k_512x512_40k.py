# UperNet on ADE20K (512x512 crops) with Florence-2's DaViT-B encoder (mmsegmentation 1.x config).
#
# Data: ADEChallengeData2016 (images/{training,validation}/*.jpg, annotations/{training,validation}/*.png)
#   from http://sceneparsing.csail.mit.edu, at data/ade/ADEChallengeData2016 (or set train_dataloader.dataset.
#   data_root / val_dataloader.dataset.data_root with --cfg-options).
# Launch with mmseg's own tools (8 GPUs x 8 images = batch 64; NNODES/NODE_RANK/MASTER_ADDR for more nodes):
#   MMSEG=$(python -c "import mmseg, os; print(os.path.dirname(mmseg.__file__))")
#   bash $MMSEG/.mim/tools/dist_train.sh backbones/mmseg/configs/upernet_davit_b_ade20k_512x512_40k.py 8
# Schedule: 40k iterations at batch 64, AdamW, AMP (AmpOptimWrapper), single-scale mIoU on validation.
# Expected: 54.9 mIoU (Florence-2 paper, DaViT-B with Florence-2 weights, UperNet); not reproduced by this
#   project yet. Learning rate, warm-up, weight decay and drop path below are the usual transformer-backbone
#   UperNet settings, not values stated by the paper.
_base_ = [
    "mmseg::_base_/models/upernet_swin.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_40k.py",
]
custom_imports = dict(imports=["f2tune_mmseg"], allow_failed_imports=False)

checkpoint = "florence-community/Florence-2-base"  # Hub id, folder, f2tune full or LoRA export
crop_size = (512, 512)
num_classes = 150
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type="Florence2DaViT",
        config=checkpoint,
        weights=checkpoint,
        out_indices=(0, 1, 2, 3),
        frozen_stages=0,
        drop_path_rate=0.3,
    ),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=num_classes),
    auxiliary_head=dict(in_channels=512, num_classes=num_classes),
)

train_dataloader = dict(batch_size=8)  # per GPU: 8 GPUs give the batch of 64
optim_wrapper = dict(
    _delete_=True,
    type="AmpOptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=40000, by_epoch=False),
]
