"""How much of every model family of the mmdet, mmseg and mmpretrain zoos
mmnm makes N:M sparse, and whether the sparse model still trains and
predicts.

For each model family folder of the configs shipped inside the installed
mmdet / mmseg / mmpretrain wheels, one config's model is built and
initialised by its own ``init_weights`` (no pretrained weights, SyncBN
reverted), run dense for one loss step (with
backward) and one predict step on two small generated images (boxes,
masks, label maps or class labels), made 2:4 sparse with
``sparsify_model`` and run again. The table gives the share of the
weighted layers' weights (Conv, Linear, attention, deformable; embeddings
left out) that are N:M, the layers left dense and why, and each step's
outcome; a family whose dense model cannot run on this machine (CUDA-only
ops, missing packages, a download) says so. mmpretrain's self-supervised
and multi-modal models are listed, not run.

    python tools/analysis/zoo_coverage.py                  # every family
    python tools/analysis/zoo_coverage.py --families detr dino segformer
    python tools/analysis/zoo_coverage.py --out docs/zoo_coverage.md

Each config runs in its own process (``--jobs`` families at a time,
``--timeout`` seconds each), so one crash or hang costs one row. A family
tries its configs in ``ranked_configs`` order (ResNet-50 first) until one
runs dense here (``--tries``).
"""
import argparse
import collections
import copy
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

#: The zoos covered and the default scope of their configs.
PACKAGES = ('mmdet', 'mmseg', 'mmpretrain')
#: Error messages that mean the dense model cannot run on this machine.
UNAVAILABLE = ('CUDA', 'cuda', 'No module named', 'not compiled with GPU',
               'not installed', 'pip install', 'mim install',
               'for device cpu not found', 'GPU')
#: ... and those that mean it needs a download (a teacher checkpoint).
DOWNLOAD = ('URLError', 'urlopen', 'Name or service not known')

#: Dense-layer reasons of the shape itself: no N:M layer could hold them.
SHAPE_REASONS = ('reduction size not divisible by M', 'grouped/depthwise conv')


@dataclass
class FamilyResult:
    """One row of the coverage table."""

    package: str
    family: str
    config: str
    size: int = 128
    nm_share: Optional[float] = None
    nm_weights: int = 0
    weights: int = 0
    #: ``{reason: [number of layers, weights]}`` of the layers left dense
    dense: Dict[str, List[int]] = field(default_factory=dict)
    steps: Dict[str, str] = field(default_factory=dict)
    status: str = 'ok'
    error: str = ''
    seconds: float = 0.0

    @property
    def shape_share(self) -> Optional[float]:
        """Share of N:M weights among the layers whose shape can be N:M
        (leaving out those of :data:`SHAPE_REASONS`): the 98% target."""
        if self.nm_share is None:
            return None
        unfit = sum(
            self.dense.get(reason, (0, 0))[1] for reason in SHAPE_REASONS)
        return self.nm_weights / max(self.weights - unfit, 1)


def package_root(package: str) -> str:
    """Where ``package``'s shipped configs live (``<root>/configs``): the
    folder their relative paths (e.g. a distillation teacher's
    ``configs/gfl/...``) start from."""
    module = __import__(package)
    return osp.join(osp.dirname(module.__file__), '.mim')


def family_configs(package: str) -> Dict[str, List[str]]:
    """``{family folder: its config files}`` shipped inside ``package``."""
    root = osp.join(package_root(package), 'configs')
    families = {}
    for folder in sorted(os.listdir(root)):
        files = sorted(glob.glob(osp.join(root, folder, '*.py')))
        if folder.startswith('_') or not files:
            continue
        families[folder] = files
    return families


def ranked_configs(files: Sequence[str]) -> List[str]:
    """The family's configs, its most representative first: ResNet-50
    ones, then the shortest names (the plainest variants)."""
    return sorted(
        files,
        key=lambda path: ('r50' not in osp.basename(path),
                          len(osp.basename(path)), osp.basename(path)))


# --------------------------------------------------------------------------
# one family, in this process
# --------------------------------------------------------------------------
def _small_input_config(cfg, size: int) -> None:
    """Keep the model from padding the small inputs to training sizes."""
    preprocessor = cfg.model.get('data_preprocessor')
    if preprocessor is None:
        return
    if preprocessor.get('size') is not None:
        preprocessor['size'] = (size, size)
    preprocessor.pop('batch_augments', None)


def _is_pretrained(init) -> bool:
    return isinstance(init, dict) and init.get('type') == 'Pretrained'


def _without_pretrained(node) -> None:
    """Drop every ``Pretrained`` ``init_cfg`` (from a list: that entry
    alone, the other initialisers kept) and ``pretrained`` path or flag of
    a model config in place, so that ``init_weights`` downloads nothing."""
    if isinstance(node, dict):
        init_cfg = node.get('init_cfg')
        if _is_pretrained(init_cfg):
            node.pop('init_cfg')
        elif isinstance(init_cfg, list):
            kept = [init for init in init_cfg if not _is_pretrained(init)]
            if len(kept) < len(init_cfg):
                node['init_cfg'] = kept or None
        pretrained = node.get('pretrained')
        if isinstance(pretrained, str):
            node['pretrained'] = None
        elif pretrained is True:  # timm / torchvision style: download
            node['pretrained'] = False
        for value in node.values():
            _without_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _without_pretrained(value)


def _num_classes(cfg) -> int:
    """The smallest ``num_classes`` the model config names (the labels of
    the generated targets must fit every head)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'num_classes' and isinstance(value, int):
                    found.append(value)
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else cfg.model)
    return max(1, min(found)) if found else 10


def detection_batch(num_classes: int, size: int, masks: bool) -> dict:
    """Two images with two boxes each (and, with ``masks``, their masks
    and semantic maps)."""
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=2,
        image_shapes=[(3, size, size)] * 2,
        num_items=[2, 2],
        num_classes=max(num_classes, 2),  # labels are drawn from [1, n)
        with_mask=masks,
        with_semantic=masks)


def segmentation_batch(num_classes: int, size: int) -> dict:
    """Two images with random label maps."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    batch = dict(inputs=[], data_samples=[])
    for _ in range(2):
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size),
                scale_factor=(1.0, 1.0),
                flip=False))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, size, size), generator=gen))
        batch['data_samples'].append(sample)
        batch['inputs'].append(
            torch.randint(0, 256, (3, size, size), generator=gen).float())
    return batch


def classification_batch(num_classes: int, size: int) -> dict:
    """Two images with class labels."""
    import torch
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, num_classes, (2, ), generator=gen)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, size, size), generator=gen).float()
            for _ in labels
        ],
        data_samples=[DataSample().set_gt_label(int(k)) for k in labels])


def _not_checked(package: str, cfg) -> Optional[str]:
    """Why a config is no model this check can run, or ``None``."""
    if 'model' not in cfg:
        return 'no model (data or schedule configs)'
    kind = cfg.model.get('type', '')
    if package == 'mmpretrain' and kind != 'ImageClassifier':
        return (f'not a classifier ({kind}: self-supervised or multi-modal '
                'models need their own inputs)')
    return None


def _steps(model, batch: dict, prefix: str, steps: Dict[str, str]) -> None:
    """One loss step with backward and one predict step; raises the first
    error after recording it."""
    import torch
    model.train()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    if not torch.isfinite(loss):
        raise FloatingPointError(f'loss is {float(loss)}')
    steps[f'{prefix} loss'] = 'ok'
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        model(**data, mode='predict')
    steps[f'{prefix} predict'] = 'ok'


def build_initialised(package: str, cfg):
    """The config's model, seeded, without pretrained weights, initialised
    by its own ``init_weights`` (DINO's and Deformable DETR's level
    embeddings are uninitialised memory until it runs) and SyncBN
    reverted."""
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    model_cfg = copy.deepcopy(cfg.model)
    _without_pretrained(model_cfg)
    if package == 'mmpretrain':  # as the Runner does
        model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    init_default_scope(cfg.get('default_scope', package))
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return revert_sync_batchnorm(model)


def check_config(package: str,
                 family: str,
                 config: str,
                 size: int = 128) -> FamilyResult:
    """Build, run dense, sparsify 2:4 and run sparse one config's model."""
    from mmengine.config import Config

    from mmnm.conversion import sparsify_model

    result = FamilyResult(package, family, osp.basename(config), size)
    start = time.time()
    stage = 'dense'
    try:
        cfg = Config.fromfile(config)
        skip = _not_checked(package, cfg)
        if skip:
            result.status = skip
            return result
        _small_input_config(cfg, size)
        model = build_initialised(package, cfg)
        classes = _num_classes(cfg)
        if package == 'mmdet':  # box-only heads reject mask targets
            batch = detection_batch(classes, size, 'mask' in str(cfg.model))
        elif package == 'mmseg':
            batch = segmentation_batch(classes, size)
        else:
            batch = classification_batch(classes, size)
        _steps(model, batch, 'dense', result.steps)
        stage = 'sparse'
        model.zero_grad(set_to_none=True)
        report = sparsify_model(model, '2:4')
        _summarise(report, result)
        _steps(model, batch, 'sparse', result.steps)
    except Exception as err:  # every failure is a row of the table
        message = f'{type(err).__name__}: {err}'.strip().splitlines()[0]
        result.error = message[:300]
        unavailable = isinstance(err, ImportError) or any(
            key in message for key in UNAVAILABLE)
        if stage == 'dense' and any(key in message for key in DOWNLOAD):
            result.status = 'needs a download'
        elif stage == 'dense' and unavailable:
            result.status = 'needs a GPU op or an extra package'
        else:
            result.status = f'{stage} fails'
    result.seconds = round(time.time() - start, 1)
    return result


def _summarise(report, result: FamilyResult) -> None:
    """Fill the share of N:M weights and the dense reasons from the
    ``SparsityReport``."""
    dense = collections.defaultdict(lambda: [0, 0])
    for row in report.layers:
        if row.type == 'Embedding':
            continue
        result.weights += row.numel
        if row.pattern is not None:
            result.nm_weights += row.numel
            continue
        reason = _reason_kind(row.note)
        dense[reason][0] += 1
        dense[reason][1] += row.numel
    result.nm_share = result.nm_weights / max(result.weights, 1)
    result.dense = dict(sorted(dense.items(), key=lambda kv: -kv[1][1]))


def _reason_kind(note: str) -> str:
    """A dense-layer note without its layer-specific numbers."""
    if note.startswith('reduction size'):
        return 'reduction size not divisible by M'
    if note.startswith('grouped conv'):
        return 'grouped/depthwise conv'
    if note.startswith('the attention'):
        return 'out_proj of a dense attention'
    return note.split(':')[0] if note.startswith('no sparse counterpart') \
        else note


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------
def markdown(results: Sequence[FamilyResult]) -> str:
    """The table as Markdown, one row per family, then a summary."""
    lines = [
        '| package | family | config | input | N:M share | of N:M-able '
        'shapes | left dense (layers, share of weights) | dense steps | '
        'sparse steps | note |', '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for res in results:
        share, shape_share = ('' if value is None else f'{100 * value:.2f}%'
                              for value in (res.nm_share, res.shape_share))
        dense = '; '.join(
            f'{reason} ({count}, {100 * numel / max(res.weights, 1):.1f}%)'
            for reason, (count, numel) in res.dense.items())
        steps = [
            ' '.join('ok' if res.steps.get(f'{prefix} {step}') == 'ok' else '-'
                     for step in ('loss', 'predict'))
            for prefix in ('dense', 'sparse')
        ]
        note = f'{res.status}: {res.error}' if res.error else res.status
        cells = [
            res.package, res.family, res.config, res.size, share, shape_share,
            dense, steps[0], steps[1], note
        ]
        lines.append('| ' +
                     ' | '.join(str(cell).replace('|', '/')
                                for cell in cells) + ' |')
    return '\n'.join(lines + ['', summary(results)])


def summary(results: Sequence[FamilyResult]) -> str:
    """How many families run dense, run sparse, and reach 98%."""
    dense_ok = [r for r in results if r.steps.get('dense predict') == 'ok']
    sparse_ok = [r for r in dense_ok if r.status == 'ok']
    at_98 = [r for r in sparse_ok if r.shape_share >= 0.98]
    below = ', '.join(f'{r.package}/{r.family} {100 * r.shape_share:.1f}%'
                      for r in sparse_ok if r.shape_share < 0.98)
    return (f'{len(results)} families: {len(dense_ok)} run dense on this '
            f'machine, {len(sparse_ok)} of them also sparse, {len(at_98)} '
            'with at least 98% N:M of the weights whose shape can be N:M' +
            (f'; below: {below}.' if below else '.'))


def preamble(argv=None) -> str:
    """What a published table says about how it was made."""
    import mmcv
    import mmdet
    import mmengine
    import mmpretrain
    import mmseg
    import torch
    command = ' '.join(['python tools/analysis/zoo_coverage.py'] +
                       list(sys.argv[1:] if argv is None else argv))
    return (
        '# N:M coverage of the mmdet, mmseg and mmpretrain model zoos\n\n'
        f'Made by `{command}` on {time.strftime("%Y-%m-%d")} with torch '
        f'{torch.__version__}, mmengine {mmengine.__version__}, mmcv '
        f'{mmcv.__version__}, mmdet {mmdet.__version__}, mmseg '
        f'{mmseg.__version__}, mmpretrain {mmpretrain.__version__}, on a '
        'CPU. One config per family folder of the '
        'configs shipped in the wheels, built without pretrained weights, '
        'run one loss step (with backward) and one predict step on two '
        'generated images dense, then made 2:4 with `sparsify_model` and '
        'run again. *N:M share*: of the weights of every weighted layer '
        '(Conv, Linear, attention, deformable, ...; embeddings left out); '
        '*of N:M-able shapes*: leaving out the layers whose shape cannot be '
        'N:M (reduction size not divisible by 4, grouped convs).\n\n')


def check_family(args, package: str, family: str,
                 files: Sequence[str]) -> FamilyResult:
    """The first of the family's ranked configs (up to ``args.tries``)
    whose dense model runs here, else the first one's result. A dense
    failure other than a missing op or package is retried once at twice
    the input size (query selection, large kernels and deep strides need
    more pixels than ``args.size``)."""
    results = []
    for config in ranked_configs(files)[:args.tries]:
        result = _run_one(args, package, family, config, args.size)
        if result.status == 'dense fails':
            result = _run_one(args, package, family, config, 2 * args.size)
        if result.steps.get('dense predict') == 'ok':
            return result
        results.append(result)
    return results[0]


def _run_one(args, package: str, family: str, config: str,
             size: int) -> FamilyResult:
    """``check_config`` in a fresh process, within the time limit."""
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--worker', package, family, config, '--size',
        str(size)
    ]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            cwd=package_root(package))
    except subprocess.TimeoutExpired:
        return FamilyResult(
            package,
            family,
            osp.basename(config),
            size,
            status='timed out',
            error=f'over {args.timeout} s')
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('{'):
            return FamilyResult(**json.loads(line))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['']
    return FamilyResult(
        package,
        family,
        osp.basename(config),
        size,
        status='crashed',
        error=f'exit {proc.returncode}: {tail[0][:300]}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='N:M coverage of the mmdet / mmseg / mmpretrain zoos')
    parser.add_argument(
        '--packages', nargs='+', default=list(PACKAGES), choices=PACKAGES)
    parser.add_argument(
        '--families', nargs='+', help='only these family folders')
    parser.add_argument('--size', type=int, default=128, help='input size')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument(
        '--tries',
        type=int,
        default=3,
        help='configs tried per family until one runs dense')
    parser.add_argument(
        '--timeout', type=int, default=600, help='seconds per family')
    parser.add_argument('--out', help='write the Markdown table here')
    parser.add_argument('--json', help='write the rows as JSON here')
    parser.add_argument('--worker', nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        import torch
        torch.set_num_threads(1)
        result = check_config(*args.worker, size=args.size)
        print(json.dumps(asdict(result)))
        return 0
    jobs = [(package, family, files) for package in args.packages
            for family, files in family_configs(package).items()
            if not args.families or family in args.families]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = []
        for result in pool.map(lambda job: check_family(args, *job), jobs):
            results.append(result)
            share = '' if result.nm_share is None else \
                f'{100 * result.nm_share:.2f}%'
            print(
                f'{result.package}/{result.family}: {result.status} '
                f'{share} ({result.seconds} s) {result.error}',
                flush=True)
    table = markdown(results)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(preamble(argv) + table + '\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
