"""The model-surgery core (:mod:`mmnm.conversion.surgery`) and the
conversions standing on it: a conversion that fails half-way leaves the
model exactly as it was, shared layers stay shared, and each conversion
plans every layer before it changes one."""
import pytest
import torch
from torch import nn

from mmnm.conversion import (check_globs, first_match, module_names,
                             replace_layers, sparsify_model, weighted_layers)
from mmnm.deploy import (Sparse24Linear, convert_to_sparse24,
                         load_sparse24_checkpoint, prepare_sparse24_structure,
                         save_sparse24_checkpoint)
from mmnm.layers import NMSparseMixin, SparseConv, sparse_layers_of


def snapshot(model: nn.Module) -> list:
    """Every name the model holds a module by, the module itself, its
    pattern if N:M and its weight's values."""
    return [(name, module, getattr(module, 'nm', None),
             module.weight.detach().clone() if isinstance(
                 getattr(module, 'weight', None), torch.Tensor) else None)
            for name, module in model.named_modules(remove_duplicate=False)]


def assert_unchanged(model: nn.Module, before: list) -> None:
    after = snapshot(model)
    assert [(n, id(m), nm) for n, m, nm, _ in after] == \
        [(n, id(m), nm) for n, m, nm, _ in before]
    for (name, _, _, w_after), (_, _, _, w_before) in zip(after, before):
        if w_before is not None:
            assert torch.equal(w_after, w_before), name


class Net(nn.Module):
    """Four convertible layers first, an ineligible one (3 input channels)
    last, and a conv shared under two names."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(16, 32, 3)
        self.b = nn.Conv2d(64, 32, 1)
        self.shared = nn.Conv2d(64, 64, 1)
        self.head = nn.ModuleList([self.shared, self.shared])
        self.fc = nn.Linear(64, 32)
        self.stem = nn.Conv2d(3, 32, 1)


def test_weighted_layers_lists_each_layer_once_in_order():
    model = Net()
    names = [name for name, _ in weighted_layers(model)]
    assert names == ['a', 'b', 'shared', 'fc', 'stem']
    assert module_names(model)[model.shared] == ['shared', 'head.0', 'head.1']
    with pytest.raises(ValueError, match='f converts .* bare Conv2d'):
        weighted_layers(nn.Conv2d(4, 4, 1), 'f')


def test_globs():
    assert first_match('head.0', ['fc', 'head.*', 'head.0']) == 'head.*'
    assert first_match('fc', ['head.*']) is None
    with pytest.raises(ValueError, match=r"sparsity exclude pattern 'x\.\*'"):
        check_globs(Net(), ['a', 'b'], dict(exclude=['a', 'x.*']), 'sparsity')


def test_replace_layers_replaces_every_name_of_a_shared_layer():
    model = Net()
    new = nn.Identity()
    replace_layers(model, {model.shared: new})
    assert model.shared is new and model.head[0] is new and \
        model.head[1] is new
    with pytest.raises(ValueError, match='not a submodule'):
        replace_layers(model, {nn.Conv2d(1, 1, 1): nn.Identity()})


def test_sparsify_keeps_shared_layers_shared():
    model = Net()
    sparsify_model(model)
    assert isinstance(model.shared, SparseConv)
    assert model.head[0] is model.shared and model.head[1] is model.shared


def test_failed_sparsify_leaves_the_model_untouched():
    """The override of the last layer cannot hold (3 input channels): the
    four layers planned before it must not have been swapped."""
    model = Net()
    before = snapshot(model)
    with pytest.raises(ValueError, match="layer 'stem' cannot be 2:4"):
        sparsify_model(model, overrides={'stem': '2:4'})
    assert_unchanged(model, before)
    assert not any(isinstance(m, NMSparseMixin) for m in model.modules())


def test_failed_override_of_built_sparse_layers_changes_none():
    """A model made sparse, re-targeted by overrides of which the second
    cannot hold (M=128 > the 64 inputs of 'b'): no layer's pattern
    changes, not even the first's."""
    model = Net()
    sparsify_model(model)
    before = snapshot(model)
    with pytest.raises(ValueError, match="layer 'b' cannot be 1:128"):
        sparsify_model(model, overrides={'a': '1:16', 'b': '1:128'})
    assert_unchanged(model, before)


def test_failed_sparse24_conversion_leaves_the_model_untouched():
    model = Net()
    sparsify_model(model)
    before = snapshot(model)
    with pytest.raises(ValueError, match="'stem' \\(forced by 'stem'\\)"):
        convert_to_sparse24(model, force=['stem'], logger=None)
    assert_unchanged(model, before)


def test_failed_structure_rebuild_leaves_the_model_untouched(tmp_path):
    """A 2:4 checkpoint whose second 2:4 layer the model does not have."""
    source = Net()
    sparsify_model(source)
    convert_to_sparse24(source, logger=None)
    save_sparse24_checkpoint(source, str(tmp_path / 'c.pth'))
    state = torch.load(tmp_path / 'c.pth')['state_dict']
    state['missing.weight_values'] = state['shared.weight_values']
    model = Net()
    before = snapshot(model)
    with pytest.raises(ValueError, match="2:4 layer 'missing'"):
        prepare_sparse24_structure(model, state)
    assert_unchanged(model, before)
    del state['missing.weight_values']
    names = prepare_sparse24_structure(model, state)
    assert 'shared' in names and 'head.1' in names
    assert model.head[0] is model.shared
    model.load_state_dict(state, strict=True)


def test_failed_sparsify_registers_no_sparse_layer():
    """The optim wrappers find N:M layers by their weights: a failed plan
    must not leave one that claims a (still dense) weight."""
    model = Net()
    with pytest.raises(ValueError):
        sparsify_model(model, overrides={'stem': '2:4'})
    assert sparse_layers_of(model.parameters()) == []


def test_globs_may_name_the_alias_of_a_shared_layer():
    """A shared layer is decided under its first name; a glob naming only
    another of its names is accepted (it matches a layer of the model)."""
    model = Net()
    report = sparsify_model(model, exclude=['head.1'])
    assert isinstance(model.head[1], SparseConv)
    assert [d.name for d in report.layers].count('shared') == 1


def test_loading_a_sparse24_file_that_does_not_fit_changes_nothing(tmp_path):
    source = Net()
    sparsify_model(source)
    convert_to_sparse24(source, logger=None)
    saved = dict(state_dict=dict(source.state_dict()))
    saved['state_dict']['extra.weight'] = torch.zeros(1)
    torch.save(saved, tmp_path / 'extra.pth')
    model = Net().eval()
    before = snapshot(model)
    with pytest.raises(
            ValueError, match=r'extra.pth: does not fit .*extra.weight'):
        load_sparse24_checkpoint(model, str(tmp_path / 'extra.pth'))
    assert_unchanged(model, before)
    del saved['state_dict']['extra.weight']
    torch.save(saved, tmp_path / 'good.pth')
    load_sparse24_checkpoint(model, str(tmp_path / 'good.pth'))
    assert isinstance(model.fc, Sparse24Linear)
    assert not model.fc.training  # the mode of the layer it replaced
    (tmp_path / 'text.pth').write_text('not a checkpoint')
    with pytest.raises(ValueError, match='text.pth: not a readable'):
        load_sparse24_checkpoint(model, str(tmp_path / 'text.pth'))
