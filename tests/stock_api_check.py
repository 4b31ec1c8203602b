"""Run as ``python tests/stock_api_check.py CONFIG CHECKPOINT IMAGE...`` in
a fresh process: load an mmnm training checkpoint with the stock inference
API of mmdet (``init_detector``, ``inference_detector``), mmseg or mmpretrain
(``init_model``, ``inference_model``), as any user script would, and check
that the model it builds is dense, its weights are exactly N:M where the run
trained them N:M, and its predictions equal those of the trained sparse
model (the config's sparse model with the checkpoint's dense SR-STE
weights). Prints one line ending in 'OK' or exits with the mismatch."""
import sys

import torch


def predictions(result) -> list:
    if isinstance(result, dict):  # mmpretrain
        return [torch.as_tensor(result['pred_scores'])]
    if hasattr(result, 'pred_sem_seg'):
        return [result.pred_sem_seg.data, result.seg_logits.data]
    inst = result.pred_instances
    return [inst.bboxes, inst.scores, inst.labels
            ] + ([inst.masks] if 'masks' in inst else [])


def main(config: str, checkpoint: str, images: list) -> None:
    from mmengine.config import Config
    scope = Config.fromfile(config).default_scope
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
    elif scope == 'mmpretrain':  # its inference_model needs a model zoo
        from mmpretrain.apis import ImageClassificationInferencer, init_model

        def inference_model(model, image):
            return ImageClassificationInferencer(model)(image)[0]
    else:
        from mmdet.apis import inference_detector as inference_model
        from mmdet.apis import init_detector as init_model
    stock = init_model(config, checkpoint, device='cpu')

    from mmnm.apis import build_sparse_model
    from mmnm.conversion import (check_nm_state_dict, decode_nm_checkpoint,
                                 sparse_weight_patterns)
    from mmnm.layers import NMSparseMixin
    assert not any(isinstance(m, NMSparseMixin) for m in stock.modules())

    sparse = build_sparse_model(config)
    trained = torch.load(checkpoint, map_location='cpu')
    decode_nm_checkpoint(trained, checkpoint)
    sparse.load_state_dict(trained['state_dict'], strict=True)
    for attr in ('cfg', '_config', 'dataset_meta'):  # what init_* sets
        if hasattr(stock, attr):
            setattr(sparse, attr, getattr(stock, attr))
    sparse.eval()
    patterns = sparse_weight_patterns(sparse)
    check_nm_state_dict(stock.state_dict(), patterns)
    pruned = sum(
        int((trained['state_dict'][key] != 0).sum() -
            (stock.state_dict()[key] != 0).sum()) for key in patterns)
    assert pruned > 0, 'the trained weights should be dense (SR-STE)'

    for image in images:
        ours = predictions(inference_model(sparse, image))
        theirs = predictions(inference_model(stock, image))
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), (image, a, b)
    print(f'{len(patterns)} N:M weights, {pruned} pruned values kept apart; '
          f'stock predictions equal the sparse model on {len(images)} '
          'images: OK')


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
