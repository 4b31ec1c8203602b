"""The last-level cache size read from Linux sysfs."""
import pytest

from mmnm.ops.cpu_cache import last_level_cache_bytes, parse_cache_size


def write_cache(root, index, level, kind, size):
    folder = root / f'index{index}'
    folder.mkdir()
    (folder / 'level').write_text(f'{level}\n')
    (folder / 'type').write_text(f'{kind}\n')
    (folder / 'size').write_text(f'{size}\n')


@pytest.mark.parametrize('text,expected', [('48K', 48 << 10),
                                           ('1280K\n', 1280 << 10),
                                           ('32M', 32 << 20), ('1G', 1 << 30),
                                           ('512', 512)])
def test_parse_cache_size(text, expected):
    assert parse_cache_size(text) == expected


@pytest.mark.parametrize('text', ['', 'K', '12KB', '1.5M', '-3K'])
def test_parse_cache_size_rejects_other_text(text):
    with pytest.raises(ValueError, match='not a cache size'):
        parse_cache_size(text)


def test_the_highest_data_or_unified_level_counts(tmp_path):
    write_cache(tmp_path, 0, 1, 'Data', '48K')
    write_cache(tmp_path, 1, 1, 'Instruction', '32K')
    write_cache(tmp_path, 2, 2, 'Unified', '1280K')
    write_cache(tmp_path, 3, 3, 'Unified', '49152K')
    assert last_level_cache_bytes(str(tmp_path)) == 48 << 20


def test_instruction_caches_and_unreadable_entries_do_not_count(tmp_path):
    write_cache(tmp_path, 0, 1, 'Data', '32K')
    write_cache(tmp_path, 1, 3, 'Instruction', '64M')  # not data
    write_cache(tmp_path, 2, 4, 'Unified', 'lots')  # unreadable size
    (tmp_path / 'index3').mkdir()  # no files at all
    assert last_level_cache_bytes(str(tmp_path)) == 32 << 10


def test_no_description_is_none(tmp_path):
    assert last_level_cache_bytes(str(tmp_path / 'missing')) is None
    assert last_level_cache_bytes(str(tmp_path)) is None
