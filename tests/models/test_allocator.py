import subprocess
import sys

import pytest

# Allocates, touches and frees a 96 MB block five times; prints the minor page faults of the last four.
PROBE = """
import resource, sys
import numpy as np
from models.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
np.ones(96 << 18, dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    np.ones(96 << 18, dtype=np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator setting")
def test_freed_big_blocks_are_reused_instead_of_faulted_in_again():
    default = faults("default")
    assert default >= 4 * 96 // 2  # glibc unmaps each big block on free: >= a fault per 2 MB huge page
    assert faults("retain") < default / 10
