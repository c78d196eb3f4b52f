"""`retry` and `stop` by DAG file or name; `retry --json/--junit/-v`, the warning when
the DAG file changed, `--edited`, `--step S --downstream`; and `prune`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from spectools import dagfast


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


#   a -> b (fails until `fixed` exists) -> c;  d
FIX = """\
    steps:
      - name: a
        command: echo a >> runs.txt
      - name: b
        command: echo b >> runs.txt; echo b-err >&2; test -e fixed
        depends: a
      - name: c
        command: echo c >> runs.txt
        depends: b
      - name: d
        command: echo d >> runs.txt
    """


def failed(tmp_path: Path) -> tuple[Path, Path, str]:
    dag = write(tmp_path / "fix.yaml", FIX)
    home = tmp_path / "home"
    res = dagfast("run", str(dag), home=home, cwd=tmp_path)
    assert res.code == 1
    run_id = re.search(r"run (\S+) of fix", res.out).group(1)
    assert f"  to finish it: dagfast retry {run_id}" in res.out.splitlines()
    (tmp_path / "runs.txt").unlink()
    return dag, home, run_id


def statuses(target: str, home: Path) -> dict[str, str]:
    doc = json.loads(dagfast("status", target, "--json", home=home).out)
    return {s["name"]: s["status"] for s in doc["steps"]}


def test_retry_by_file_with_json_and_junit(tmp_path):
    dag, home, run_id = failed(tmp_path)
    (tmp_path / "fixed").touch()
    os.utime(dag, (0, 0))  # the file did not change since the run: no warning
    junit = tmp_path / "r.xml"
    res = dagfast("retry", str(dag), "--json", "--junit", str(junit), home=home, cwd=tmp_path)
    assert res.code == 0, res.err
    events = [json.loads(line) for line in res.out.splitlines()]  # stdout: JSON alone
    assert events[0]["event"] == "run_started" and events[0]["run_id"] == run_id
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"
    assert f"attempt 2 of run {run_id}: 2 of 4 steps to run again" in res.err
    assert "warning" not in res.err
    assert 'tests="4"' in junit.read_text()
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["b", "c"]


def test_retry_by_name_verbose_warns_when_the_file_changed(tmp_path):
    dag, home, run_id = failed(tmp_path)
    (tmp_path / "fixed").touch()
    later = time.time() + 5
    os.utime(dag, (later, later))
    res = dagfast("retry", "fix", "-v", home=home, cwd=tmp_path, env={"CI": "1"})
    assert res.code == 0, res.err
    assert res.out.splitlines()[0] == (
        f"dagfast: warning: {dag} changed since run {run_id} started; this retry runs "
        "the DAG as recorded (`--edited`: as the file is now)")
    assert "b | b-err" in res.out.splitlines()  # -v: every step's output, prefixed


def test_retry_edited_runs_changed_and_unfinished_steps_of_the_new_file(tmp_path):
    dag, home, run_id = failed(tmp_path)
    # The fix is in the file: b no longer needs `fixed`, d is unchanged, e is new.
    new_step = "      - name: e\n        command: echo e >> runs.txt\n        depends: a\n"
    write(dag, FIX.replace("; test -e fixed", "").rstrip() + "\n" + new_step)
    res = dagfast("retry", run_id, "--edited", home=home, cwd=tmp_path)
    assert res.code == 0, res.out + res.err
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["b", "c", "e"]
    assert statuses(run_id, home) == dict.fromkeys("abcde", "succeeded")
    got = dagfast("logs", run_id, "b", "--stderr", home=home)
    assert got.out == "b-err\n"
    # A step whose definition changed runs again even though it succeeded.
    write(dag, (tmp_path / "fix.yaml").read_text().replace("echo d >>", "echo D; echo d >>"))
    res = dagfast("retry", run_id, "--edited", home=home, cwd=tmp_path)
    assert res.code == 0, res.out + res.err
    assert "1 of 5 steps to run again" in res.out
    assert dagfast("logs", run_id, "d", home=home).out == "D\n"
    # A file that no longer loads, or names another DAG: one line, the record untouched.
    text = dag.read_text()
    dag.write_text(text.replace("depends: b", "depends: nope", 1))
    res = dagfast("retry", run_id, "--edited", home=home, cwd=tmp_path)
    assert res.code == 2 and "depends on unknown step `nope`" in res.err, res.err
    dag.write_text("name: other\n" + text)
    res = dagfast("retry", run_id, "--edited", home=home, cwd=tmp_path)
    assert (res.code, res.err.strip()) == (
        1, f"dagfast: {dag} now names its DAG `other`, not `fix`: run it anew "
           f"(`dagfast run {dag}`)")
    assert json.loads(dagfast("status", run_id, "--json", home=home).out)["attempt"] == 3


def test_retry_step_downstream_runs_it_and_everything_after_it(tmp_path):
    dag, home, run_id = failed(tmp_path)
    (tmp_path / "fixed").touch()
    assert dagfast("retry", run_id, home=home, cwd=tmp_path).code == 0
    (tmp_path / "runs.txt").unlink()
    res = dagfast("retry", run_id, "--step", "a", "--downstream", home=home, cwd=tmp_path)
    assert res.code == 0, res.out + res.err
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["a", "b", "c"]
    res = dagfast("retry", run_id, "--downstream", home=home)
    assert (res.code, res.err.strip()) == (2, "dagfast: --downstream goes with --step STEP")
    res = dagfast("retry", "nosuch.yaml", home=home)
    assert res.code == 1
    assert res.err.strip() == "dagfast: no run `nosuch.yaml` (neither a run id nor a DAG with runs)"


def test_stop_by_dag_file(tmp_path):
    started = tmp_path / "started"
    dag = write(tmp_path / "slow.yaml", f"""\
        steps:
          - name: slow
            command: touch {started}; exec sleep 600
        """)
    home = tmp_path / "home"
    env = dict(os.environ, DAGFAST_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "dagfast", "run", str(dag)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while not started.exists():
            assert proc.poll() is None
            time.sleep(0.02)
        res = dagfast("stop", str(dag), home=home)
        assert res.code == 0, res.err
        assert re.fullmatch(r"dagfast: run \S+ stopped: aborted\n", res.out)
        out, _ = proc.communicate()
        assert proc.returncode == 143
        # The interrupt's ending says how to finish the run.
        run_id = re.search(r"run (\S+) of slow", out).group(1)
        assert f"  to finish it: dagfast retry {run_id}" in out.splitlines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
