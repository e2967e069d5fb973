"""Scripts that rebuild and check the shipped ``en-tiny`` model (outside the test run).

Run them as modules from the repository root, e.g. ``python -m scripts.build_shipped_model``:
they import each other and :mod:`benchmarks.corpora` (the Brown corpus) as packages.
"""
