"""Which distribution installed ``janus_rs``: ``janus-rs`` (CPU) or ``janus-rs-cu13`` (NVIDIA GPUs,
CUDA 13, with the CPU core too).

Both install the same import package, so with both in one ``site-packages`` the files of one
overwrite the other's and uninstalling either breaks what is left; importing this module (the
first thing ``import janus_rs`` does) refuses that state with an :class:`ImportError` that says
how to get out of it. The check lists the folder
the package was imported from (about a millisecond; ``importlib.metadata`` would cost 100 ms).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CPU_DISTRIBUTION = "janus-rs"
CUDA_DISTRIBUTION = "janus-rs-cu13"
DISTRIBUTIONS = (CPU_DISTRIBUTION, CUDA_DISTRIBUTION)

# wheel file names / .dist-info folders spell a distribution name with "_" (PEP 427, PEP 503).
_DIST_INFO = re.compile(r"^(janus[-_.]rs(?:[-_.]cu13)?)-[^-]+\.dist-info$", re.IGNORECASE)


def installed_distributions(site_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The janus-rs distributions installed in ``site_dir`` (default: the folder this package was
    imported from), in :data:`DISTRIBUTIONS` order."""
    folder = Path(site_dir) if site_dir is not None else Path(__file__).resolve().parent.parent
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    found = set()
    for entry in entries:
        m = _DIST_INFO.match(entry)
        if m:
            found.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return [name for name in DISTRIBUTIONS if name in found]


def check_single_distribution(site_dir: str | os.PathLike[str] | None = None) -> None:
    """:class:`ImportError` if both ``janus-rs`` and ``janus-rs-cu13`` are installed in ``site_dir``."""
    found = installed_distributions(site_dir)
    if len(found) > 1:
        raise ImportError(
            f"both {CPU_DISTRIBUTION} and {CUDA_DISTRIBUTION} are installed; they provide the same "
            f"janus_rs package, so their files are now mixed. Keep one: `pip uninstall -y "
            f"{CPU_DISTRIBUTION} {CUDA_DISTRIBUTION}` and then `pip install {CUDA_DISTRIBUTION}` "
            f"(NVIDIA GPU, CUDA 13; it runs on CPU as well) or `pip install {CPU_DISTRIBUTION}` (CPU only)"
        )


def installed_distribution() -> str | None:
    """The distribution this ``janus_rs`` came from, or ``None`` (e.g. a source checkout on
    ``sys.path``)."""
    found = installed_distributions()
    return found[0] if len(found) == 1 else None


check_single_distribution()
