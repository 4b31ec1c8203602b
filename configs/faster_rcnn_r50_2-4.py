# Faster R-CNN R50-FPN trained 2:4 sparse from scratch with SR-STE on COCO:
# the entry point users type (python tools/train.py
# configs/faster_rcnn_r50_2-4.py).
# The family (dense, 2:4, 4:8, 1:4, 2:8) lives in configs/faster_rcnn/.
_base_ = './faster_rcnn/faster-rcnn_r50-scratch_fpn_gn-all_2-4_6x_coco.py'
