"""``benchmarks/downstream``: the experiment's own pieces, its command line, then a smoke run.

Everything runs offline: Brown-format and WNUT-format samples are written to a temporary
directory and the biLM is a small random model in the official layout. The data loaders and
splits are tested in ``test_corpora.py``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings

from benchmarks import corpora
from benchmarks.downstream import precision, report, run, state
from benchmarks.downstream.embeddings import BatchedCharacterEmbeddings, char_dictionary
from flair_elmo_modes.allennlp import Elmo, batch_to_ids
from flair_elmo_modes.bilm.fast.derived import track_parameters
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.layer_cache import LayerCache
from flair_elmo_modes.runner import BiLmRunner
from tests.helpers import (
    BF16_MAY_WARN,
    FLOAT32_EPS,
    FLOAT64_EPS,
    TINY_OPTIONS,
    assert_as_accurate,
    random_bilm,
    write_random_model,
)

# ----------------------------------------------------------------------------------------------
# data -> Flair


def test_ner_sentences_carry_spans(wnut_file: Path) -> None:
    tagged = corpora.read_wnut(wnut_file)[0]
    sentence = run.to_flair([tagged], "ner")[0]
    spans = [(span.tokens[0].idx - 1, span.tokens[-1].idx, span.tag) for span in sentence.get_spans("ner")]
    assert spans == corpora.bio_spans(tagged.tags)
    pos = run.to_flair([corpora.TaggedSentence(("a", "b"), ("at", "nn"), "ca01", 0)], "pos")[0]
    assert [token.get_label("pos").value for token in pos] == ["at", "nn"]


def test_oov_is_exact_text_absent_from_training() -> None:
    train = [corpora.TaggedSentence(("The", "dog", "runs"), ("at", "nn", "vbz"), "ca01", 0)]
    test = [corpora.TaggedSentence(("the", "dog", "sleeps", "."), ("at", "nn", "vbz", "."), "ca02", 0)]
    assert run.oov_mask(test, train) == [[True, False, True, True]]


# ----------------------------------------------------------------------------------------------
# baseline character features and the command line


def test_batched_character_embeddings_equal_flairs() -> None:
    # Flair's class gives tokens with the same character ids in a sentence the same vector (at best):
    # the sample has none, and characters unknown to the dictionary (ü, 😀)
    sentences = [Sentence("The quick brown fox jumps".split()), Sentence("ab bb ündër 😀 x".split())]
    dictionary = char_dictionary(sentences[:1])
    reference = CharacterEmbeddings(path_to_char_dict=dictionary)
    batched = BatchedCharacterEmbeddings(path_to_char_dict=dictionary)
    batched.load_state_dict(reference.state_dict())
    exact = copy.deepcopy(reference).double()

    def embed(embeddings: CharacterEmbeddings) -> torch.Tensor:
        for sentence in sentences:
            sentence.clear_embeddings()
        embeddings.embed(sentences)
        return torch.stack([token.get_embedding().detach().clone() for sentence in sentences for token in sentence])

    expected, got, float64 = embed(reference), embed(batched), embed(exact)
    assert float64.dtype == torch.float64
    # one LSTM call for all tokens instead of one per sentence: other batches, float32 rounding
    # only, checked against a float64 evaluation of Flair's class
    assert_as_accurate(got, expected, float64)


@pytest.mark.parametrize(("text", "seeds"), [("3", (1, 2, 3)), ("1", (1,)), ("7,11", (7, 11))])
def test_parse_seeds(text: str, seeds: tuple[int, ...]) -> None:
    assert run.parse_seeds(text) == seeds


def test_summary_is_mean_and_sample_std() -> None:
    runs = [
        {"task": "pos", "config": "top", "seed": s, "accuracy": a, "oov_accuracy": o, "train_seconds": 1.0,
         "embedding_length": 8}
        for s, a, o in ((1, 0.8, 0.5), (2, 0.9, 0.7))
    ]  # fmt: skip
    entry = report.summarise(runs)["pos"]["top"]
    # mean and sample std of the floats 0.8 and 0.9 (each half an ulp from its decimal): 0.85 within
    # 2 half-ulps and a last rounding; 0.1 / sqrt(2) within the inputs' error 1.7 half-ulps over sqrt(2)
    # and a few roundings (statistics sums exactly): a few FLOAT64_EPS, far below any formula error
    assert entry["accuracy"]["mean"] == pytest.approx(0.85, rel=0, abs=4 * FLOAT64_EPS)
    assert entry["accuracy"]["std"] == pytest.approx(0.1 / math.sqrt(2), rel=0, abs=16 * FLOAT64_EPS)
    assert entry["oov_accuracy"]["n"] == 2


def test_missing_corpus_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    write_random_model(model_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = run.main(["--smoke", "--task", "pos", "--model", str(model_dir), "--brown-dir", str(empty),
                     "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and f"{empty}: no Brown files" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# the smoke run


@pytest.mark.slow
def test_smoke_run_writes_the_report(tmp_path: Path, brown_dir: Path, wnut_file: Path) -> None:
    model_dir = tmp_path / "model"
    write_random_model(model_dir)
    split = {"train": ["ca01", "ca02", "ca03", "cb01"], "dev": ["ca04"], "test": ["ca05", "cb02", "cb03"]}
    (model_dir / "split.json").write_text(json.dumps(split), encoding="utf-8")
    out = tmp_path / "results"
    threads = torch.get_num_threads()
    code = run.main(["--smoke", "--model", str(model_dir), "--brown-dir", str(brown_dir), "--threads", "3",
                     "--wnut-file", str(wnut_file), "--out", str(out), "--max-test-sentences", "8"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "downstream.json").read_text(encoding="utf-8"))
    # it ran with --threads and restored the caller's count
    assert result["hardware"]["torch_threads"] == 3 and torch.get_num_threads() == threads
    assert (out / "downstream.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "downstream.md").read_text(encoding="utf-8")

    assert len(result["runs"]) == 2 * len(report.CONFIGS)
    assert {(r["task"], r["config"]) for r in result["runs"]} == {(t, c) for t in report.TASKS for c in report.CONFIGS}
    for record in result["runs"]:
        scores = [record["accuracy"], record["oov_accuracy"]] if record["task"] == "pos" else [record["f1"]]
        assert all(0.0 <= score <= 1.0 for score in scores)
    # OOV: test tokens whose text is in none of the tagger's training sentences (all of the train files here)
    vocabulary = {t for f in split["train"] for s in corpora.read_brown_file(brown_dir / f) for t in s.tokens}
    test_tokens = [t for f in result["data"]["pos"]["files"]["test"]
                   for s in corpora.read_brown_file(brown_dir / f) for t in s.tokens]  # fmt: skip
    assert result["data"]["pos"]["test_oov_tokens"] == sum(t not in vocabulary for t in test_tokens) > 0
    # the POS test set is whole files the LM's split.json holds out
    pos = result["data"]["pos"]
    assert pos["lm_split"].endswith("split.json")
    assert set(pos["files"]["test"]) <= set(split["test"]) and pos["files"]["dev"] == ["ca04"]
    assert pos["test"]["sentences"] == 6 * len(pos["files"]["test"])
    assert set(pos["files"]["train"]) <= set(split["train"])
    # every sentence's layers were computed once, before training: no biLM run afterwards
    assert result["cache_misses_after_fill"] == 0 and result["cache_hits"] > 0
    assert result["cache"]["cached_sentences"] <= sum(result["data"][t][p]["sentences"] for t in ("pos", "ner")
                                                      for p in ("train", "dev", "test"))  # fmt: skip
    # mix learns a distribution over the 3 layers, reported per task
    mix = result["summary"]["ner"]["mix"]
    # a float32 softmax of three weights: each within 3 half-ulps (exp, sum, division) of its exact
    # value, so their sum (exactly 1 in exact arithmetic) within 3 half-ulps of 1; 4 * FLOAT32_EPS
    assert len(mix["mix_weights"]) == 3 and sum(mix["mix_weights"]) == pytest.approx(1.0, rel=0, abs=4 * FLOAT32_EPS)
    for config in report.CONFIGS:
        assert f"| {report.CONFIG_LABELS[config]} |" in table

    # the report can be redrawn from the JSON alone
    redrawn = tmp_path / "redrawn"
    assert run.main(["--from-json", str(out / "downstream.json"), "--out", str(redrawn)]) == 0
    assert (redrawn / "downstream.md").read_text(encoding="utf-8") == table
    assert (redrawn / "downstream.png").stat().st_size > 0

    # runs of one task each, side by side, merge into the same summary
    parts = []
    for task in report.TASKS:
        part = {**result, "settings": {**result["settings"], "tasks": [task]}}
        part["data"] = {task: result["data"][task]}
        part["runs"] = [record for record in result["runs"] if record["task"] == task]
        parts.append(part)
    merged = report.merge_reports(parts)
    assert merged["summary"] == result["summary"] and merged["settings"]["tasks"] == list(report.TASKS)
    assert merged["cache_hits"] == 2 * result["cache_hits"]  # each part counts its own look-ups
    with pytest.raises(ValueError, match="share a task"):
        report.merge_reports([parts[0], parts[0]])


def test_mix_ln_is_the_mix_of_normalised_layers_on_request_only() -> None:
    assert "mix-ln" not in report.CONFIGS  # the default run is the paper's comparison
    assert run.parse_configs("mix-ln,baseline+mix-ln") == ("mix-ln", "baseline+mix-ln")
    with pytest.raises(Exception, match="unknown configuration"):
        run.parse_configs("mix-norm")
    bilm = ElmoBiLm(TINY_OPTIONS)
    shared = run.SharedElmo("tiny", bilm, cache_size=0)
    normalised, plain = shared.embeddings("mix-ln"), shared.embeddings("mix")
    assert normalised.layer_mode.spec == plain.layer_mode.spec == "mix"
    assert normalised.mix.layer_norm and not plain.mix.layer_norm


@BF16_MAY_WARN
@pytest.mark.slow
def test_precision_study_smoke_run(tmp_path: Path, brown_dir: Path) -> None:
    model_dir = tmp_path / "model"
    write_random_model(model_dir)
    split = {"train": ["ca01", "ca02", "ca03", "cb01"], "dev": ["ca04"], "test": ["ca05", "cb02", "cb03"]}
    (model_dir / "split.json").write_text(json.dumps(split), encoding="utf-8")
    out = tmp_path / "results"
    code = precision.main(["--smoke", "--model", str(model_dir), "--brown-dir", str(brown_dir), "--out", str(out),
                           "--max-test-sentences", "8"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "downstream_precision.json").read_text(encoding="utf-8"))
    assert {(r["config"], r["way"]) for r in result["runs"]} == {(c, w) for c in ("all", "mix") for w in precision.WAYS}
    test_sentences = result["data"]["pos"]["test"]["sentences"]
    for record in result["runs"]:
        # each evaluation read every test sentence from its own precision's cache, and ran no biLM
        assert record["cache_lookups"][record["tested_on"]] == {"hits": test_sentences, "misses": 0}
        other = "fp32" if record["tested_on"] == "bf16" else "bf16"
        assert record["cache_lookups"][other] == {"hits": 0, "misses": 0}
    # bf16 did change the layers, by about bf16's rounding (8 bits: 2**-9 relative), not more
    layers = result["layers"]["per_layer"]
    assert len(layers) == 3 and all(0 < row["relative_l2_diff"] < 0.05 for row in layers)
    # the differences are those of the runs, per seed, in points
    runs = {(r["config"], r["way"]): r for r in result["runs"]}
    difference = result["summary"]["all"]["differences"]["bf16"]["accuracy"]["per_seed"]["1"]
    assert difference == pytest.approx(100 * (runs["all", "bf16"]["accuracy"] - runs["all", "fp32"]["accuracy"]))
    table = (out / "downstream_precision.md").read_text(encoding="utf-8")
    assert "| ELMo mix | (b) fp32-trained, evaluated on bf16 |" in table


def test_stateful_cache_holds_what_allennlp_elmo_stateful_gives() -> None:
    bilm = random_bilm()
    track_parameters(bilm)
    texts = [["The", "jury", "said", "."], ["It", "was", "late"], ["Yes", "."], ["The", "city", "voted", "."],
             ["No", "."], ["The", "jury", "said", "."]]  # fmt: skip
    sentences = [Sentence(tokens) for tokens in texts]
    stateful, stateless = LayerCache(10), LayerCache(10)
    info = state.fill_in_order(BiLmRunner(bilm, stateful=True), stateful, {"test": sentences}, batch_size=2)
    state.fill_in_order(BiLmRunner(bilm), stateless, {"test": sentences}, batch_size=2)
    # the repeat of the first sentence keeps its first layers, though its own (other context) differ
    assert info["distinct_sentences"] == len(stateful) == 5
    assert info["parts"]["test"]["repeats"] == 1 and info["parts"]["test"]["repeat_max_abs_diff"] > 0
    # the top layer is what AllenNLP's Elmo(stateful=True) gives in the same batches
    top_only = [-1e4] * (bilm.options.num_output_layers - 1) + [1e4]  # softmax: exactly one-hot
    elmo = Elmo(None, None, 1, dropout=0.0, scalar_mix_parameters=top_only, module=bilm, stateful=True)
    with torch.no_grad():
        for start in range(0, len(texts), 2):
            batch = texts[start : start + 2]
            vectors = elmo(batch_to_ids(batch))["elmo_representations"][0]
            for row, tokens in enumerate(batch):
                if start + row < 5:
                    torch.testing.assert_close(stateful.get(tokens)[-1], vectors[row, : len(tokens)])
    for i, tokens in enumerate(texts[:5]):
        carried, fresh = stateful.get(tokens), stateless.get(tokens)
        assert torch.equal(carried[0], fresh[0])  # the character CNN has no state
        if i < 2:
            assert torch.equal(carried, fresh)  # the first batch starts from zero state
        else:
            assert (carried[1:] - fresh[1:]).abs().max() > 1e-3


@pytest.mark.slow
def test_state_study_smoke_run(tmp_path: Path, brown_dir: Path) -> None:
    model_dir = tmp_path / "model"
    write_random_model(model_dir)
    split = {"train": ["ca01", "ca02", "ca03", "cb01"], "dev": ["ca04"], "test": ["ca05", "cb02", "cb03"]}
    (model_dir / "split.json").write_text(json.dumps(split), encoding="utf-8")
    out = tmp_path / "results"
    code = state.main(["--smoke", "--model", str(model_dir), "--brown-dir", str(brown_dir), "--out", str(out),
                       "--max-test-sentences", "8", "--batch-size", "4"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "downstream_state.json").read_text(encoding="utf-8"))
    assert {(r["config"], r["way"]) for r in result["runs"]} == {(c, w) for c in ("all", "mix") for w in state.WAYS}
    test_sentences = result["data"]["pos"]["test"]["sentences"]
    assert test_sentences > 4  # more than one batch: the state is carried
    for record in result["runs"]:
        # training and each evaluation read their kind's caches only, and ran no biLM
        assert record["train_cache_lookups"]["misses"] == 0
        assert record["cache_lookups"][record["tested_on"]] == {"hits": test_sentences, "misses": 0}
        other = "stateless" if record["tested_on"] == "stateful" else "stateful"
        assert record["cache_lookups"][other] == {"hits": 0, "misses": 0}
    # the carried state changes the LSTM layers, not the character CNN's
    layers = result["layers"]["per_layer"]
    assert len(layers) == 3 and layers[0]["relative_l2_diff"] < 1e-6
    assert all(row["relative_l2_diff"] > 1e-3 for row in layers[1:])
    runs = {(r["config"], r["way"]): r for r in result["runs"]}
    difference = result["summary"]["all"]["differences"]["stateful-on-stateless-vs-stateful"]["accuracy"]
    assert difference["per_seed"]["1"] == pytest.approx(
        100 * (runs["all", "stateful-on-stateless"]["accuracy"] - runs["all", "stateful"]["accuracy"])
    )
    table = (out / "downstream_state.md").read_text(encoding="utf-8")
    assert "| ELMo mix | (d) stateful-trained, evaluated on stateless |" in table
    assert "| ELMo all | (d) − (c) | accuracy |" in table
