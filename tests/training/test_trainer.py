import dataclasses
import hashlib
import json
import math
import os
import pickletools
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import batch_to_ids, load_bilm
from flair_elmo_modes.training import (
    StepInfo,
    TrainConfig,
    TrainingDataError,
    evaluate,
    load_language_model,
    train_bilm,
)
from flair_elmo_modes.training.checkpoint import check_same_checkpoint, write_checkpoint
from flair_elmo_modes.training.data import SPECIAL_TOKENS, EncodedCorpus, Vocabulary
from flair_elmo_modes.training.distributed import World
from flair_elmo_modes.training.export import write_json
from flair_elmo_modes.training.lm import BiLanguageModel
from flair_elmo_modes.training.shards import read_sentences
from tests.helpers import TINY_OPTIONS
from tests.training.conftest import write_corpus

pytestmark = pytest.mark.slow


def tiny_config(corpus_files: tuple[Path, Path], output_dir: Path, **changes: object) -> TrainConfig:
    train_file, dev_file = corpus_files
    config = TrainConfig(
        train_files=(str(train_file),),
        dev_files=(str(dev_file),),
        output_dir=output_dir,
        options=TINY_OPTIONS,
        cutoffs=(8,),
        batch_size=16,
        epochs=2,
        lr=5e-3,
        dropout=0.0,
        seed=7,
        progress=False,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def trained(corpus_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    config = tiny_config(corpus_files, tmp_path_factory.mktemp("run"))
    return config, train_bilm(config)


def test_training_lowers_the_dev_perplexity(trained, corpus_files: tuple[Path, Path]) -> None:
    config, result = trained
    torch.manual_seed(config.seed)
    model, vocab = load_language_model(result.model_dir)
    untrained = BiLanguageModel(TINY_OPTIONS, len(vocab), config.softmax, config.cutoffs).eval()
    dev = EncodedCorpus.build(read_sentences(corpus_files[1]), vocab)
    before, after = evaluate(untrained, dev), evaluate(model, dev)
    assert after.forward < 0.5 * before.forward and after.backward < 0.5 * before.backward
    assert [record["epoch"] for record in result.dev] == [1, 2]
    assert result.dev[1]["train_loss"] < result.dev[0]["train_loss"]
    # The reported dev perplexity is the exported model's: the export holds the trained weights
    # bitwise (test_export_loads_back_with_the_same_outputs) and evaluate() ran on the same dev
    # batches with the same kernels and threads: the same computation, so bitwise the same numbers.
    assert result.dev[-1]["dev_forward"] == after.forward and result.dev[-1]["dev_backward"] == after.backward
    assert result.steps == 2 * math.ceil(300 / 16) and result.epochs_completed == 2
    train = EncodedCorpus.build(read_sentences(corpus_files[0]), vocab)
    assert result.tokens_per_second > 0 and result.train_tokens == 2 * train.n_tokens
    saved = json.loads((config.output_dir / "result.json").read_text())
    assert saved["steps"] == result.steps and saved["config"]["options"] == TINY_OPTIONS.to_dict()


def test_export_loads_back_with_the_same_outputs(trained) -> None:
    config, result = trained
    checkpoint = torch.load(config.output_dir / "checkpoint.pt", weights_only=True)
    model, vocab = load_language_model(result.model_dir)
    in_memory = BiLanguageModel(TINY_OPTIONS, len(vocab), config.softmax, config.cutoffs).eval()
    in_memory.load_state_dict(checkpoint["model"])
    loaded = load_bilm(result.model_dir / "options.json", result.model_dir / "weights.hdf5").eval()
    # The export is lossless here: the weights are float32 already, and the forget biases, which go
    # through TF's b - 1 and back, stay in [0.5, 2] after this short training, where b - 1 and + 1
    # are exact (Sterbenz). So the loaded models compute what the trained one does: bitwise.
    for name, value in in_memory.bilm.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)
    char_ids = batch_to_ids([["the", "cat", "sat", "on", "the", "mat", "."], ["a", "dog"]])
    with torch.no_grad():
        expected = in_memory.bilm(char_ids).layers
        torch.testing.assert_close(loaded(char_ids).layers, expected, rtol=0, atol=0)
        torch.testing.assert_close(model.bilm(char_ids).layers, expected, rtol=0, atol=0)
        top = torch.randn(5, TINY_OPTIONS.projection_dim)
        expected_log_prob = in_memory.forward_softmax.log_prob(top)
        torch.testing.assert_close(model.forward_softmax.log_prob(top), expected_log_prob, rtol=0, atol=0)
    assert vocab.words == tuple(checkpoint["vocab"])
    names = ["SHA256SUMS", "lm_head.hdf5", "options.json", "weights.hdf5"]
    assert sorted(path.name for path in result.model_dir.iterdir()) == names
    # the sidecar lists the other three with their SHA-256, as sha256sum writes them
    sums = (result.model_dir / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    assert sums == [f"{hashlib.sha256((result.model_dir / n).read_bytes()).hexdigest()}  {n}" for n in names[1:]]
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in result.model_dir.iterdir())


def test_resume_after_interruption_continues_identically(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    changes = {"epochs": 2, "dropout": 0.2, "lr_schedule": "linear", "checkpoint_every": 4}
    reference = train_bilm(tiny_config(corpus_files, tmp_path / "whole", **changes))

    interrupted = tiny_config(corpus_files, tmp_path / "resumed", **changes)

    def interrupt(info: StepInfo) -> None:
        if info.step == 26:  # epoch 2, after the checkpoint at step 24
            assert info.epoch == 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_bilm(interrupted, on_step=interrupt)
    saved = torch.load(interrupted.output_dir / "checkpoint.pt", weights_only=True)
    assert saved["progress"]["step"] == 24 and saved["progress"]["epoch"] == 1
    resumed = train_bilm(interrupted)

    assert resumed.steps == reference.steps
    # the same steps on the same batches, with the RNG state restored, reach bitwise the same
    # parameters (below), so the same losses and dev perplexities, in the same order of summation
    assert resumed.dev == reference.dev
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    again = torch.load(interrupted.output_dir / "checkpoint.pt", weights_only=True)
    for name, value in whole["model"].items():
        torch.testing.assert_close(again["model"][name], value, rtol=0, atol=0, msg=name)


def test_resume_refuses_a_checkpoint_of_another_config(trained) -> None:
    config, _ = trained
    other = dataclasses.replace(config, options=dataclasses.replace(TINY_OPTIONS, cell_dim=32))
    with pytest.raises(ValueError, match=r"different config \(options: checkpoint"):
        train_bilm(other)


def test_max_steps_stops_and_still_exports(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    result = train_bilm(tiny_config(corpus_files, tmp_path, max_steps=3, epochs=5))
    assert result.steps == 3 and result.stopped_by == "max_steps" and result.epochs_completed == 0
    assert result.dev[-1]["step"] == 3 and (result.model_dir / "lm_head.hdf5").is_file()


def test_bad_training_input_gives_clear_errors(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="training text not found"):
        train_bilm(tiny_config(corpus_files, tmp_path / "a", train_files=tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="no tokens found"):
        train_bilm(tiny_config(corpus_files, tmp_path / "b", train_files=empty))
    with pytest.raises(TrainingDataError, match="no tokens found"):
        train_bilm(tiny_config(corpus_files, tmp_path / "c", dev_files=empty))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        tiny_config(corpus_files, tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="softmax must be one of"):
        tiny_config(corpus_files, tmp_path, softmax="sampled")


def test_rerunning_a_finished_run_restores_it_without_training(trained) -> None:
    config, result = trained
    again = train_bilm(config)
    assert again.steps == result.steps and again.dev == result.dev
    assert again.train_tokens == result.train_tokens


def test_rerunning_a_stopped_run_does_not_evaluate_twice(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    config = tiny_config(corpus_files, tmp_path, max_steps=2)
    first = train_bilm(config)
    again = train_bilm(config)
    assert again.steps == first.steps == 2 and again.dev == first.dev and len(again.dev) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"n_layers": 1},
        {"n_highway": 0, "activation": "relu"},
        {"cell_clip": 0.0, "proj_clip": 0.0, "use_skip_connections": False},
        {"n_layers": 3, "filters": ((2, 6),)},
    ],
)
def test_any_architecture_trains_and_exports(
    changes: dict[str, object], corpus_files: tuple[Path, Path], tmp_path: Path
) -> None:
    options = dataclasses.replace(TINY_OPTIONS, **changes)
    result = train_bilm(tiny_config(corpus_files, tmp_path, options=options, max_steps=2, dev_files=()))
    loaded = load_bilm(result.model_dir / "options.json", result.model_dir / "weights.hdf5")
    assert loaded.options == options and result.steps == 2 and result.dev == []


class RunsCode:
    """Unpickling this calls ``os.system``: what a planted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_resume_refuses_a_checkpoint_that_would_run_code(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    config = tiny_config(corpus_files, tmp_path / "run")
    config.output_dir.mkdir()
    marker = tmp_path / "marker"
    torch.save({"config": RunsCode(marker), "vocab": ["a"]}, config.output_dir / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint\.pt: not a readable training checkpoint .*posix\.system") as info:
        train_bilm(config)
    assert str(info.value).endswith("; delete it to start over") and "weights_only" not in str(info.value)
    assert not marker.exists()
    # The planted file is real: its pickle calls os.system (read with pickletools, never run).
    assert ("posix", "system") in pickled_globals(config.output_dir / "checkpoint.pt")


def pickled_globals(path: Path) -> set[tuple[str, str]]:
    """The ``(module, name)`` globals the pickle inside a ``torch.save`` file would import."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    found, strings = set(), []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
        elif opcode.name == "GLOBAL":
            found.add(tuple(argument.split(" ", 1)))
    return found


def drop_key(state: dict, key: str) -> dict:
    return {name: value for name, value in state.items() if name != key}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda state: [1, 2], "found a list; expected a dict with config, vocab, model"),
        (lambda state: drop_key(state, "vocab"), "'vocab' is missing"),
        (lambda state: drop_key(state, "rng_states"), "'rng_states' is missing"),
        (lambda state: {**state, "model": [1]}, "'model' is a list; expected a dict"),
        (lambda state: {**state, "vocab": [1, 2]}, "'vocab' holds something other than strings"),
        (lambda state: {**state, "progress": {**state["progress"], "extra": 1}}, "'progress' has keys"),
    ],
)
def test_resume_refuses_a_torch_file_that_is_not_our_checkpoint(trained, tmp_path: Path, make, reason: str) -> None:
    config, _ = trained
    state = torch.load(config.output_dir / "checkpoint.pt", weights_only=True)
    other = dataclasses.replace(config, output_dir=tmp_path)
    torch.save(make(state), tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError) as info:
        train_bilm(other)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'checkpoint.pt'}: not a readable training checkpoint ({reason}")
    assert message.endswith("; delete it to start over")


def test_a_checkpoint_that_could_not_be_resumed_is_not_written(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    class Factor:  # a callable object: LambdaLR puts its __dict__ into its state_dict
        def __init__(self) -> None:
            self.floor = np.float64(0.1)  # a float, but pickled as a numpy scalar

        def __call__(self, step: int) -> float:
            return 1.0

    config = tiny_config(corpus_files, tmp_path)
    model = BiLanguageModel(TINY_OPTIONS, 10, config.softmax, config.cutoffs)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Factor())
    vocab = Vocabulary(SPECIAL_TOKENS + tuple(f"w{i}" for i in range(7)))
    path = tmp_path / "checkpoint.pt"

    def state() -> dict:
        return {"vocab": list(vocab.words), "model": model.state_dict(), "scheduler": scheduler.state_dict()}

    with pytest.raises(TypeError, match=r"checkpoint\['scheduler'\]\['lr_lambdas'\]\[0\]\['floor'\] \(float64\)"):
        write_checkpoint(path, state())
    assert list(tmp_path.iterdir()) == []
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    write_checkpoint(path, state())
    assert torch.load(path, weights_only=True)["vocab"] == list(vocab.words)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_result_json_is_strict_json_with_null_for_nan(tmp_path: Path) -> None:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    path = tmp_path / "result.json"
    write_json(path, {"train_loss": math.nan, "dev": [{"dev_forward": math.inf, "step": 3}], "lr": 0.5})
    assert json.loads(path.read_text(), parse_constant=no_constants) == {
        "train_loss": None,
        "dev": [{"dev_forward": None, "step": 3}],
        "lr": 0.5,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_long_lines_are_split_so_no_step_sees_more_than_max_sentence_tokens(
    corpus_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """A 100,000-token line needed about 10 GiB in one step; now it is cut into pieces."""
    text = tmp_path / "train.txt"
    text.write_text(corpus_files[0].read_text(encoding="utf-8") + " ".join(["the cat sat"] * 2000) + "\n")
    steps: list[StepInfo] = []
    config = tiny_config(
        corpus_files, tmp_path / "run", train_files=text, dev_files=(), epochs=1, max_sentence_tokens=50
    )
    result = train_bilm(config, on_step=steps.append)
    assert max(info.longest for info in steps) == 50  # the pieces of the 6,000-token line
    assert [info.step for info in steps] == list(range(1, result.steps + 1))
    assert sum(info.tokens for info in steps) == result.train_tokens
    assert result.train_tokens == sum(len(s) + 1 for s in read_sentences(corpus_files[0])) + 6000 + 120


def test_check_stops_training_between_steps_and_keeps_the_last_checkpoint(
    corpus_files: tuple[Path, Path], tmp_path: Path
) -> None:
    class Stop(Exception):
        pass

    calls = {"n": 0}

    def check() -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise Stop

    config = tiny_config(corpus_files, tmp_path, checkpoint_every=4, dev_files=())
    with pytest.raises(Stop):
        train_bilm(config, check=check)
    # checks before steps 1-4, at the rename of the step-4 checkpoint, before steps 5-8, and the 10th at
    # the rename of the step-8 checkpoint: that one is not renamed into place, the step-4 one stays
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["progress"]["step"] == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]


def three_shards(directory: Path) -> str:
    """The test corpus as three shards, named by a glob."""
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        write_corpus(directory / f"part-{k}.txt", 100, seed=20 + k)
    return str(directory / "part-*.txt")


def test_a_run_resumed_mid_shard_takes_the_steps_of_an_uninterrupted_one(
    corpus_files: tuple[Path, Path], tmp_path: Path
) -> None:
    # 300 sentences through a 40-sentence buffer: a checkpoint at step 6 lies inside the second shard
    changes = {"train_files": three_shards(tmp_path / "text"), "shuffle_buffer": 40, "checkpoint_every": 6}
    changes.update(epochs=2, dropout=0.2, dev_files=())
    reference = train_bilm(tiny_config(corpus_files, tmp_path / "whole", **changes))
    interrupted = tiny_config(corpus_files, tmp_path / "resumed", **changes)
    seen: list[StepInfo] = []

    def interrupt(info: StepInfo) -> None:
        seen.append(info)
        if info.step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_bilm(interrupted, on_step=interrupt)
    assert torch.load(interrupted.output_dir / "checkpoint.pt", weights_only=True)["progress"]["step"] == 6
    assert all(info.sentences for info in seen[6:9])  # the batches after the checkpoint were trained on
    resumed = train_bilm(interrupted)
    assert resumed.steps == reference.steps and resumed.shards == 3
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]
    again = torch.load(interrupted.output_dir / "checkpoint.pt", weights_only=True)["model"]
    for name, value in whole.items():
        torch.testing.assert_close(again[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_cpu(corpus_files: tuple[Path, Path], tmp_path: Path, precision: str) -> None:
    losses: list[float] = []
    config = tiny_config(corpus_files, tmp_path, precision=precision, epochs=3, lr=1e-2, dev_files=())
    result = train_bilm(config, on_step=lambda info: losses.append(info.loss))
    assert result.precision == precision and len(losses) == result.steps
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5  # the loss falls
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["model"]["bilm.lstm.weight_hh_l0"].dtype == torch.float32  # autocast keeps float32 weights
    assert (state["scaler"] != {}) == (precision == "fp16")  # fp16's gradient scaler is checkpointed


def test_a_vocabulary_file_sets_the_output_words(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    words = (*SPECIAL_TOKENS, "the", "cat", "dog", ".")
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    result = train_bilm(tiny_config(corpus_files, tmp_path / "run", vocab_file=vocab_file, max_steps=2))
    _, vocab = load_language_model(result.model_dir)
    assert vocab.words == words and result.vocab_size == len(words)


def test_init_from_starts_the_biLM_from_a_model(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    base = train_bilm(tiny_config(corpus_files, tmp_path / "base", max_steps=3, dev_files=()))
    before = load_bilm(base.model_dir / "options.json", base.model_dir / "weights.hdf5").state_dict()
    # the softmax warm-up leaves the biLM as it was; the new softmax learns
    domain = tmp_path / "domain.txt"
    domain.write_text("the red cat ran under a rug .\n" * 50, encoding="utf-8")
    adapted = train_bilm(
        tiny_config(
            corpus_files,
            tmp_path / "warm",
            train_files=domain,
            dev_files=(),
            options=None,
            init_from=str(base.model_dir),
            softmax_warmup_steps=3,
            max_steps=3,
        )
    )
    after = load_bilm(adapted.model_dir / "options.json", adapted.model_dir / "weights.hdf5").state_dict()
    for name, value in before.items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=name)
    assert adapted.vocab_size == len(SPECIAL_TOKENS) + 8  # the domain text's words
    # after the warm-up the biLM moves too
    moved = train_bilm(
        tiny_config(corpus_files, tmp_path / "moved", train_files=domain, dev_files=(), options=None,
                    init_from=str(base.model_dir), softmax_warmup_steps=1, max_steps=3)
    )  # fmt: skip
    state = load_bilm(moved.model_dir / "options.json", moved.model_dir / "weights.hdf5").state_dict()
    # Adam moves a weight by about lr = 5e-3 a step; 1e-4 is far above float32 rounding (~1e-7 here)
    assert max(float((state[n] - before[n]).abs().max()) for n in before) > 1e-4
    # the export's own vocabulary and softmax, reused
    reused = train_bilm(
        tiny_config(corpus_files, tmp_path / "reused", train_files=domain, dev_files=(), options=None,
                    init_from=str(base.model_dir), reuse_softmax=True, max_steps=2)
    )  # fmt: skip
    assert load_language_model(reused.model_dir)[1] == load_language_model(base.model_dir)[1]


def test_init_from_refuses_what_is_not_a_model_or_another_architecture(
    corpus_files: tuple[Path, Path], tmp_path: Path
) -> None:
    base = train_bilm(tiny_config(corpus_files, tmp_path / "base", max_steps=1, dev_files=()))
    with pytest.raises(ValueError, match=r"--init-from .*: not a model"):
        train_bilm(tiny_config(corpus_files, tmp_path / "a", init_from=str(tmp_path / "nothing-here")))
    with pytest.raises(ValueError, match=r"architecture differs .*cell_dim: given 32, model 24"):
        other = dataclasses.replace(TINY_OPTIONS, cell_dim=32)
        train_bilm(tiny_config(corpus_files, tmp_path / "b", options=other, init_from=str(base.model_dir)))
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "options.json").write_bytes((base.model_dir / "options.json").read_bytes())
    (tmp_path / "published" / "weights.hdf5").write_bytes((base.model_dir / "weights.hdf5").read_bytes())
    with pytest.raises(ValueError, match=r"--reuse-softmax needs .*lm_head\.hdf5.*published models hold no softmax"):
        train_bilm(
            tiny_config(
                corpus_files, tmp_path / "c", options=None, init_from=str(tmp_path / "published"), reuse_softmax=True
            )
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_processes_that_see_different_checkpoints_are_stopped(tmp_path: Path) -> None:
    class TwoMachines(World):  # rank 1 is on a machine whose --output holds no checkpoint
        def gather(self, value: object) -> list[object]:
            return [value, -1]

    with pytest.raises(ValueError, match=r"different checkpoints \(rank 0: step 12, rank 1: none\).*every machine"):
        check_same_checkpoint(TwoMachines(0, 2), {"progress": {"step": 12}}, tmp_path / "c.pt")
    check_same_checkpoint(World(), None, tmp_path / "c.pt")  # one process: nothing to compare
