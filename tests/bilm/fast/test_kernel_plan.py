"""The measured kernel plan: candidates, the accuracy rule, the caches in memory and on disk."""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.bilm.fast import kernel_plan, onednn
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.fast.kernels import ONEDNN, TORCH_IN_PLACE, candidates, kernel_name
from flair_elmo_modes.bilm.lstm import BidirectionalLstm, LstmState
from flair_elmo_modes.bilm.lstm_cell import TORCH
from flair_elmo_modes.bilm.precision import Precision, computing_in, dtype_of
from tests.bilm.helpers import needs_onednn
from tests.helpers import ALIGNED_OPTIONS, CONTRACTING_SCALE, assert_as_accurate, random_bilm, tiny_options


@pytest.fixture
def plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty plan directory, and a process without plan entries (as a fresh process)."""
    monkeypatch.setenv(kernel_plan.DIRECTORY_VARIABLE, str(tmp_path))
    monkeypatch.setattr(kernel_plan, "PLAN", kernel_plan.KernelPlan())
    return tmp_path


def an_lstm(seed: int = 3) -> BidirectionalLstm:
    return random_bilm(tiny_options(cell_dim=40, projection_dim=12), seed=seed, scale=CONTRACTING_SCALE).lstm


def forward(lstm: BidirectionalLstm, rows: int = 5) -> torch.Tensor:
    inputs = torch.randn(rows, 7, 12, generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        return lstm(inputs, torch.full((rows,), 7))[0]


def test_rows_buckets_are_powers_of_two_up_to_the_cap() -> None:
    assert [kernel_plan.rows_bucket(n) for n in (0, 1, 2, 3, 4, 7, 8, 31, 32, 33, 255)] == [
        1, 1, 2, 2, 4, 4, 8, 16, 32, 32, 128,
    ]  # fmt: skip
    assert kernel_plan.rows_bucket(10_000) == kernel_plan.MAX_BUCKET


@needs_onednn
def test_the_plan_takes_the_fastest_qualifying_candidate_and_keeps_it_on_disk(plans: Path) -> None:
    lstm = an_lstm()
    forward(lstm)
    (plan_path,) = plans.glob("*.json")
    plan = json.loads(plan_path.read_text())
    assert plan["format"] == kernel_plan.FORMAT and plan["machine"] == kernel_plan.machine()
    (entry,) = plan["entries"].values()
    measured = entry["measured"]
    assert list(measured) == candidates(lstm.cell_dim, lstm.projection_dim, torch.zeros(1))
    assert measured[TORCH_IN_PLACE]["qualifies"]  # the plain kernel is the reference of the rule
    qualified = {name: m["seconds"] for name, m in measured.items() if m["qualifies"]}
    assert entry["kernel"] == min(qualified, key=qualified.__getitem__)
    assert entry["workload"]["rows"] == 4 and entry["workload"]["threads"] == torch.get_num_threads()

    # A new process reads the file and measures nothing; another bucket is measured and added.
    kernel_plan.PLAN = kernel_plan.KernelPlan()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel_plan, "measure", lambda *args: pytest.fail("measured a planned workload"))
        forward(lstm)
    forward(lstm, rows=16)
    assert len(json.loads(plan_path.read_text())["entries"]) == 2


@needs_onednn
def test_a_kernel_outside_the_accuracy_rule_is_never_chosen(plans: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # oneDNN made fast and inaccurate: every other run waits, and oneDNN's outputs get an error of
    # 100x float32 rounding. The rule must refuse it although it is the fastest.
    timed_run = kernel_plan._timed_run

    def sabotaged(kernel, inputs, rows, block_steps):  # type: ignore[no-untyped-def]
        run = timed_run(kernel, inputs, rows, block_steps)
        if kernel.name == ONEDNN:
            return lambda: run() * (1 + 100 * torch.finfo(torch.float32).eps)
        return lambda: (time.sleep(0.01), run())[1]

    monkeypatch.setattr(kernel_plan, "_timed_run", sabotaged)
    forward(an_lstm())
    (entry,) = kernel_plan.PLAN.entries().values()
    assert entry["measured"][ONEDNN]["seconds"] < entry["measured"][TORCH_IN_PLACE]["seconds"]
    assert not entry["measured"][ONEDNN]["qualifies"]
    assert entry["kernel"] == TORCH_IN_PLACE


@needs_onednn
@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"format": 999, "entries": {}}), "entry naming a kernel that cannot run"],
)
def test_a_damaged_plan_is_measured_again_never_used(
    plans: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    lstm = an_lstm()
    forward(lstm)
    (plan_path,) = plans.glob("*.json")
    if content.startswith("entry"):
        plan = json.loads(plan_path.read_text())
        (entry,) = plan["entries"].values()
        entry["kernel"] = "rm -rf /"
        content = json.dumps(plan)
    plan_path.write_text(content)
    kernel_plan.PLAN = kernel_plan.KernelPlan()
    with caplog.at_level(logging.WARNING, logger=kernel_plan.__name__):
        forward(lstm)
    (entry,) = json.loads(plan_path.read_text())["entries"].values()
    assert entry["kernel"] in candidates(lstm.cell_dim, lstm.projection_dim, torch.zeros(1))
    if not content.startswith('{"format": 1'):
        assert str(plan_path) in caplog.text


def test_the_plan_file_is_per_machine(plans: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = kernel_plan.plan_file()
    other = "AVX512_CORE" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other)  # other kernels run: another machine's plan
    assert kernel_plan.plan_file() != here and kernel_plan.plan_file().parent == plans


@needs_onednn
def test_the_switches_bypass_the_plan(plans: Path) -> None:
    lstm, like = an_lstm(), torch.zeros(1)
    with fast_paths(planned=False):
        forward(lstm)
    with fast_paths(batch_invariant=True):
        forward(lstm)
    with fast_paths(kernel=ONEDNN):
        forward(lstm)
    with fast_paths(onednn=False):  # one candidate: nothing to choose
        forward(lstm)
    assert not list(plans.glob("*.json"))
    with fast_paths(planned=False):
        assert kernel_name(40, 12, 5, like) == TORCH_IN_PLACE
    assert kernel_name(40, 12, 5, like, grad=True) == TORCH


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_candidate_kernel_is_as_accurate_as_its_plain_kernel(precision: Precision) -> None:
    # The rule the plan applies, checked on whole forwards: ragged rows, every layer, final state.
    # Under bf16 the float32 candidates are held to the plain bf16 kernel too (and pass easily).
    lstm = random_bilm(ALIGNED_OPTIONS, seed=11, scale=CONTRACTING_SCALE).lstm
    generator = torch.Generator().manual_seed(4)
    lengths = torch.tensor([13, 1, 9, 13, 4, 0, 7, 12, 13, 2, 5, 11, 3, 13, 8, 6, 10])
    inputs = torch.randn(len(lengths), 13, ALIGNED_OPTIONS.projection_dim, generator=generator)
    with torch.no_grad():
        exact = flat(copy.deepcopy(lstm).double()(inputs.double(), lengths))
    with computing_in(precision), torch.no_grad():
        names = candidates(lstm.cell_dim, lstm.projection_dim, inputs)
        outputs = {}
        for name in names:
            with fast_paths(kernel=name):
                outputs[name] = flat(lstm(inputs, lengths))
    assert len(names) > 1 or not onednn.usable(inputs)
    for name in names[1:]:
        for got, plain, want in zip(outputs[name], outputs[names[0]], exact, strict=True):
            assert_as_accurate(got, plain, want, dtype=dtype_of(precision))


def flat(output: tuple[torch.Tensor, LstmState]) -> list[torch.Tensor]:
    """A forward's outputs and final state as a list of tensors."""
    return [output[0], *output[1]]


@needs_onednn
def test_a_plan_directory_that_cannot_be_written_leaves_the_plan_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a file, not a directory"
    blocked.write_text("")
    monkeypatch.setenv(kernel_plan.DIRECTORY_VARIABLE, str(blocked / "plans"))
    monkeypatch.setattr(kernel_plan, "PLAN", kernel_plan.KernelPlan())
    lstm = an_lstm()
    with caplog.at_level(logging.WARNING, logger=kernel_plan.__name__):
        expected = forward(lstm)
        forward(lstm, rows=16)
    assert caplog.text.count("cannot be kept on disk") == 1  # said once
    with pytest.MonkeyPatch.context() as patch:  # the entries stay in memory: nothing measured again
        patch.setattr(kernel_plan, "measure", lambda *args: pytest.fail("measured a planned workload"))
        torch.testing.assert_close(forward(lstm), expected, rtol=0, atol=0)


@needs_onednn
def test_a_plan_measured_on_a_busy_machine_is_marked_and_kept(plans: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flair_elmo_modes.system import measured_plan

    monkeypatch.setattr(kernel_plan, "load_average", lambda: 4.0 * (os.cpu_count() or 1))  # others hold the CPUs
    lstm = an_lstm()
    forward(lstm)
    (entry,) = measured_plan()["entries"]
    assert entry["provisional"]
    # kept: every later process reads the same kernel (the same bits), however quiet it finds the machine
    monkeypatch.setattr(kernel_plan, "load_average", lambda: 0.0)
    kernel_plan.PLAN = kernel_plan.KernelPlan()
    monkeypatch.setattr(kernel_plan, "measure", lambda *args: pytest.fail("measured a planned workload"))
    forward(lstm)
