"""bin/check-file-sizes, which `make lint` runs: a big tracked file fails CI."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bin" / "check-file-sizes"


def _repo(tmp_path: Path, files: dict[str, int]) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name, size in files.items():
        (tmp_path / name).write_bytes(b"x" * size)
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    return tmp_path


def _check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args, str(repo)], capture_output=True, text=True)


def test_a_tracked_file_over_the_default_limit_fails(tmp_path):
    repo = _repo(tmp_path, {"small.txt": 10, "tool.whl": 1_000_001})
    result = _check(repo)
    assert result.returncode == 1
    assert "tool.whl" in result.stderr and "small.txt" not in result.stderr


def test_files_at_or_under_the_limit_pass(tmp_path):
    repo = _repo(tmp_path, {"a.png": 1_000_000, "b.txt": 3})
    assert _check(repo).returncode == 0


def test_an_untracked_big_file_is_not_the_check_s_business(tmp_path):
    repo = _repo(tmp_path, {"a.txt": 3})
    (repo / "var.db").write_bytes(b"x" * 2_000_000)
    assert _check(repo).returncode == 0


def test_the_limit_is_configurable(tmp_path):
    repo = _repo(tmp_path, {"a.txt": 2_000})
    assert _check(repo, "--max-bytes", "1000").returncode == 1
    assert _check(repo, "--max-bytes", "5000").returncode == 0


def test_make_lint_runs_the_check():
    makefile = (SCRIPT.parent.parent / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "bin/check-file-sizes" in lint
