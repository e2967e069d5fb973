"""The downstream experiment: POS and NER taggers per ELMo layer mode (``python -m benchmarks.downstream``).

- :mod:`~benchmarks.downstream.run`: the experiment and its command line;
- :mod:`~benchmarks.downstream.report`: summary, table, plot and merging, from the JSON report alone;
- :mod:`~benchmarks.downstream.embeddings`: the baseline's character features, batched;
- :mod:`~benchmarks.downstream.precision`, :mod:`~benchmarks.downstream.state`: POS taggers trained on
  one kind of ELMo vectors (fp32 / bf16, stateless / stateful) and evaluated on each, on the
  machinery of :mod:`~benchmarks.downstream.paired`.

The data (Brown, WNUT-16) come from :mod:`benchmarks.corpora`.
"""
