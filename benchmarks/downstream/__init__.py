"""The downstream experiment: POS and NER taggers per ELMo layer mode (``python -m benchmarks.downstream``).

- :mod:`~benchmarks.downstream.run`: the experiment and its command line;
- :mod:`~benchmarks.downstream.report`: summary, table, plot and merging, from the JSON report alone;
- :mod:`~benchmarks.downstream.embeddings`: the baseline's character features, batched.

The data (Brown, WNUT-16) come from :mod:`benchmarks.corpora`.
"""
