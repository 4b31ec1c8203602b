"""What the command-line tools share: the common arguments, the config
with the command line applied, and one error style (a one-line message on
stderr, exit code 1) over the exceptions that :mod:`mmnm.apis` raises."""
import argparse
import functools
import os
import os.path as osp
import sys
from typing import Callable, Optional

from mmengine.config import Config, DictAction

#: The exceptions a tool reports as a message instead of a traceback: bad
#: input (missing files, configs or checkpoints that do not fit, N:M
#: violations). ``MMNM_TRACEBACK=1`` shows the traceback instead.
USER_ERRORS = (OSError, ValueError)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher``, ``--local-rank``."""
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. '
        'default_hooks.nm_sparsity.sparsity.pattern=4:8')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def config_from_args(args: argparse.Namespace) -> Config:
    """``args.config`` with the common arguments applied; the work dir
    defaults to ``./work_dirs/<config name>``."""
    from mmnm.apis import load_config
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def report_errors(main: Callable[..., Optional[int]]) -> Callable[..., int]:
    """Wrap a tool's ``main``: a :data:`USER_ERRORS` exception becomes
    ``error: <message>`` on stderr (and a line on how to see the
    traceback) and exit code 1; ``main``'s own return value (``None``: 0)
    otherwise."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except USER_ERRORS as err:
            if os.environ.get('MMNM_TRACEBACK') == '1':
                raise
            print(
                f'error: {err}\n(MMNM_TRACEBACK=1 shows where it was raised)',
                file=sys.stderr)
            return 1

    return wrapped
