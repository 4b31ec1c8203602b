"""The size of the CPU's last-level cache, which decides whether a kernel's
outputs are still in cache when they are next read."""
import functools
import glob
import os.path as osp
from typing import Optional

#: where Linux describes the caches of the first CPU
CACHE_DIR = '/sys/devices/system/cpu/cpu0/cache'

_SUFFIXES = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}


def parse_cache_size(text: str) -> int:
    """Bytes of a sysfs cache size such as ``'49152K'``; ``ValueError`` for
    anything else."""
    text = text.strip().upper()
    digits = text.rstrip('KMG')
    suffix = text[len(digits):]
    if not digits.isdigit() or suffix not in _SUFFIXES:
        raise ValueError(f'not a cache size: {text!r}')
    return int(digits) * _SUFFIXES[suffix]


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes(cache_dir: str = CACHE_DIR) -> Optional[int]:
    """The size in bytes of the highest data or unified cache level of the
    first CPU, as ``cache_dir`` (Linux sysfs) describes it; ``None`` where
    it does not (another system, a container hiding it)."""
    last = None
    for index in sorted(glob.glob(osp.join(cache_dir, 'index*'))):
        try:
            with open(osp.join(index, 'type')) as f:
                kind = f.read().strip()
            with open(osp.join(index, 'level')) as f:
                level = int(f.read())
            with open(osp.join(index, 'size')) as f:
                size = parse_cache_size(f.read())
        except (OSError, ValueError):
            continue
        if kind != 'Instruction' and (last is None or level > last[0]):
            last = (level, size)
    return None if last is None else last[1]
