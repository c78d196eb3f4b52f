"""A sub-DAG's failure is named in its caller's record, however deep it happened."""

from __future__ import annotations

import json

from spectools import dagfast


def test_a_loop_of_sub_dags_through_three_files_is_named_in_the_outermost_record(tmp_path):
    #   a.yaml -> b.yaml -> c.yaml -> a.yaml
    (tmp_path / "a.yaml").write_text("steps:\n  - name: to-b\n    call: b.yaml\n")
    (tmp_path / "b.yaml").write_text("steps:\n  - name: to-c\n    call: c.yaml\n")
    (tmp_path / "c.yaml").write_text("steps:\n  - name: to-a\n    call: a.yaml\n")
    home = tmp_path / "home"
    res = dagfast("run", str(tmp_path / "a.yaml"), home=home)
    assert res.code == 1
    doc = json.loads(dagfast("status", str(tmp_path / "a.yaml"), "--json", home=home).out)
    (step,) = doc["steps"]
    assert step["error"] == (
        "sub-DAG `b` failed: step `to-c`: sub-DAG `c` failed: step `to-a`: "
        "the sub-DAG calls itself: a.yaml -> b.yaml -> c.yaml -> a.yaml"
    )
    assert "a.yaml -> b.yaml -> c.yaml -> a.yaml" in res.out
