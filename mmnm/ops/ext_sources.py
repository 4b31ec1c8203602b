"""The digest of ``mmnm/ops/csrc``: ``setup.py`` compiles it into
``mmnm._ext`` and :func:`mmnm.ops.ext_loader.load_ext` compares it with the
sources beside the package, so that a build made from other sources (C++
edited or updated, the extension not rebuilt) is not used. Standard library
only: ``setup.py`` runs this file before mmnm can be imported."""
import hashlib
import os
import os.path as osp

#: The files that go into ``mmnm._ext``: sources and headers.
SOURCE_SUFFIXES = ('.cpp', '.cu', '.h', '.cuh')

#: ``mmnm/ops/csrc``, beside this file.
CSRC_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc')


def sources_digest(csrc_dir: str = CSRC_DIR) -> str:
    """SHA-1 (hex) over the relative paths and contents of the C++/CUDA
    sources under ``csrc_dir``, in sorted order; empty if there are none
    (an installed package without its sources)."""
    paths = sorted(
        osp.relpath(osp.join(folder, name), csrc_dir).replace(os.sep, '/')
        for folder, _, names in os.walk(csrc_dir) for name in names
        if name.endswith(SOURCE_SUFFIXES))
    if not paths:
        return ''
    digest = hashlib.sha1()
    for path in paths:
        digest.update(path.encode() + b'\0')
        with open(osp.join(csrc_dir, path), 'rb') as source:
            digest.update(source.read() + b'\0')
    return digest.hexdigest()
