"""Install mmnm: ``pip install -e . --no-build-isolation`` (see README).

The C++/CUDA ops are built as ``mmnm._ext``: a CppExtension by default, a
CUDAExtension where CUDA is available or ``FORCE_CUDA=1``; ``MMNM_WITH_OPS=0``
skips them (mmnm then runs its pure-PyTorch implementations).
"""
import glob
import os
import os.path as osp
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
CSRC = osp.join('mmnm', 'ops', 'csrc')


def read_requirements(name: str):
    """Requirement lines of ``requirements/<name>.txt``."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def read_version() -> str:
    namespace = {}
    with open(osp.join(HERE, 'mmnm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def write_sources_digest_header() -> str:
    """Write build/generated/mmnm_sources_digest.h, the digest of
    mmnm/ops/csrc (mmnm/ops/ext_sources.py) that pybind.cpp compiles into
    mmnm._ext so that mmnm can tell a build made from other sources; return
    its folder. A header, not a -D flag: only pybind.cpp includes it, so an
    edit recompiles that file and the edited ones, not every source."""
    path = osp.join(HERE, 'mmnm', 'ops', 'ext_sources.py')
    namespace = {'__file__': path}
    with open(path) as f:
        exec(f.read(), namespace)
    text = f'#define MMNM_SOURCES_DIGEST "{namespace["sources_digest"]()}"\n'
    folder = osp.join(HERE, 'build', 'generated')
    header = osp.join(folder, 'mmnm_sources_digest.h')
    os.makedirs(folder, exist_ok=True)
    written = None
    if osp.exists(header):
        with open(header) as f:
            written = f.read()
    if written != text:  # rewritten only when it changes
        with open(header, 'w') as f:
            f.write(text)
    return folder


def make_extensions():
    """``mmnm._ext`` and the build command, or none if disabled."""
    if os.getenv('MMNM_WITH_OPS', '1') == '0':
        return [], {}
    import torch
    from torch.utils.cpp_extension import (BuildExtension, CppExtension,
                                           CUDAExtension)
    sources = glob.glob(osp.join(CSRC, 'pytorch', '*.cpp')) + \
        glob.glob(osp.join(CSRC, 'pytorch', 'cpu', '*.cpp'))
    # -fopenmp lets at::parallel_for use torch's OpenMP threads. No -std:
    # torch adds the C++ standard its headers need (C++20 for torch 2.14).
    extra_args = dict(cxx=['-O3', '-fopenmp'])
    define_macros = []
    cuda_sources = glob.glob(osp.join(CSRC, 'pytorch', 'cuda', '*.cu'))
    want_cuda = torch.cuda.is_available() or os.getenv('FORCE_CUDA') == '1'
    if want_cuda and cuda_sources:
        sources += cuda_sources
        define_macros.append(('MMNM_WITH_CUDA', None))
        extra_args['nvcc'] = ['-O3']
        extension = CUDAExtension
    else:
        extension = CppExtension
    ext = extension(
        name='mmnm._ext',
        sources=sorted(sources),
        include_dirs=[
            osp.abspath(osp.join(CSRC, 'common')),
            write_sources_digest_header()
        ],
        define_macros=define_macros,
        extra_compile_args=extra_args)
    return [ext], dict(build_ext=BuildExtension)


ext_modules, cmdclass = make_extensions()

setup(
    name='mmnm',
    version=read_version(),
    description='N:M fine-grained structured sparse training (SR-STE) and '
    '2:4 inference for OpenMMLab',
    packages=find_packages(include=['mmnm', 'mmnm.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime'),
    extras_require=dict(tests=read_requirements('tests')),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    license='Apache License 2.0',
    zip_safe=False)
