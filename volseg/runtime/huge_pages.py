"""numpy asks the kernel for transparent huge pages on every large array (``madvise``). Where the kernel then
compacts memory to find them as the pages are first touched (THP ``madvise`` with defrag ``madvise``, the
Debian and Ubuntu default), each fresh 100-200 MB array of a CT case stalls: on this project's Xeon VM the
nnU-Net stand-in's data resampling took 1.44 s per case instead of 0.72 s, a whole warm case 7.3 s instead
of 6.3 s (benchmarks/case_stages.py). The command line therefore asks for plain pages."""

from __future__ import annotations

import os


def use_plain_pages() -> None:
    """Stop numpy's huge-page requests for this process, unless ``NUMPY_MADVISE_HUGEPAGE`` says otherwise."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:  # numpy read the user's own choice at import: keep it
        return
    import numpy

    core = getattr(numpy, "_core", None) or getattr(numpy, "core", None)  # numpy 2.x, 1.x
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is not None:  # a numpy without it: its default stays, nothing breaks
        switch(False)
