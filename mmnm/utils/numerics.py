"""How close two outputs are, the one measure that the 2:4 tests,
benchmarks and GPU checks report."""
import torch


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """``max |result - reference| / max |reference|``, in fp32."""
    result, reference = result.float(), reference.float()
    return float((result - reference).abs().max() /
                 reference.abs().max().clamp_min(1e-12))
