"""What "the same vector" means when only the float kernels may differ.

The same input gives the same vector up to float rounding, whatever else is in its batch and whichever interface
(CLI, Python API, server) embedded it. Bit-for-bit equality is not promised: the matmul kernels that oneDNN and MKL
pick depend on the batch's shape and on the CPU (AMX, AVX-512, AVX2), and MKL's strict reproducibility mode
(omnivec/__init__.py) covers Intel CPUs only. Rounding moves a unit vector's components by about 1e-7; the meaning
of a vector would need differences orders of magnitude larger. So "the same" is: every component within 1e-6 and
cosine at least 0.999999, for every row.
"""
from __future__ import annotations

import numpy as np

MAX_ABS_DIFF = 1e-6
MIN_COSINE = 0.999999


def assert_same_vectors(a, b, what: str = "vectors") -> None:
    a = np.atleast_2d(np.asarray(a, np.float64))
    b = np.atleast_2d(np.asarray(b, np.float64))
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert diff <= MAX_ABS_DIFF, f"{what}: max abs diff {diff:.3g} > {MAX_ABS_DIFF}"
    assert cos.min() >= MIN_COSINE, f"{what}: min cosine {cos.min():.9f} < {MIN_COSINE}"
