"""Benchmarks and the downstream experiment (outside the test run; see README.md).

Two ways to run them, from the repository root:

- ``python benchmarks/bench_<name>.py``: run by path; they import their siblings by bare name
  (``_common``, ``corpora``, ``allennlp_side``).
- ``python -m benchmarks.downstream``: a package; it imports ``benchmarks.corpora``.

``corpora`` imports only the standard library, so it works both ways; tests import it as
``benchmarks.corpora``.
"""
