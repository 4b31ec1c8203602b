"""Install mmnm: ``pip install -e . --no-build-isolation`` (see README)."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


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


setup(
    name='mmnm',
    version=read_version(),
    description='N:M fine-grained structured sparse training (SR-STE) and '
    '2:4 inference for OpenMMLab',
    packages=find_packages(include=['mmnm', 'mmnm.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime'),
    extras_require=dict(tests=read_requirements('tests')),
    license='Apache License 2.0',
    zip_safe=False)
