"""``flair_elmo_modes.allennlp``: AllenNLP 2.10.1's ``Elmo`` and ``batch_to_ids``, against golden files
that AllenNLP wrote itself (``fixtures/allennlp_elmo/make_golden.py``), and what goes beyond them."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import torch

from flair_elmo_modes.allennlp import Elmo, ElmoEmbedder, batch_to_ids
from flair_elmo_modes.bilm import load_bilm
from flair_elmo_modes.embedder import ElmoEmbedder as LibraryElmoEmbedder
from flair_elmo_modes.models import SHIPPED_MODEL
from tests.helpers import FLOAT32_EPS, assert_as_accurate, float64_tolerance
from tests.test_lazy_imports import heavy_modules

GOLDEN = Path(__file__).parent / "fixtures" / "allennlp_elmo"
INPUTS = json.loads((GOLDEN / "inputs.json").read_text(encoding="utf-8"))
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text(encoding="utf-8"))
MODELS = sorted(MANIFEST["models"])
DTYPES = {"f32": torch.float32, "f64": torch.float64}

Outputs = list[dict[str, Any]]


def model_files(model: str) -> tuple[str, str]:
    return str(GOLDEN / model / "options.json"), str(GOLDEN / model / "weights.hdf5")


def expected(model: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / model / "expected.npz") as arrays:
        return dict(arrays)


def build(model: str, case: str, dtype: torch.dtype = torch.float32, **changes: Any) -> Elmo:
    """An ``Elmo`` with the arguments AllenNLP's module of ``case`` had (the manifest's), in eval mode."""
    kwargs = dict(MANIFEST["cases"][case])
    if case == "words":
        kwargs["vocab_to_cache"] = INPUTS["vocab"]
    if case == "fixed_mix":
        kwargs["scalar_mix_parameters"] = INPUTS["fixed_mix"][: layers_of(model)]
    kwargs["stateful"] = case == "stateful"  # AllenNLP's default; "reset" reset its state per batch
    kwargs.update(changes)
    return Elmo(*model_files(model), **kwargs).eval().to(dtype)


def layers_of(model: str) -> int:
    return MANIFEST["models"][model]["options"]["lstm"]["n_layers"] + 1


def run_batch(elmo: Elmo) -> Outputs:
    return [elmo(batch_to_ids(INPUTS["batch"]))]


def run_two_mixes(elmo: Elmo) -> Outputs:
    with torch.no_grad():
        mix = elmo.scalar_mix_1
        weights = INPUTS["second_mix"]["weights"][: mix.num_layers]
        mix.scalar_parameters.copy_(torch.tensor(weights, dtype=mix.scalar_parameters.dtype))  # 0.3, not float32's
        mix.gamma.fill_(INPUTS["second_mix"]["gamma"])
    return run_batch(elmo)


def run_batches(elmo: Elmo) -> Outputs:
    return [elmo(batch_to_ids(batch)) for batch in INPUTS["stateful_batches"]]


def run_nested(elmo: Elmo) -> Outputs:
    groups = INPUTS["nested"]
    ids = batch_to_ids([sentence for group in groups for sentence in group])  # (6, timesteps, 50)
    return [elmo(ids.view(len(groups), len(groups[0]), *ids.shape[1:]))]


def word_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The char ids and the word ids of the "words" case."""
    vocab, word_ids = INPUTS["vocab"], INPUTS["word_ids"]
    sentences = [[vocab[i] for i in row if i > 0] for row in word_ids]
    return batch_to_ids(sentences), torch.tensor(word_ids)


def run_words(elmo: Elmo) -> Outputs:
    return [elmo(*word_batch())]


RUNS: dict[str, Callable[[Elmo], Outputs]] = {
    "one": run_batch,
    "two_mixes": run_two_mixes,
    "stateful": run_batches,
    "reset": run_batches,
    "layer_norm": run_batch,
    "boundaries": run_batch,
    "layer_norm_boundaries": run_batch,
    "fixed_mix": run_batch,
    "nested": run_nested,
    "words": run_words,
}
GOLDEN_CASES = [
    (model, case) for model in MODELS for case in MANIFEST["models"][model]["max_abs_f32_vs_f64"] if case in RUNS
]


def theirs(arrays: dict[str, np.ndarray], case: str, key: str, n_batches: int) -> Outputs:
    """AllenNLP's outputs of ``case`` in ``expected.npz``'s layout, as ``Elmo`` returns them."""
    prefixes = [f"{case}.{key}"] if n_batches == 1 else [f"{case}.{key}.b{j}" for j in range(n_batches)]
    outputs = []
    for prefix in prefixes:
        reps = sorted(name for name in arrays if name.startswith(f"{prefix}.rep"))
        outputs.append({"elmo_representations": [arrays[name] for name in reps], "mask": arrays[f"{prefix}.mask"]})
    return outputs


def representations(outputs: Outputs) -> list[np.ndarray]:
    return [np.asarray(torch.as_tensor(r).detach()) for output in outputs for r in output["elmo_representations"]]


def test_the_fixtures_cover_every_case() -> None:
    assert {case for _, case in GOLDEN_CASES} == set(RUNS)
    assert len(MODELS) == 2


def test_batch_to_ids_matches_allennlp_on_tricky_tokens() -> None:
    with np.load(GOLDEN / "char_ids.npz") as golden:
        np.testing.assert_array_equal(batch_to_ids(INPUTS["batch"]).numpy(), golden["char_ids"])
        flat = [sentence for group in INPUTS["nested"] for sentence in group]
        np.testing.assert_array_equal(batch_to_ids(flat).numpy(), golden["char_ids.4d"].reshape(len(flat), -1, 50))
    tokens = [token for sentence in INPUTS["batch"] for token in sentence]
    assert "" in tokens and any(len(t.encode()) > 50 for t in tokens) and any(not t.isascii() for t in tokens)


def test_batch_to_ids_refuses_untokenized_sentences() -> None:
    with pytest.raises(TypeError, match="expected a sequence of str tokens"):
        batch_to_ids(["not split into tokens"])
    assert batch_to_ids([[], []]).shape == (2, 0, 50)  # AllenNLP: (2, 0)


@pytest.mark.parametrize("key", DTYPES)
@pytest.mark.parametrize(("model", "case"), GOLDEN_CASES)
def test_elmo_matches_allennlp(model: str, case: str, key: str) -> None:
    elmo = build(model, case, DTYPES[key])
    with torch.no_grad():
        ours = RUNS[case](elmo)
    arrays = expected(model)
    theirs_key, f32, f64 = (theirs(arrays, case, k, len(ours)) for k in (key, "f32", "f64"))
    for mine, golden in zip(ours, theirs_key, strict=True):
        np.testing.assert_array_equal(mine["mask"].numpy(), golden["mask"])
        assert [r.shape for r in representations([mine])] == [r.shape for r in golden["elmo_representations"]]
        assert all(r.dtype == DTYPES[key] for r in mine["elmo_representations"])
    if key == "f32":
        # as accurate as AllenNLP's own float32 run, both measured against its float64 run
        assert_as_accurate(representations(ours), representations(f32), representations(f64))
        return
    # float64: the same function of the same numbers, summed in other orders (see
    # tests/bilm/test_parity_allennlp.py); AllenNLP's float32 error scaled to float64.
    atol = float64_tolerance(representations(f32), representations(f64))
    for mine, golden in zip(representations(ours), representations(f64), strict=True):
        np.testing.assert_allclose(mine, golden, rtol=0, atol=atol)


def test_stateless_by_default_stateful_on_request() -> None:
    model = MODELS[0]
    stateless, stateful = build(model, "reset"), build(model, "stateful")
    assert not stateless.stateful and stateful.stateful
    assert not Elmo(*model_files(model), 1).stateful
    with torch.no_grad():
        first = run_batches(stateless)
        again = run_batches(stateless)
        carried = run_batches(stateful)
        fresh = build(model, "reset")
        last_alone = fresh(batch_to_ids(INPUTS["stateful_batches"][-1]))
    # a sentence's vectors never depend on earlier batches
    for a, b in zip(representations(first), representations(again), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(representations(first)[-1], last_alone["elmo_representations"][0].numpy())
    # stateful: the first batch starts from zeros, later ones do not
    np.testing.assert_array_equal(representations(first)[0], representations(carried)[0])
    assert not np.allclose(representations(first)[1], representations(carried)[1])
    stateful.reset_states()
    with torch.no_grad():
        np.testing.assert_array_equal(representations(run_batches(stateful))[1], representations(carried)[1])


@pytest.mark.parametrize("requires_grad", [False, True])
def test_gradients_reach_the_bilm_only_with_requires_grad(requires_grad: bool) -> None:
    elmo = Elmo(*model_files(MODELS[0]), 2, requires_grad=requires_grad, dropout=0.0)
    output = elmo(batch_to_ids(INPUTS["batch"]))
    sum(r.sum() for r in output["elmo_representations"]).backward()
    for mix in elmo.scalar_mixes:
        assert mix.scalar_parameters.grad is not None and mix.scalar_parameters.grad.abs().sum() > 0
        assert mix.gamma.grad is not None and mix.gamma.grad != 0
    bilm_grads = [p.grad for p in elmo.bilm.parameters()]
    if requires_grad:
        assert all(p.requires_grad for p in elmo.bilm.parameters())
        assert all(g is not None for g in bilm_grads)
        assert sum(float(g.abs().sum()) for g in bilm_grads if g is not None) > 0
    else:
        assert not any(p.requires_grad for p in elmo.bilm.parameters())
        assert all(g is None for g in bilm_grads)


def test_fixed_scalar_mix_parameters_are_not_trained() -> None:
    weights = INPUTS["fixed_mix"][: layers_of(MODELS[0])]
    elmo = Elmo(*model_files(MODELS[0]), 2, scalar_mix_parameters=weights)
    for mix in elmo.scalar_mixes:
        assert not mix.scalar_parameters.requires_grad and not mix.gamma.requires_grad
        torch.testing.assert_close(mix.scalar_parameters, torch.tensor(weights), rtol=0, atol=0)
    assert not any(p.requires_grad for p in elmo.parameters())
    with pytest.raises(ValueError, match=f"got 2 values for {layers_of(MODELS[0])} layers"):
        Elmo(*model_files(MODELS[0]), 1, scalar_mix_parameters=[0.0, 1.0])


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_in_training_mode(p: float) -> None:
    torch.manual_seed(0)
    elmo = Elmo(*model_files(MODELS[0]), 2, dropout=p)
    ids = batch_to_ids(INPUTS["batch"] * 20)
    with torch.no_grad():
        clean = elmo.eval()(ids)["elmo_representations"]
        noisy = elmo.train()(ids)["elmo_representations"]
    assert not torch.equal(noisy[0], noisy[1]), "each representation draws its own dropout mask"
    real = torch.stack(clean) != 0  # dropout's zeros are told apart where the value is not zero
    dropped = (torch.stack(noisy) == 0) & real
    n = int(real.sum())
    # The number dropped is Binomial(n, p): allow the deviation that a correct dropout exceeds with
    # probability 1e-6 (normal approximation; n is in the tens of thousands).
    z = NormalDist().inv_cdf(1 - 1e-6 / 2)
    assert abs(int(dropped.sum()) - n * p) <= z * math.sqrt(n * p * (1 - p)), (int(dropped.sum()), n, p)
    kept = real & ~dropped
    # survivors scaled by 1 / (1 - p): one rounding of the scale, one of the product
    torch.testing.assert_close(
        torch.stack(noisy)[kept], torch.stack(clean)[kept] / (1 - p), rtol=2 * FLOAT32_EPS, atol=0
    )


def test_get_output_dim() -> None:
    for model in MODELS:
        elmo = Elmo(*model_files(model), 1)
        projection_dim = MANIFEST["models"][model]["options"]["lstm"]["projection_dim"]
        assert elmo.get_output_dim() == 2 * projection_dim
        assert elmo(batch_to_ids([["a", "b"]]))["elmo_representations"][0].shape == (1, 2, 2 * projection_dim)


def test_a_model_name_or_directory_alone() -> None:
    shipped = Elmo(SHIPPED_MODEL, None, 1)
    assert shipped.get_output_dim() == shipped.bilm.options.output_dim
    by_directory = Elmo(str(GOLDEN / MODELS[0]), None, 1).eval()
    by_files = Elmo(*model_files(MODELS[0]), 1).eval()
    ids = batch_to_ids(INPUTS["batch"])
    with torch.no_grad():
        torch.testing.assert_close(
            by_directory(ids)["elmo_representations"][0], by_files(ids)["elmo_representations"][0], rtol=0, atol=0
        )
    with pytest.raises(ValueError, match="needs weight_file too"):
        Elmo(model_files(MODELS[0])[0], None, 1)


def test_module_instead_of_files() -> None:
    bilm = load_bilm(*model_files(MODELS[0])).requires_grad_(False)
    elmo = Elmo(None, None, 1, module=bilm).eval()
    assert elmo.bilm is bilm
    ids = batch_to_ids(INPUTS["batch"])
    with torch.no_grad():
        torch.testing.assert_close(
            elmo(ids)["elmo_representations"][0],
            build(MODELS[0], "one")(ids)["elmo_representations"][0],
            rtol=0,
            atol=0,
        )
    with pytest.raises(ValueError, match="Don't provide options_file or weight_file with module"):
        Elmo(model_files(MODELS[0])[0], None, 1, module=bilm)
    with pytest.raises(TypeError, match="must be an ElmoBiLm"):
        Elmo(None, None, 1, module=torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_requires_grad_is_the_modules_own_with_module() -> None:
    bilm = load_bilm(*model_files(MODELS[0]))  # trainable parameters, as AllenNLP then fine-tunes
    elmo = Elmo(None, None, 1, module=bilm, requires_grad=False)
    elmo(batch_to_ids([["a", "b"]]))["elmo_representations"][0].sum().backward()
    assert all(p.grad is not None for p in bilm.parameters())


def test_cached_vocabulary_serves_word_inputs() -> None:
    elmo = build(MODELS[0], "words")
    cache = elmo.bilm.char_encoder.token_cache
    assert cache is not None and len(cache) == len(set(INPUTS["vocab"])) + 3  # <S>, </S>, padding
    char_ids, word_ids = word_batch()
    with torch.no_grad():
        by_words = elmo(char_ids, word_ids)["elmo_representations"][0]
        assert cache.hits > 0 and cache.misses == 0
        nonsense = torch.zeros_like(char_ids)  # the char ids are not read when the words are known
        torch.testing.assert_close(elmo(nonsense, word_ids)["elmo_representations"][0], by_words, rtol=0, atol=0)
        elmo.bilm.char_encoder.cache_tokens(None)
        by_chars = elmo(char_ids)["elmo_representations"][0]
        exact = build(MODELS[0], "one", torch.float64)(char_ids)["elmo_representations"][0]
    # the cache encoded its words in another batch: float32 rounding only, against float64
    assert_as_accurate(by_words, by_chars, exact)
    np.testing.assert_array_equal(elmo(char_ids, word_ids)["mask"].numpy(), (word_ids > 0).numpy())


def test_word_inputs_outside_the_vocabulary_back_off_to_the_characters() -> None:
    elmo = build(MODELS[0], "words")
    char_ids, word_ids = word_batch()
    beyond = word_ids.clone()
    beyond[0, 0] = len(INPUTS["vocab"])
    with torch.no_grad():
        torch.testing.assert_close(
            elmo(char_ids, beyond)["elmo_representations"][0], elmo(char_ids)["elmo_representations"][0], rtol=0, atol=0
        )


def test_word_inputs_without_a_cached_vocabulary_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    elmo = build(MODELS[0], "one")
    char_ids, word_ids = word_batch()
    with caplog.at_level(logging.WARNING, logger="flair_elmo_modes.allennlp"), torch.no_grad():
        got = elmo(char_ids, word_ids)["elmo_representations"][0]
    assert "does not have a cached vocab" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(got, elmo(char_ids)["elmo_representations"][0], rtol=0, atol=0)


def test_words_in_three_dims() -> None:
    elmo = build(MODELS[0], "words")
    char_ids, word_ids = word_batch()
    with torch.no_grad():
        flat = elmo(char_ids, word_ids)
        nested = elmo(char_ids.unsqueeze(0), word_ids.unsqueeze(0))
    assert nested["mask"].shape == (1, *word_ids.shape)
    torch.testing.assert_close(nested["elmo_representations"][0][0], flat["elmo_representations"][0], rtol=0, atol=0)


def test_nested_inputs_with_sentence_boundaries_keep_their_shape() -> None:
    # AllenNLP views the (batch, timesteps + 2, dim) output as (..., timesteps, -1) here.
    elmo = build(MODELS[0], "boundaries")
    ids = batch_to_ids(INPUTS["batch"][:4]).view(2, 2, -1, 50)
    with torch.no_grad():
        output = elmo(ids)
    timesteps = ids.shape[2] + 2
    assert output["mask"].shape == (2, 2, timesteps)
    assert output["elmo_representations"][0].shape == (2, 2, timesteps, elmo.get_output_dim())


def test_a_batch_of_empty_sentences() -> None:
    elmo = build(MODELS[0], "one")
    with torch.no_grad():
        output = elmo(batch_to_ids([[], []]))
    assert output["elmo_representations"][0].shape == (2, 0, elmo.get_output_dim())
    assert output["mask"].shape == (2, 0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_output_representations must be >= 1, got 0"):
        Elmo(*model_files(MODELS[0]), 0)
    with pytest.raises(ValueError, match=r"shape \(batch, timesteps, 50\), got \(3, 50\)"):
        build(MODELS[0], "one")(torch.zeros(3, 50, dtype=torch.long))


def test_elmo_embedder_is_the_librarys() -> None:
    assert ElmoEmbedder is LibraryElmoEmbedder


def test_importing_the_allennlp_api_leaves_flair_out() -> None:
    modules = heavy_modules("from flair_elmo_modes.allennlp import Elmo, ElmoEmbedder, batch_to_ids")
    assert not modules & {"flair", "transformers"}
