"""Reports: markdown + self-contained HTML (parses, embedded PNGs only), figures, table, inputs from disk."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from hsr.cli import main
from hsr.report import ReportError, build_report, entries_from_dirs, results_table


def _rate(k, n):
    return {"value": k / n, "ci_low": max(0.0, k / n - 0.1), "ci_high": min(1.0, k / n + 0.1), "n": n, "k": k}


def _heads_json(L=3, H=4):
    rows = [{"layer": l, "head": h, "score": float(l * H + h)} for l in range(L) for h in range(H)]
    rows.sort(key=lambda r: -r["score"])
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    return {"score": "ships", "mode": "zero", "eps": 0.0, "engine": "fast", "model": "m", "num_layers": L,
            "num_heads": H, "num_kv_heads": 2, "n_prompts": 4, "heads": rows}


def _rows(k, n, prompts=None):
    prompts = prompts or [f"prompt {i}" for i in range(n)]
    return [{"prompt": p, "image": None, "output": "o", "verdict": "complied" if i < k else "refusal",
             "attack_success": i < k} for i, p in enumerate(prompts)]


def _entries(with_rows=True):
    out = []
    for label, k, ppl in [("dense", 1, 10.0), ("pruned", 12, 15.0), ("realigned", 6, 15.2), ("control", 11, None)]:
        metrics = {"model": label, "path": f"/x/{label}", "asr": _rate(k, 20), "over_refusal": _rate(2, 20),
                   "perplexity": ppl, "mcq_accuracy": _rate(30, 60) if ppl else None, "judge": "keyword"}
        summary = None
        if label in ("realigned", "control"):
            summary = {"restored_params": 1500, "restored_fraction": 1500 / 1e8, "head_selection": "top-ranked",
                       "heads": [{"layer": 2, "head": 3}, {"layer": 1, "head": 0}]}
        out.append({"label": label, "metrics": metrics, "realign_summary": summary,
                    "harmful_rows": _rows(k, 20) if with_rows else None})
    return out


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.hrefs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k == "src":
                self.srcs.append(v)
            if k == "href":
                self.hrefs.append(v)


def test_results_table_columns_and_rsr():
    table = results_table(_entries())
    lines = table.splitlines()
    assert lines[0].startswith("| model") and "ASR" in lines[0] and "restored params" in lines[0]
    assert "5.0% [0.0, 15.0] (1/20)" in table and "60.0% [50.0, 70.0] (12/20)" in table
    assert "1,500 (0.150 per 10k)" in table and "n/a" in table
    assert "degenerate" in lines[0]
    # RSR = (0.60 - 0.30) / (0.60 - 0.05); realigned complies on 6 of pruned's 12: 6 discordant, p = 2 / 2^6
    assert f"realigned vs pruned: RSR {100 * (0.6 - 0.3) / (0.6 - 0.05):.1f}% [" in table
    assert "ASR change -30.0 pts" in table and f"McNemar exact p = {2 / 2**6:.3g} (0 vs 6 discordant" in table
    assert "pruned vs dense: ASR change +55.0 pts" in table


def test_results_table_without_per_prompt_verdicts_gives_point_rsr():
    table = results_table(_entries(with_rows=False))
    assert "Paired statistics unavailable: no per-prompt verdicts" in table
    assert f"realigned: RSR {100 * (0.6 - 0.3) / (0.6 - 0.05):.1f}% (no interval)" in table


def test_paired_statistics_refused_when_prompts_differ():
    entries = _entries()
    entries[2]["harmful_rows"] = _rows(6, 20, prompts=[f"other {i}" for i in range(20)])
    table = results_table(entries)
    assert "Paired statistics unavailable: realigned did not answer the same prompts" in table


def test_build_report_html_is_self_contained(tmp_path):
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps(_heads_json()))
    out = build_report(_entries(), tmp_path / "rep", heads_json=heads, title="A <b>test</b>")
    for name in ("report.md", "report.html", "safety.png", "utility.png", "heads.png", "restored.png"):
        assert (out / name).is_file(), name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    parser = _Collect()
    parser.feed(html)
    parser.close()
    assert len(parser.srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    assert not parser.hrefs and "<link" not in html and "http://" not in html and "https://" not in html
    assert "A &lt;b&gt;test&lt;/b&gt;" in html and "<table>" in html
    md = (out / "report.md").read_text()
    assert "![" in md and "(heads.png)" in md and "| realigned" in md


def test_build_report_replaces_previous_and_skips_missing_parts(tmp_path):
    entries = [{"label": "only", "metrics": {"model": "only", "asr": _rate(3, 10)}, "realign_summary": None}]
    build_report(_entries(), tmp_path / "rep")
    out = build_report(entries, tmp_path / "rep")
    names = {p.name for p in out.iterdir()}
    assert names == {"report.md", "report.html", "safety.png", "paired.json"}


def test_bad_inputs(tmp_path):
    with pytest.raises(ReportError):
        build_report([], tmp_path / "r")
    with pytest.raises(ReportError, match="unique"):
        build_report(_entries()[:1] * 2, tmp_path / "r")
    from hsr.heads import HeadsFileError

    (tmp_path / "h.json").write_text("{}")
    with pytest.raises(HeadsFileError, match="heads.json"):
        build_report(_entries(), tmp_path / "r", heads_json=tmp_path / "h.json")
    with pytest.raises(ReportError, match="neither"):
        entries_from_dirs([tmp_path])
    for content, msg in [("{not json", "cannot read"), ("[1, 2]", "not an object"),
                         ('{"asr": {"value": "high"}}', "number between 0 and 1")]:
        (tmp_path / "e").mkdir(exist_ok=True)
        (tmp_path / "e" / "metrics.json").write_text(content)
        with pytest.raises(ReportError, match=msg):
            entries_from_dirs([tmp_path / "e"])
    (tmp_path / "e" / "metrics.json").write_bytes(b'{"model": "caf\xe9"}')
    with pytest.raises(ReportError, match="UTF-8"):
        entries_from_dirs([tmp_path / "e"])
    assert not (tmp_path / "r").exists()


def _fake_run_dir(root):
    run = root / "run"
    (run / "heads").mkdir(parents=True)
    (run / "heads" / "heads.json").write_text(json.dumps(_heads_json()))
    for e in _entries():
        d = run / "eval" / e["label"]
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(e["metrics"]))
        (d / "generations_harmful.jsonl").write_text("".join(json.dumps(r) + "\n" for r in e["harmful_rows"]))
        if e["realign_summary"]:
            (run / e["label"]).mkdir()
            (run / e["label"] / "summary.json").write_text(json.dumps(e["realign_summary"]))
    return run


def test_entries_from_run_dir_and_cli(tmp_path, capsys):
    run = _fake_run_dir(tmp_path)
    entries, heads = entries_from_dirs([run])
    assert [e["label"] for e in entries] == ["dense", "pruned", "realigned", "control"]
    assert heads == run / "heads" / "heads.json"
    assert entries[2]["realign_summary"]["restored_params"] == 1500 and entries[0]["realign_summary"] is None
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--title", "T"]) == 0
    assert (tmp_path / "rep" / "heads.png").is_file() and (tmp_path / "rep" / "restored.png").is_file()
    printed = capsys.readouterr().out
    assert "realigned vs pruned: RSR 54.5% [" in printed  # per-prompt verdicts read from the eval folders
    paired = json.loads((tmp_path / "rep" / "paired.json").read_text())
    assert paired["available"] and [c["label"] for c in paired["comparisons"]] == ["realigned", "control"]
    assert paired["comparisons"][0]["difference"]["b_only"] == 0 and paired["comparisons"][0]["difference"]["a_only"] == 6
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 2  # exists, no --overwrite
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--overwrite"]) == 0


def test_eval_dirs_with_same_label_get_distinct_labels(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"model": "m", "asr": _rate(1, 4)}))
    entries, heads = entries_from_dirs([tmp_path / "a", tmp_path / "b"])
    assert [e["label"] for e in entries] == ["m", "m #2"] and heads is None


# ---------------------------------------------------------------------------- lm-eval columns
def _with_lm_eval(entries):
    scores = {"dense": 0.60, "pruned": 0.40, "realigned": 0.55}
    for e in entries:
        if e["label"] in scores:
            v = scores[e["label"]]
            e["metrics"]["lm_eval"] = {
                "hsr_mcq": {"acc": {"value": v, "stderr": 0.065, "n": 60}},
                "gsm": {"exact_match[strict-match]": {"value": v / 2, "stderr": None, "n": 60},
                        "word_perplexity": {"value": 12.345, "stderr": 0.5, "n": 60}},
            }
            e["metrics"]["lm_eval_detail"] = {"tasks": ["hsr_mcq.yaml", "gsm"], "version": "0.4.13", "num_fewshot": None,
                                              "chat_template": True}
    return entries


def test_results_table_has_a_column_per_lm_eval_metric_with_its_stderr():
    table = results_table(_with_lm_eval(_entries()))
    head, _, *rows = table.splitlines()[:6]
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[-4:] == ["hsr_mcq acc ± SE", "gsm exact_match[strict-match] ± SE", "gsm word_perplexity ± SE",
                         "restored params"]
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    assert cells["dense"][-4:-1] == ["60.0% ± 6.5", "30.0%", "12.35 ± 0.5"]
    assert cells["control"][-4:-1] == ["n/a", "n/a", "n/a"]  # not run on lm-eval
    assert all(len(c) == len(cols) for c in cells.values())
    assert "hsr_mcq" not in results_table(_entries())  # no lm-eval results, no columns


def test_report_with_lm_eval_only_draws_utility_and_names_the_tasks(tmp_path):
    entries = [{"label": "a", "metrics": {"model": "a", "lm_eval": {"t": {"acc": {"value": 0.5, "stderr": 0.1}}},
                                          "lm_eval_detail": {"tasks": ["t"], "version": "0.4.13"}},
                "realign_summary": None}]
    out = build_report(entries, tmp_path / "rep")
    assert (out / "utility.png").is_file()
    html = (out / "report.html").read_text()
    assert "<th>t acc ± SE</th>" in html and "<td>50.0% ± 10.0</td>" in html
    assert "lm-eval 0.4.13 on t" in (out / "report.md").read_text()


@pytest.mark.parametrize("bad", [{"t": {"acc": {"value": "high"}}}, {"t": {"acc": 0.5}}, ["t"],
                                 {"t": {"acc": {"value": 0.5, "stderr": "N/A"}}}])
def test_malformed_lm_eval_in_metrics_json_is_a_report_error(tmp_path, bad):
    d = tmp_path / "ev"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"model": "m", "lm_eval": bad}))
    with pytest.raises(ReportError, match="lm_eval"):
        entries_from_dirs([d])


def test_sweep_report_shows_lm_eval_per_point(tmp_path):
    from hsr.report.sweep import build_sweep_report, sweep_table

    entries = _with_lm_eval(_entries())
    dense, point = entries[0], entries[1:]
    lower = [dict(e, metrics={**e["metrics"], "lm_eval": {"hsr_mcq": {"acc": {"value": 0.3, "stderr": 0.06}}}})
             if e["label"] == "pruned" else e for e in point]
    points = [("wanda", "0.3", point), ("wanda", "0.5", lower)]
    table = sweep_table(dense, points)
    head = next(line for line in table.splitlines() if line.startswith("| method"))
    assert "hsr_mcq acc pruned" in head and "hsr_mcq acc control" in head and "gsm word_perplexity realigned" in head
    rows = [line for line in table.splitlines() if line.startswith("| wanda")]
    assert "| 40.0% ± 6.5 | 55.0% ± 6.5 | n/a |" in rows[0] and "| 30.0% ± 6.0 |" in rows[1]
    assert "hsr_mcq acc 60.0% ± 6.5" in table  # the dense model's line
    out = build_sweep_report(dense, points, tmp_path / "sw")
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
