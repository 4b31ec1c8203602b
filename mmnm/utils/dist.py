"""Distributed set-up that mmengine 0.10 lacks: torchrun on CPU-only hosts.

mmengine's ``init_dist('pytorch')`` always calls ``torch.cuda.set_device``
and its Runner passes ``device_ids=[LOCAL_RANK]`` to DDP, and both fail
where there is no GPU. The Runner skips ``init_dist`` when a process group
already exists, so starting a gloo group first and building DDP without
device ids makes ``launcher='pytorch'`` work on CPUs (CI, laptops) with the
same config.
"""
import os
from typing import MutableMapping

import torch
import torch.distributed as torch_dist


def prepare_cpu_distributed(cfg: MutableMapping) -> bool:
    """For a torchrun process (``cfg['launcher'] == 'pytorch'``) on a host
    without CUDA: start a gloo process group and let DDP wrap a CPU model.
    Returns whether it did; elsewhere it changes nothing."""
    if (cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available()
            or not torch_dist.is_available() or 'RANK' not in os.environ):
        return False
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None  # CPU modules take none
    cfg['model_wrapper_cfg'] = wrapper
    return True
