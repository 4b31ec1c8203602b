"""Model surgery, the one walk that every conversion stands on: list a
model's weighted layers under their names, check name globs against them,
and replace a planned set of layers all at once.

Training sparsification (:func:`~mmnm.conversion.sparsify_model`), 2:4
inference conversion (:func:`mmnm.deploy.convert_to_sparse24`) and the
rebuilding of a 2:4 model from its checkpoint
(:func:`mmnm.deploy.prepare_sparse24_structure`) each decide what every
layer becomes first and then call :func:`replace_layers`, so a conversion
that fails leaves the model as it was
(:func:`mmnm.deploy.load_sparse24_checkpoint` puts the old layers back when
the file's keys do not fit).
"""
import fnmatch
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor, nn

#: Module types that conversions list although their weight is not a
#: parameter named ``weight`` of two or more dims.
WEIGHTED_LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear,
                        nn.MultiheadAttention)


def is_weighted_layer(module: nn.Module) -> bool:
    """Whether conversions list ``module`` in their tables: every conv
    (transposed, deformable, weight-standardised ones included), linear,
    attention and embedding layer: every module that holds a matrix or
    kernel ``weight`` itself, so that no such layer is silently absent."""
    if isinstance(module, WEIGHTED_LAYER_TYPES):
        return True
    weight = module._parameters.get('weight')
    return isinstance(weight, Tensor) and weight.dim() >= 2


def weighted_layers(model: nn.Module,
                    caller: str = 'this conversion',
                    globs: Optional[Mapping[str, Sequence[str]]] = None,
                    setting: str = '') -> List[Tuple[str, nn.Module]]:
    """Each weighted layer of ``model`` (see :func:`is_weighted_layer`)
    once, under its first name, in
    module order (a layer shared by several heads appears once, and globs
    decide it by that name), after checking that every glob of ``globs``
    (see :func:`check_globs`) matches one of the names the model holds
    these layers by.

    Raises:
        ValueError: ``model`` is itself a bare weighted layer (the message
            names ``caller``), or a glob matches no layer.
    """
    if is_weighted_layer(model):
        raise ValueError(
            f'{caller} converts the layers inside a model, got a bare '
            f'{type(model).__name__}; a single layer converts with the '
            'class method of its new type (SparseConv.from_dense, '
            'Sparse24Linear.compress, ...)')
    layers = [(name, module) for name, module in model.named_modules()
              if is_weighted_layer(module)]
    if globs:  # every name counts, those of shared layers' aliases too
        names = [
            name
            for name, module in model.named_modules(remove_duplicate=False)
            if is_weighted_layer(module)
        ]
        check_globs(model, names, globs, setting)
    return layers


def first_match(name: str, globs: Sequence[str]) -> Optional[str]:
    """The first shell-style glob (``fnmatch``) of ``globs`` that matches
    the layer ``name``, or ``None``."""
    return next((glob for glob in globs if fnmatch.fnmatchcase(name, glob)),
                None)


def check_globs(model: nn.Module, names: Sequence[str],
                globs: Mapping[str, Sequence[str]], setting: str) -> None:
    """Raise ``ValueError`` for the first glob that matches none of
    ``names``, naming its key in ``globs`` (``exclude``, ...), the
    ``setting`` (e.g. ``'sparsity'``) and a few layer names as examples."""
    for key, patterns in globs.items():
        for glob in patterns:
            if not any(fnmatch.fnmatchcase(name, glob) for name in names):
                examples = ', '.join(names[:5]) or 'none'
                raise ValueError(
                    f'{setting} {key} pattern {glob!r} matches no weighted '
                    f'layer of {type(model).__name__} (layers are named '
                    f'like: {examples})')


def parents(model: nn.Module) -> Dict[nn.Module, nn.Module]:
    """The module that holds each submodule of ``model`` (the first, for
    shared ones)."""
    held: Dict[nn.Module, nn.Module] = {}
    for parent in model.modules():
        for child in parent.children():
            held.setdefault(child, parent)
    return held


def module_names(model: nn.Module) -> Dict[nn.Module, List[str]]:
    """Every name under which ``model`` holds each of its modules (shared
    modules have several)."""
    names: Dict[nn.Module, List[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(module, []).append(name)
    return names


def replace_layers(model: nn.Module, replacements: Mapping[nn.Module,
                                                           nn.Module]) -> None:
    """Put each new module in place of its old one, under every name that
    ``model`` holds the old one by (shared layers stay shared).

    Build every replacement before calling this: it only assigns
    attributes, so a conversion that fails while planning changes nothing.

    Raises:
        ValueError: a module to replace is not in ``model``, or is ``model``.
    """
    names = module_names(model)
    slots = []
    for old in replacements:
        held = names.get(old)
        if not held or held == ['']:
            raise ValueError(f'cannot replace {type(old).__name__}: not a '
                             f'submodule of {type(model).__name__}')
        slots += [(name, old) for name in held]
    # parents first: a new parent (an attention sharing its old out_proj)
    # must be in place before its replaced child is assigned into it
    slots.sort(key=lambda slot: slot[0].count('.'))
    for name, old in slots:
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent), child, replacements[old])
