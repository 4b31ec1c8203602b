"""The N:M sparsity pattern: at most N non-zeros in each group of M weights."""
from dataclasses import dataclass
from typing import Mapping, Tuple, Union

#: How the weights of a layer are cut into groups of M.
#: ``'channel'``: M consecutive input channels at each output and kernel tap
#: (the GEMM reduction order that 2:4 hardware accelerates).
#: ``'flat'``: M consecutive entries of the flattened (C, R, S) weight row,
#: as in the first release of the SR-STE paper.
ORIENTATIONS: Tuple[str, ...] = ('channel', 'flat')

PatternLike = Union['NMPattern', str, Tuple[int, int], Mapping]


@dataclass(frozen=True)
class NMPattern:
    """A validated N:M pattern with its grouping orientation."""

    n: int
    m: int
    orientation: str = 'channel'

    def __post_init__(self) -> None:
        for key in ('n', 'm'):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f'N:M pattern: {key} must be an int, got {value!r}')
        if not 1 <= self.n < self.m:
            raise ValueError(f'invalid N:M pattern {self.n}:{self.m}: '
                             'need 1 <= N < M')
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f'unknown orientation {self.orientation!r}, '
                             f'expected one of {ORIENTATIONS}')

    @classmethod
    def parse(cls,
              spec: PatternLike,
              orientation: str = 'channel') -> 'NMPattern':
        """Build a pattern from ``'2:4'``, ``(2, 4)``, ``dict(n=2, m=4)`` or
        an existing pattern; ``orientation`` applies when ``spec`` gives none.
        """
        if isinstance(spec, NMPattern):
            return spec
        if isinstance(spec, str):
            parts = spec.split(':')
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(
                    f"cannot parse N:M pattern {spec!r}: expected 'N:M', "
                    "e.g. '2:4'")
            return cls(int(parts[0]), int(parts[1]), orientation)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {'n', 'm', 'orientation'}
            if unknown or not {'n', 'm'} <= set(spec):
                raise ValueError(f'cannot parse N:M pattern {dict(spec)!r}: '
                                 'expected keys n, m and optionally '
                                 'orientation')
            return cls(spec['n'], spec['m'],
                       spec.get('orientation', orientation))
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            return cls(spec[0], spec[1], orientation)
        raise TypeError(f'cannot parse N:M pattern {spec!r}')

    @property
    def density(self) -> float:
        """Share of weights kept."""
        return self.n / self.m

    def __str__(self) -> str:
        return f'{self.n}:{self.m}'
