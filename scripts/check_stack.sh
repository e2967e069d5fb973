#!/usr/bin/env bash
# Check the package against (python, torch) combinations: the fast test loop and `flair-elmo demo`.
#
# Usage: bash scripts/check_stack.sh [--cache-dir DIR] [PYTHON:TORCH ...]
#   e.g. bash scripts/check_stack.sh 3.10:2.3.1 3.12:2.15.0
#
# For every PYTHON:TORCH combination this script
#   1. finds the interpreter (`pythonX.Y` on PATH, else pyenv), and exits before installing anything
#      when one is missing;
#   2. creates a venv in DIR/venvs (reused when the same combination was installed there before with
#      the same interpreter, requirements and pins), installs `torch==TORCH` first, then the package's
#      dependencies and its `dev` extra as declared in pyproject.toml, except that the declared torch
#      and numpy floors are left out (torch is held at TORCH, numpy is what pip resolves for it) and
#      the pins of EXTRA_PINS below replace the declared requirements they name, and finally the
#      package itself with `pip install --no-deps -e REPO`; so the declared floors do not stop older
#      stacks from being tested (pip's own configuration, e.g. a global constraints file, still
#      applies: a cap on torch there makes the install of a newer torch fail, see the install log);
#   3. runs the fast test loop `python -m pytest -m "not slow" tests -q -p no:cacheprovider` from the
#      repository root (the Ray tests skip themselves: the `ray` extra is not installed) and the demo
#      `flair-elmo demo`.
# Then it prints a markdown table and writes it to benchmarks/results/stack.md, and every combination's
# versions and results to benchmarks/results/stack.json. Logs: DIR/logs.
#
# DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/flair-elmo-modes-stack. Torch comes from PyPI, whose
# Linux wheels are CUDA builds (several GB with their nvidia-* wheels; they run on a CPU-only machine).
#
# Exit status: 0 when every combination installed, passed its tests and ran the demo; 1 otherwise
# (the results are written either way); 2 on a usage error or a missing interpreter.

set -euo pipefail

# The oldest torch the fast loop passes on, with the oldest python (torch 2.2.2 fails:
# `torch.amp.GradScaler` is new in 2.3), and the newest torch on PyPI with the newest python declared.
DEFAULT_COMBOS=("3.10:2.3.0" "3.12:2.15.0")

# Extra pins for some combinations. One entry a line: TORCH_PATTERN|PYTHON_PATTERN|PIN|REASON, the
# patterns are bash globs matched against TORCH and PYTHON as given on the command line. A pin
# replaces the requirement pyproject.toml declares for that package (e.g. its floor); a pin with a
# version specifier is also passed to pip as a constraint, a bare name only drops the declared floor.
EXTRA_PINS=(
    # torch < 2.3 was compiled against numpy 1.x: with numpy 2 `import torch` warns "A module that
    # was compiled using NumPy 1.x cannot be run in NumPy 2.x" / "Failed to initialize NumPy:
    # _ARRAY_API not found" and its numpy interop fails with "RuntimeError: Numpy is not available"
    # (`torch.from_numpy`, `Tensor.numpy()`; seen with torch 2.2.2 + numpy 2.4.6). torch 2.3.1 works
    # with numpy 2.
    "2.0.*|*|numpy<2|torch < 2.3 is built against numpy 1.x (its numpy interop fails with numpy 2)"
    "2.1.*|*|numpy<2|torch < 2.3 is built against numpy 1.x (its numpy interop fails with numpy 2)"
    "2.2.*|*|numpy<2|torch < 2.3 is built against numpy 1.x (its numpy interop fails with numpy 2)"
    # The oldest stack also runs the oldest numpy pyproject.toml declares (1.26), so the table shows it.
    "2.3.0|3.10|numpy<2|the oldest torch with the oldest numpy declared (numpy>=1.26)"
)

REPO="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS_DIR="$REPO/benchmarks/results"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/flair-elmo-modes-stack"

usage() {
    sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "check_stack: $*" >&2
    exit 2
}

log() {
    echo "check_stack: $*" >&2
}

COMBOS=()
while (($# > 0)); do
    case "$1" in
        --cache-dir)
            (($# >= 2)) || die "--cache-dir needs a directory"
            CACHE_DIR="$2"
            shift 2
            ;;
        --cache-dir=*)
            CACHE_DIR="${1#--cache-dir=}"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            die "unknown option $1 (see --help)"
            ;;
        *)
            COMBOS+=("$1")
            shift
            ;;
    esac
done
((${#COMBOS[@]} > 0)) || COMBOS=("${DEFAULT_COMBOS[@]}")
[[ -n "$CACHE_DIR" ]] || die "--cache-dir is empty"
mkdir -p -- "$CACHE_DIR"
CACHE_DIR="$(cd -- "$CACHE_DIR" && pwd)"

# "MAJOR.MINOR EXECUTABLE" of an interpreter, or nothing when it does not run (a pyenv shim of a
# version that is not selected fails). EXECUTABLE is the interpreter itself, not a shim.
probe_python() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2], sys.executable)' 2>/dev/null || true
}

# The interpreter of python version $1 (e.g. 3.10): python3.10 on PATH, else pyenv's.
find_python() {
    local version="$1" candidate prefix root
    local -a candidates=()
    if candidate="$(command -v "python$version" 2>/dev/null)"; then
        candidates+=("$candidate")
    fi
    if command -v pyenv >/dev/null 2>&1 && prefix="$(pyenv prefix "$version" 2>/dev/null)"; then
        candidates+=("$prefix/bin/python$version")
    fi
    root="${PYENV_ROOT:-$HOME/.pyenv}"
    if [[ -d "$root/versions" ]]; then
        # Newest patch release first: 3.10.13 before 3.10.9; "$version.*" leaves out 3.1 for 3.10.
        while IFS= read -r prefix; do
            candidates+=("$prefix/bin/python$version")
        done < <(find "$root/versions" -mindepth 1 -maxdepth 1 \( -name "$version" -o -name "$version.*" \) | sort -rV)
    fi
    local found="" executable=""
    for candidate in "${candidates[@]}"; do
        [[ -x "$candidate" ]] || continue
        read -r found executable <<<"$(probe_python "$candidate")" || true
        if [[ "$found" == "$version" && -x "$executable" ]]; then
            echo "$executable"
            return 0
        fi
    done
    return 1
}

# Check every combination (and find its interpreter) before installing anything.
declare -A PYTHON_OF=()
for combo in "${COMBOS[@]}"; do
    [[ "$combo" =~ ^(3\.[0-9]+):([0-9]+\.[0-9]+(\.[0-9]+)?([.+a-z0-9]*))$ ]] \
        || die "bad combination '$combo': expected PYTHON:TORCH, e.g. 3.10:2.3.1"
    version="${combo%%:*}"
    if [[ -z "${PYTHON_OF[$version]:-}" ]]; then
        PYTHON_OF[$version]="$(find_python "$version")" \
            || die "python $version not found: no working python$version on PATH and none in pyenv (${PYENV_ROOT:-$HOME/.pyenv}/versions); install it, e.g. 'pyenv install $version'"
        log "python $version: ${PYTHON_OF[$version]}"
    fi
done

# The pins of EXTRA_PINS for torch $1 and python $2, one "PIN|REASON" a line.
pins_for() {
    local torch="$1" python="$2" entry torch_pattern python_pattern pin reason
    for entry in "${EXTRA_PINS[@]}"; do
        IFS='|' read -r torch_pattern python_pattern pin reason <<<"$entry"
        # shellcheck disable=SC2053  # the patterns are globs on purpose
        if [[ "$torch" == $torch_pattern && "$python" == $python_pattern ]]; then
            echo "$pin|$reason"
        fi
    done
}

# The requirements of pyproject.toml's [project] dependencies and the dev extra, one a line, with the
# declared versions of torch, numpy and the packages the pins name ($2...) dropped (the combination
# and its pins decide those). Run by the combination's python ($1).
read_requirements() {
    "$1" - "$REPO/pyproject.toml" "${@:2}" <<'EOF'
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10: pip vendors tomli
    from pip._vendor import tomli as tomllib


def name_of(requirement):
    return re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)


def normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


relaxed = {normal(name_of(pin)) for pin in ["torch", "numpy", *sys.argv[2:]]}
with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)["project"]
for requirement in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
    name = name_of(requirement)
    print(name if normal(name) in relaxed else requirement)
EOF
}

# pytest's summary line -> "passed failed skipped errors" counts.
count_of() {
    local line="$1" word="$2" count
    count="$(grep -oE "[0-9]+ $word" <<<"$line" | head -n1 | cut -d' ' -f1 || true)"
    echo "${count:-0}"
}

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/check_stack.XXXXXX")"
trap 'rm -rf -- "$RUN_DIR"' EXIT
mkdir -p -- "$CACHE_DIR/venvs" "$CACHE_DIR/logs"

status=0
index=0
for combo in "${COMBOS[@]}"; do
    index=$((index + 1))
    version="${combo%%:*}"
    torch="${combo#*:}"
    python="${PYTHON_OF[$version]}"
    name="py$version-torch$torch"
    venv="$CACHE_DIR/venvs/$name"
    install_log="$CACHE_DIR/logs/$name-install.log"
    tests_log="$CACHE_DIR/logs/$name-tests.log"
    demo_log="$CACHE_DIR/logs/$name-demo.log"
    log "[$index/${#COMBOS[@]}] python $version, torch $torch: $venv"

    # The pins of this combination, as a constraints file (torch held at TORCH, so resolving the
    # other dependencies cannot move it).
    constraints="$RUN_DIR/constraints-$index.txt"
    pins=()
    reasons=()
    echo "torch==$torch" >"$constraints"
    while IFS='|' read -r pin reason; do
        [[ -n "$pin" ]] || continue
        pins+=("$pin")
        reasons+=("$reason")
        # A bare name only drops the declared floor; a pin with a specifier also constrains.
        [[ "$pin" =~ ^[A-Za-z0-9._-]+$ ]] || echo "$pin" >>"$constraints"
    done < <(pins_for "$torch" "$version")

    # Reuse the venv when this combination was installed there with the same interpreter, repository,
    # requirements and pins; else build it from scratch.
    mapfile -t requirements < <(read_requirements "$python" "${pins[@]+"${pins[@]}"}")
    ((${#requirements[@]} > 0)) || die "no requirements read from $REPO/pyproject.toml"
    stamp="$({
        echo "python=$python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
        echo "repo=$REPO"
        printf 'requirement=%s\n' "${requirements[@]}"
        cat "$constraints"
    })"
    install="ok"
    install_error=""
    if [[ -f "$venv/.check_stack_stamp" && "$(cat "$venv/.check_stack_stamp")" == "$stamp" ]]; then
        log "  reusing the installed venv"
    else
        log "  installing (log: $install_log)"
        rm -rf -- "$venv"
        if ! {
            "$python" -m venv "$venv" \
                && "$venv/bin/python" -m pip install --upgrade pip \
                && "$venv/bin/python" -m pip install "torch==$torch" \
                && "$venv/bin/python" -m pip install -c "$constraints" "${requirements[@]}" \
                && "$venv/bin/python" -m pip install --no-deps -e "$REPO"
        } >"$install_log" 2>&1; then
            install="failed"
            install_error="$(grep -E '^(ERROR|    The user requested)' "$install_log" | head -n 4 | cut -c1-300 || true)"
            log "  install failed, see $install_log:"
            grep -E '^(ERROR|    The user requested)' "$install_log" | cut -c1-300 >&2 || tail -n 5 "$install_log" >&2
            if grep -q 'requested (constraint)' "$install_log" \
                && ! grep -qxF -- "$(grep 'requested (constraint)' "$install_log" | head -n1 | sed 's/.*(constraint) //')" "$constraints"; then
                log "  a constraint of pip's own configuration conflicts ('pip config list' shows it; PIP_CONFIG_FILE=/dev/null ignores pip's configuration files)"
            fi
        else
            printf '%s\n' "$stamp" >"$venv/.check_stack_stamp"
        fi
    fi

    passed=0 failed=0 skipped=0 errors=0 summary="" tests_rc="" demo="not run" demo_error=""
    failures=""
    if [[ "$install" == "ok" ]]; then
        log "  fast test loop (log: $tests_log)"
        tests_rc=0
        (
            cd -- "$REPO"
            PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -m "not slow" tests -q -p no:cacheprovider
        ) >"$tests_log" 2>&1 </dev/null || tests_rc=$?
        summary="$(grep -v '^[[:space:]]*$' "$tests_log" | tail -n 1 || true)"
        passed="$(count_of "$summary" passed)"
        failed="$(count_of "$summary" failed)"
        skipped="$(count_of "$summary" skipped)"
        errors="$(count_of "$summary" 'errors?')"
        # The short test summary (-ra in pyproject's addopts): "FAILED|ERROR <test id>[ - <message>]"
        # lines, kept as "FAILED|ERROR <test id>" (ids of parametrized tests may hold spaces).
        failures="$(grep -E '^(FAILED|ERROR) ' "$tests_log" | sed -E 's/ - .*$//' || true)"
        log "  tests: $summary"

        log "  demo (log: $demo_log)"
        if (cd -- "$REPO" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/flair-elmo" demo) >"$demo_log" 2>&1 </dev/null; then
            demo="ok"
        else
            demo="failed"
            demo_error="$(grep -v '^[[:space:]]*$' "$demo_log" | tail -n 1 | cut -c1-300 || true)"
            tail -n 5 "$demo_log" >&2
        fi
    fi
    if [[ "$install" != "ok" || "$tests_rc" != "0" || "$demo" != "ok" ]]; then
        status=1
    fi

    # This combination's record, as JSON (the versions read by its own python when installed).
    record_python="$python"
    [[ "$install" != "ok" ]] || record_python="$venv/bin/python"
    COMBO="$combo" REQUESTED_PYTHON="$version" REQUESTED_TORCH="$torch" INSTALL="$install" \
        INSTALL_ERROR="$install_error" \
        TESTS_RC="$tests_rc" SUMMARY="$summary" PASSED="$passed" FAILED="$failed" SKIPPED="$skipped" \
        ERRORS="$errors" FAILURES="$failures" DEMO="$demo" DEMO_ERROR="$demo_error" \
        PINS="$(printf '%s\n' "${pins[@]+"${pins[@]}"}")" REASONS="$(printf '%s\n' "${reasons[@]+"${reasons[@]}"}")" \
        "$record_python" - >"$RUN_DIR/combo-$(printf '%03d' "$index").json" <<'EOF'
import json
import os
import platform
from importlib import metadata


def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def lines(name):
    return [line for line in os.environ[name].splitlines() if line]


installed = os.environ["INSTALL"] == "ok"
torch_version = None
if installed:
    import torch  # torch.__version__ carries the local build tag (+cpu, +cu121)

    torch_version = torch.__version__
record = {
    "combination": os.environ["COMBO"],
    "requested": {"python": os.environ["REQUESTED_PYTHON"], "torch": os.environ["REQUESTED_TORCH"]},
    "install": os.environ["INSTALL"],
    "install_error": lines("INSTALL_ERROR") or None,
    "extra_pins": [{"pin": pin, "reason": reason} for pin, reason in zip(lines("PINS"), lines("REASONS"))],
    "versions": {
        "python": platform.python_version(),
        "torch": torch_version,
        **{name: version(name) if installed else None for name in ("numpy", "flair", "transformers", "h5py", "pytest")},
    },
    "tests": {
        "command": 'python -m pytest -m "not slow" tests -q -p no:cacheprovider',
        "exit_status": int(os.environ["TESTS_RC"]) if os.environ["TESTS_RC"] else None,
        "summary": os.environ["SUMMARY"] or None,
        "passed": int(os.environ["PASSED"]),
        "failed": int(os.environ["FAILED"]),
        "skipped": int(os.environ["SKIPPED"]),
        "errors": int(os.environ["ERRORS"]),
        "failures": [
            {"outcome": line.split(" ", 1)[0].lower(), "test": line.split(" ", 1)[1]} for line in lines("FAILURES")
        ],
    },
    "demo": os.environ["DEMO"],
    "demo_error": os.environ["DEMO_ERROR"] or None,
}
print(json.dumps(record))
EOF
done

# Collect the records into stack.json and the table into stack.md, each written to a temporary file
# next to it and renamed over it.
mkdir -p -- "$RESULTS_DIR"
git_commit="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || true)"
git_dirty=""
if [[ -n "$git_commit" ]] && [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null || true)" ]]; then
    git_dirty="1"
fi
cpu="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^[[:space:]]*//' || true)"
RECORDS_DIR="$RUN_DIR" RESULTS_DIR="$RESULTS_DIR" CPU="${cpu:-unknown}" CORES="$(nproc 2>/dev/null || echo '')" \
    GIT_COMMIT="$git_commit" GIT_DIRTY="$git_dirty" ARGS="${COMBOS[*]}" \
    "${PYTHON_OF[${COMBOS[0]%%:*}]}" - <<'EOF'
import datetime
import glob
import json
import os
import tempfile

records = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(os.environ["RECORDS_DIR"], "combo-*.json")))]
when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
MAX_LISTED = 12  # failed tests listed per combination in stack.md
commit = os.environ["GIT_COMMIT"] or None


def tests_cell(record):
    if record["install"] != "ok":
        return "install failed"
    tests = record["tests"]
    if tests["summary"] is None or tests["passed"] + tests["failed"] + tests["skipped"] + tests["errors"] == 0:
        return f"no summary (pytest exit status {tests['exit_status']})"
    cell = f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped"
    return cell + (f", {tests['errors']} errors" if tests["errors"] else "")


def cell(value):
    return value if value is not None else "-"


rows = [
    "| python | torch | numpy | flair | tests | demo |",
    "|---|---|---|---|---|---|",
]
notes = []
for record in records:
    versions = record["versions"]
    rows.append(
        f"| {versions['python']} | {cell(versions['torch']) if record['install'] == 'ok' else record['requested']['torch']} "
        f"| {cell(versions['numpy'])} | {cell(versions['flair'])} | {tests_cell(record)} | "
        f"{record['demo'] if record['install'] == 'ok' else '-'} |"
    )
    for line in record["install_error"] or []:
        notes.append(f"- {record['combination']}: install failed: `{line.strip()}`")
    for pin in record["extra_pins"]:
        notes.append(f"- {record['combination']}: pinned `{pin['pin']}`: {pin['reason']}.")
    failures = record["tests"]["failures"]
    for failure in failures[:MAX_LISTED]:
        notes.append(f"- {record['combination']}: {failure['outcome']} `{failure['test']}`")
    if len(failures) > MAX_LISTED:
        notes.append(f"- {record['combination']}: ... and {len(failures) - MAX_LISTED} more (stack.json lists them all)")
    if record["demo_error"]:
        notes.append(f"- {record['combination']}: demo failed: `{record['demo_error']}`")
table = "\n".join(rows) + "\n"
print(table, end="")

header = (
    "# Stack check\n\n"
    f"`bash scripts/check_stack.sh {os.environ['ARGS']}` on {when.date().isoformat()}, "
    f"{os.environ['CPU']} ({os.environ['CORES']} cores)"
    + (f", commit {commit[:12]}{' with local changes' if os.environ['GIT_DIRTY'] else ''}" if commit else "")
    + ". Fast test loop: `python -m pytest -m \"not slow\" tests -q -p no:cacheprovider` (without the `ray` "
    "extra, so the Ray tests skip); demo: `flair-elmo demo`. Dependencies as declared in pyproject.toml "
    "except the torch and numpy floors (torch as given, numpy as pip resolves it).\n\n"
)
markdown = header + table + ("\n" + "\n".join(notes) + "\n" if notes else "")
document = {
    "date": when.isoformat(),
    "cpu": os.environ["CPU"],
    "cores": int(os.environ["CORES"]) if os.environ["CORES"] else None,
    "git_commit": commit,
    "git_local_changes": bool(os.environ["GIT_DIRTY"]) if commit else None,
    "combinations": records,
}


def write(path, text):
    directory, name = os.path.split(path)
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=name + ".", suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


write(os.path.join(os.environ["RESULTS_DIR"], "stack.md"), markdown)
write(os.path.join(os.environ["RESULTS_DIR"], "stack.json"), json.dumps(document, indent=2) + "\n")
EOF
log "wrote $RESULTS_DIR/stack.md and $RESULTS_DIR/stack.json"
exit "$status"
