"""Root pytest configuration, loaded for unit tests, doctests and notebooks alike.

Notebooks compared by nbval must produce the outputs stored in them, which were made on a CPU in
quick mode: force both here, so that a maintainer with a GPU gets the same comparison. The kernel
that nbval starts inherits this environment.
"""

import os

os.environ["GDM_SCALE"] = "quick"
os.environ["GDM_DEVICE"] = "cpu"
# One intra-op thread: the book's networks are tiny, and on two cores torch's thread pool makes
# their training 10-40x slower. tools/execute_notebooks.py uses the same setting, so the stored
# outputs and nbval's fresh ones come from the same arithmetic.
os.environ["OMP_NUM_THREADS"] = "1"
