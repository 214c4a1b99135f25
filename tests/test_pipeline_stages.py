from hsr.pipeline.stages import STAGE_FILE, fingerprint, run_stage


def test_stage_is_cached_and_recomputed_when_settings_change(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        (out / "result.txt").write_text(str(len(calls)))

    a = run_stage(tmp_path, "a", {"x": 1}, build)
    assert not a.reused and (tmp_path / "a" / STAGE_FILE).is_file()
    again = run_stage(tmp_path, "a", {"x": 1}, build)
    assert again.reused and len(calls) == 1
    changed = run_stage(tmp_path, "a", {"x": 2}, build)
    assert not changed.reused and len(calls) == 2
    assert (tmp_path / "a" / "result.txt").read_text() == "2"


def test_downstream_stage_reruns_when_upstream_changes(tmp_path):
    up1 = run_stage(tmp_path, "up", {"v": 1}, lambda out: None)
    down = run_stage(tmp_path, "down", {}, lambda out: None, upstream=[up1])
    assert run_stage(tmp_path, "down", {}, lambda out: None, upstream=[up1]).reused
    up2 = run_stage(tmp_path, "up", {"v": 2}, lambda out: None)
    assert up2.fingerprint != up1.fingerprint
    redo = run_stage(tmp_path, "down", {}, lambda out: None, upstream=[up2])
    assert not redo.reused and redo.fingerprint != down.fingerprint


def test_failed_stage_leaves_nothing_behind(tmp_path):
    def boom(out):
        (out / "partial.bin").write_text("x")
        raise RuntimeError("fail")

    try:
        run_stage(tmp_path, "bad", {}, boom)
    except RuntimeError:
        pass
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_fingerprint_is_order_independent_for_dict_keys():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1}, ["up"])
