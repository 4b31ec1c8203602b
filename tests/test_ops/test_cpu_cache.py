"""The last-level cache size read from Linux sysfs."""
import pytest

from mmnm.ops.cpu_cache import last_level_cache_bytes, parse_cache_size


def write_cache(root, cpu, index, level, kind, size, shared=None):
    folder = root / f'cpu{cpu}' / 'cache' / f'index{index}'
    folder.mkdir(parents=True)
    (folder / 'level').write_text(f'{level}\n')
    (folder / 'type').write_text(f'{kind}\n')
    (folder / 'size').write_text(f'{size}\n')
    (folder / 'shared_cpu_list').write_text(f'{shared or cpu}\n')


def two_sockets(root):
    """CPUs 0-3: own L1 and L2 each; L3 of 32 MB shared by 0-1, another
    by 2-3."""
    for cpu in range(4):
        write_cache(root, cpu, 0, 1, 'Data', '48K')
        write_cache(root, cpu, 1, 1, 'Instruction', '32K')
        write_cache(root, cpu, 2, 2, 'Unified', '1280K')
        write_cache(root, cpu, 3, 3, 'Unified', '32768K',
                    '0-1' if cpu < 2 else '2-3')


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


def test_each_shared_last_level_cache_counts_once(tmp_path):
    two_sockets(tmp_path)
    cpu_dir = str(tmp_path)
    assert last_level_cache_bytes(cpu_dir, (0, )) == 32 << 20
    assert last_level_cache_bytes(cpu_dir, (0, 1)) == 32 << 20
    assert last_level_cache_bytes(cpu_dir, (0, 1, 2, 3)) == 64 << 20
    assert last_level_cache_bytes(cpu_dir, (1, 2)) == 64 << 20


def test_instruction_caches_and_unreadable_entries_do_not_count(tmp_path):
    write_cache(tmp_path, 0, 0, 1, 'Data', '32K')
    write_cache(tmp_path, 0, 1, 3, 'Instruction', '64M')  # not data
    write_cache(tmp_path, 0, 2, 4, 'Unified', 'lots')  # unreadable size
    (tmp_path / 'cpu0' / 'cache' / 'index3').mkdir()  # no files at all
    assert last_level_cache_bytes(str(tmp_path), (0, )) == 32 << 10


def test_no_description_is_none(tmp_path):
    assert last_level_cache_bytes(str(tmp_path / 'missing'), (0, )) is None
    (tmp_path / 'cpu0' / 'cache').mkdir(parents=True)
    assert last_level_cache_bytes(str(tmp_path), (0, 1)) is None
