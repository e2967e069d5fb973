"""The biLM's speed machinery, apart from the plain computation it must reproduce.

The plain computation is readable in :mod:`flair_elmo_modes.bilm` itself (``char_encoder.py``,
``lstm.py``, ``lstm_cell.py``, ``model.py``): what tests compare against, and what
``fast_paths(enabled=False)`` runs. This package holds what makes it fast without changing its values
beyond float32 rounding:

- ``fast_paths.py``: the switch for every shortcut (``fast_paths(...)`` context manager);
- ``kernels.py``: the LSTM step kernels beyond the plain one (in place, MKL- and oneDNN-packed,
  bf16/fp16 products), the candidates and the fixed rule;
- ``kernel_plan.py``: which kernel is fastest here, measured per workload and kept per machine;
- ``mkl.py`` and ``onednn.py``: pre-packed matrix products;
- ``derived.py``: the one cache policy (weight-derived values keyed by their sources).

No module here imports :mod:`flair_elmo_modes.bilm.lstm` or the other modules that use it (checked
by ``tests/bilm/test_dependencies.py``): kernels get a layer's weights as a value,
:class:`~flair_elmo_modes.bilm.lstm_cell.LayerWeights`.
"""
