"""Root pytest configuration, loaded for unit tests, doctests and notebooks alike.

Notebooks compared by nbval must produce the outputs stored in them, which were made on a CPU in
quick mode: force both here, so that a maintainer with a GPU gets the same comparison. The kernel
that nbval starts inherits this environment.
"""

import os

os.environ.setdefault("GDM_SCALE", "quick")
os.environ.setdefault("GDM_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep the few BLAS threads from fighting over the two CI cores with the notebook kernel.
os.environ.setdefault("OMP_NUM_THREADS", "2")
