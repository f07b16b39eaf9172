"""The paper's published feature-learning numbers, shown beside ours only when asked (``--paper``).

Pathak et al., Context Encoders, CVPR 2016, Table 2 (AlexNet, all layers fine-tuned). These are reference
values from the publication on PASCAL VOC, not results of this package; tables label them as the paper's.
"""

PAPER_TASK_NAMES = {
    "classification": "VOC07 classification mAP",
    "detection": "VOC07 detection mAP (Fast R-CNN)",
    "segmentation": "VOC12 segmentation mIoU (FCN)",
}

PAPER_FEATURE_LEARNING = {
    "supervised": {"classification": 78.2, "detection": 56.8, "segmentation": 48.0},
    "random_init": {"classification": 53.3, "detection": 43.4, "segmentation": 19.8},
    "autoencoder": {"classification": 53.8, "detection": 41.9, "segmentation": 25.2},
    "context_encoder": {"classification": 56.5, "detection": 44.5, "segmentation": 30.0},
}
