"""The size of the CPU's last-level cache, which decides whether a kernel's
outputs are still in cache when they are next read."""
import functools
import glob
import os
import os.path as osp
from typing import Optional, Tuple

#: where Linux describes the CPUs and their caches
CPU_DIR = '/sys/devices/system/cpu'

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


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def last_cache_of(cache_dir: str) -> Optional[Tuple[int, int, str]]:
    """``(level, bytes, shared_cpu_list)`` of the highest data or unified
    cache that ``cache_dir`` (a CPU's sysfs ``cache`` folder) describes;
    ``None`` where it describes none."""
    last = None
    for index in sorted(glob.glob(osp.join(cache_dir, 'index*'))):
        try:
            kind = _read(osp.join(index, 'type'))
            level = int(_read(osp.join(index, 'level')))
            size = parse_cache_size(_read(osp.join(index, 'size')))
        except (OSError, ValueError):
            continue
        try:
            shared = _read(osp.join(index, 'shared_cpu_list'))
        except OSError:
            shared = index  # not shared with another CPU, as far as known
        if kind != 'Instruction' and (last is None or level > last[0]):
            last = (level, size, shared)
    return last


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes(
        cpu_dir: str = CPU_DIR,
        cpus: Optional[Tuple[int, ...]] = None) -> Optional[int]:
    """The bytes of last-level cache of the CPUs this process may run on
    (or those numbered ``cpus``): the highest data or unified cache level
    of each, as ``cpu_dir`` (Linux sysfs) describes it, each cache shared
    by several CPUs counted once (two sockets, or AMD's core complexes,
    have several last-level caches). ``None`` where sysfs does not
    describe them (another system, a container hiding it). A virtual
    machine may see the host's whole cache."""
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(
            os, 'sched_getaffinity') else [0]
    caches = {}
    for cpu in cpus:
        found = last_cache_of(osp.join(cpu_dir, f'cpu{cpu}', 'cache'))
        if found is not None:
            level, size, shared = found
            caches[shared] = (level, size)
    if not caches:
        return None
    top = max(level for level, _ in caches.values())
    return sum(size for level, size in caches.values() if level == top)
