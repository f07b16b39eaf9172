"""`ssl-ctx table`: records -> statistics -> Markdown / LaTeX / CSV / figures, on synthetic records."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ssl_ctx.cli import main
from ssl_ctx.errors import UserError
from ssl_ctx.results.collect import collect_records, read_records
from ssl_ctx.results.render import MINUS, delta_cell, format_number, latex_text
from ssl_ctx.results.stats import sample_std, summarise, welch_compare, welch_df
from ssl_ctx.results.tables import table_command

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_probe(root: Path, probe: str, method: str, seed: int, metrics: dict, *, task: str = "classification",
                mode: str = "linear", metric: str | None = "top1", kind: str | None = "frozen",
                protocol: str | None = "linear probe on each of conv1…conv5, 20 epochs, SGD lr 0.1",
                tags: bool = True) -> Path:
    """A probe ``record.json`` as ``ssl-ctx probe`` writes it (only the fields the tables read)."""
    record = {"kind": "probe", "seed": seed, "metrics": metrics, "wall_time_s": 1.0,
              "config": {"probe": {"task": task, "mode": mode, "init": method}, "data": {"dataset": "tiny"}}}
    if tags:
        record["config"]["tags"] = {"method": method, "probe": probe, "seed": seed, "metric": metric, "stage": "probe"}
    if kind or protocol:
        record["probe"] = {**({"kind": kind} if kind else {}), **({"protocol": protocol} if protocol else {})}
    path = root / "probe" / probe / method / f"seed{seed}" / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


def write_pretext(root: Path, method: str, seed: int, metrics: dict, history: list | None = None) -> Path:
    record = {"kind": "pretext", "seed": seed, "metrics": metrics, "wall_time_s": 1.0,
              "config": {"tags": {"method": method, "seed": seed, "stage": "pretext"}, "method": {"name": method}}}
    if history is not None:
        record["history"] = history
    path = root / "pretext" / method / f"seed{seed}" / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


# Per-layer top1 per method and seed: context_encoder is far above random_init from conv3 on (significant),
# autoencoder sits inside random_init's seed noise (not significant).
LAYER_SCORES = {
    "random_init": [[0.30, 0.20, 0.10, 0.08, 0.06], [0.31, 0.21, 0.11, 0.09, 0.07], [0.32, 0.22, 0.12, 0.10, 0.08]],
    "autoencoder": [[0.30, 0.21, 0.105, 0.09, 0.06], [0.32, 0.20, 0.125, 0.08, 0.07], [0.31, 0.22, 0.115, 0.10, 0.08]],
    "context_encoder": [[0.31, 0.25, 0.20, 0.18, 0.16], [0.32, 0.26, 0.21, 0.19, 0.17], [0.33, 0.27, 0.22, 0.20, 0.18]],
}


def synthetic_runs(root: Path) -> Path:
    """9 per-layer probe records, 5 single-metric ones (segmentation, older layout: no tags.metric, no
    probe.kind/protocol), 6 pretext records (random_init untrained) with loss histories."""
    for method, seeds in LAYER_SCORES.items():
        for seed, scores in enumerate(seeds):
            metrics = {"loss": 2.0, **{f"top1@{layer}": v for layer, v in zip(LAYERS, scores)}, "top5@conv1": 0.5}
            write_probe(root, "cls-tiny", method, seed, metrics)
    # context_encoder has one seed only: no test; autoencoder's mean is 0.0001 below random_init's: "+0.0"-ish.
    for method, values in {"random_init": [0.2500, 0.2600], "autoencoder": [0.2499, 0.2599],
                           "context_encoder": [0.3000]}.items():
        for seed, value in enumerate(values):
            write_probe(root, "seg-camvid", method, seed, {"miou": value, "pixel_accuracy": 0.8}, task="segmentation",
                        mode="finetune", metric=None, kind=None, protocol=None)
    for seed in range(2):
        history = [{"step": s, "loss": 1.0 / (s + 1) + 0.01 * seed} for s in range(0, 100, 10)]
        write_pretext(root, "context_encoder", seed, {"train_steps": 100.0, "eval_masked_l2": 0.14 + 0.02 * seed,
                                                      "eval_mean_fill_l2": 0.30}, history)
        write_pretext(root, "autoencoder", seed, {"train_steps": 100.0, "eval_l2": 0.12,
                                                  "eval_mean_fill_l2": 0.31 + 0.01 * seed}, history)
        write_pretext(root, "random_init", seed, {"train_steps": 0.0})
    return root


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The output folder of one ``table_command`` run on ``synthetic_runs`` (shared: figures take time)."""
    root = synthetic_runs(tmp_path_factory.mktemp("runs"))
    table_command(root, paper=True)
    return root / "tables"


# --- statistics ---------------------------------------------------------------------------------------------

def test_welch_matches_the_textbook_formula():
    # a: mean 2, variance 1; b: mean 5, variance 20/3. By hand: SE^2 = 1/3 + 5/3 = 2,
    # df = 2^2 / ((1/3)^2 / 2 + (5/3)^2 / 3) = 216/53, t = -3/sqrt(2).
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    result = welch_compare(a, b)
    assert result.delta == pytest.approx(-3.0)
    assert welch_df(1.0, 3, 20 / 3, 4) == pytest.approx(216 / 53)
    assert result.df == pytest.approx(216 / 53)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(3 / math.sqrt(2), 216 / 53))
    half = scipy_stats.t.ppf(0.975, 216 / 53) * math.sqrt(2)
    assert (result.ci_low, result.ci_high) == pytest.approx((-3 - half, -3 + half))
    assert half == pytest.approx(3.9, abs=0.05)  # t_0.975(4.08) ~ 2.76: the interval [-6.9, 0.9] includes 0
    assert result.significant is False and result.p_value > 0.05
    reference = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((reference.low, reference.high))


def test_separated_seeds_are_significant_and_overlapping_ones_are_not():
    separated = welch_compare([0.20, 0.21, 0.22], [0.10, 0.11, 0.12])
    assert separated.significant is True and separated.p_value < 0.05 and separated.ci_low > 0
    overlapping = welch_compare([0.105, 0.125, 0.115], [0.10, 0.11, 0.12])
    assert overlapping.significant is False and overlapping.ci_low < 0 < overlapping.ci_high


def test_a_single_seed_gets_no_test_and_no_std():
    result = welch_compare([0.3], [0.25, 0.26])
    assert result.significant is None and math.isnan(result.ci_low) and math.isnan(result.p_value)
    assert result.delta == pytest.approx(0.045)
    assert math.isnan(sample_std([0.3])) and sample_std([1.0, 3.0]) == pytest.approx(math.sqrt(2))


def test_zero_standard_error_gives_a_point_interval():
    assert welch_compare([0.5, 0.5], [0.4, 0.4]).significant is True
    same = welch_compare([0.5, 0.5], [0.5, 0.5])
    assert same.significant is False and same.ci_low == same.ci_high == 0


# --- formatting ---------------------------------------------------------------------------------------------

def test_numbers_that_round_to_zero_have_no_minus_sign():
    assert format_number(-0.04) == "0.0" and format_number(-0.04, signed=True) == "+0.0"
    assert format_number(-1.26) == f"{MINUS}1.3" and format_number(1.26, signed=True) == "+1.3"
    assert format_number(0.000049, 4) == "0.0000" and format_number(-0.00005, 4) == f"{MINUS}0.0001"


def test_delta_cells_say_whether_the_difference_is_inside_the_seed_noise():
    assert delta_cell(0.017, 0.009, 0.025, True) == [("+1.7", True), (" [+0.9, +2.5]", False)]
    assert delta_cell(0.003, -0.004, 0.010, False) == [("+0.3", False), (f" [{MINUS}0.4, +1.0] n.s.", False)]
    assert "n < 2, no test" in delta_cell(0.003, math.nan, math.nan, None)[1][0]


def test_latex_text_is_ascii_and_escaped():
    text = latex_text("random_init 50 % & #1 {x} $ ± Δ ↳ — conv1…conv5 café by `ssl-ctx table runs/a_b`")
    assert text.isascii()
    assert text == (r"random\_init 50 \% \& \#1 \{x\} \$ $\pm$ $\Delta$ $\hookrightarrow$ --- conv1\ldots{}conv5 cafe "
                    r"by \texttt{ssl-ctx table runs/a\_b}")


# --- records ------------------------------------------------------------------------------------------------

def test_per_layer_metrics_become_layer_columns_in_record_order(tmp_path):
    metrics = {"top1@conv2": 0.2, "loss": 1.0, "top1@conv1": 0.1, "top5@conv1": 0.4}
    write_probe(tmp_path, "cls", "random_init", 0, metrics)
    frame = collect_records(tmp_path)
    assert frame["column"].tolist() == ["conv2", "conv1"] and set(frame["metric"]) == {"top1"}
    assert frame["kind"].iloc[0] == "frozen" and frame["protocol"].iloc[0].startswith("linear probe")


def test_records_without_tags_or_probe_settings_fall_back_to_the_config(tmp_path):
    write_probe(tmp_path, "ignored", "random", 0, {"miou": 0.3, "loss": 1.0}, task="segmentation", mode="finetune",
                kind=None, protocol=None, tags=False)
    row = collect_records(tmp_path).iloc[0]
    assert (row["probe"], row["method"], row["column"]) == ("segmentation:tiny", "random", "miou")
    assert (row["kind"], row["protocol"]) == ("fine-tuned", "")


def test_a_corrupt_record_is_skipped_with_a_one_line_warning(tmp_path, capsys):
    write_probe(tmp_path, "cls", "random_init", 0, {"top1": 0.1})
    broken = tmp_path / "probe" / "cls" / "random_init" / "seed1" / "record.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"kind": "probe", "metr')
    records = read_records(tmp_path)
    assert len(records.probe) == 1 and records.unreadable == [broken]
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and str(broken) in warning and "not valid JSON" in warning
    table_command(tmp_path)
    assert "from 1 probe records and 0 pretext records" in (tmp_path / "tables" / "table.md").read_text()
    assert "1 unreadable record.json skipped" in (tmp_path / "tables" / "table.md").read_text()
    assert json.loads((tmp_path / "tables" / "provenance.json").read_text())["skipped_unreadable"] == [str(broken)]


def test_summary_is_mean_std_n_and_the_difference_from_the_baseline(tmp_path):
    for method, values in {"random_init": [0.10, 0.12], "context_encoder": [0.20, 0.26]}.items():
        for seed, value in enumerate(values):
            write_probe(tmp_path, "cls", method, seed, {"top1": value})
    summary = summarise(collect_records(tmp_path)).set_index("method")
    assert summary.index.tolist() == ["random_init", "context_encoder"]  # baseline first
    row = summary.loc["context_encoder"]
    assert (row["n"], row["mean"], row["std"]) == (2, pytest.approx(0.23), pytest.approx(0.0424264, rel=1e-4))
    assert row["delta"] == pytest.approx(0.12) and row["significant"] is False  # df ~ 1.2: wide interval
    assert row["values"] == (0.20, 0.26) and summary.loc["random_init", "baseline"] == ""
    assert np.isnan(summarise(collect_records(tmp_path), baseline="supervised")["delta"]).all()


# --- the written files --------------------------------------------------------------------------------------

def test_markdown_has_provenance_with_both_record_counts(made):
    text = (made / "table.md").read_text()
    first = text.splitlines()[0]
    assert first.startswith("Made by `ssl-ctx table ") and "--paper" in first and "git " in first
    assert "14 probe records and 6 pretext records under" in first


def test_markdown_per_layer_probe_has_layer_columns_and_marks_significance(made):
    text = (made / "table.md").read_text()
    assert "### cls-tiny\n\nclassification — frozen features; linear probe on each of conv1…conv5" in text
    assert "metric top1, in %" in text
    assert "| method | n | conv1 | conv2 | conv3 | conv4 | conv5 |" in text
    assert "| random_init | 3 | 31.0 ± 1.0 | 21.0 ± 1.0 | 11.0 ± 1.0 | 9.0 ± 1.0 | 7.0 ± 1.0 |" in text
    lines = text.splitlines()
    context = lines[lines.index(next(l for l in lines if l.startswith("| context_encoder | 3 |"))) + 1]
    assert context.startswith("| ↳ Δ vs random_init |  | +1.0 [")
    assert "| **+10.0** [+" in context and context.count("**") == 8  # conv2..conv5 bold
    autoencoder = lines[lines.index(next(l for l in lines if l.startswith("| autoencoder | 3 |"))) + 1]
    assert autoencoder.count("n.s.") == 5 and "**" not in autoencoder
    assert ("Δ vs X: difference of means from method X (the baseline random_init, or another named) with its 95 % "
            "confidence interval (Welch's t-test") in text


def test_markdown_single_seed_gets_no_test_and_nothing_rounds_to_minus_zero(made):
    text = (made / "table.md").read_text()
    assert "### seg-camvid\n\nsegmentation — fine-tuned encoder; metric miou, in %" in text
    assert "| context_encoder | 1 | 30.0 |" in text and "+4.5 (n < 2, no test)" in text
    assert "| ↳ Δ vs random_init |  | +0.0 [" in text  # autoencoder: -0.01 points
    for bad in ("-0.0", f"{MINUS}0.0 ", f"{MINUS}0.0]", f"{MINUS}0.0,", "+-", f"+{MINUS}"):
        assert bad not in text, bad


def test_markdown_pretext_section(made):
    text = (made / "table.md").read_text()
    assert "| method | n | train steps | pixels | held-out L2 | mean-fill L2 (same pixels) | ratio |" in text
    assert "| autoencoder | 2 | 100 | whole image | 0.1200 ± 0.0000 | 0.3150 ± 0.0071 | 0.38 |" in text
    assert "| context_encoder | 2 | 100 | hole | 0.1500 ± 0.0141 | 0.3000 ± 0.0000 | 0.50 |" in text
    assert "Left out, no held-out metrics in their records: random_init." in text
    assert "| random_init | 2 | 0 |" not in text


def test_markdown_paper_numbers_are_labelled_as_the_papers(made):
    text = (made / "table.md").read_text()
    assert "the paper's published numbers (Pathak et al. 2016" in text and "| paper: VOC07" in text


def test_csv_is_long_and_unscaled(made):
    frame = pd.read_csv(made / "table.csv", keep_default_na=False)
    assert frame.columns.tolist() == ["probe", "kind", "protocol", "metric", "layer", "method", "n", "mean", "std",
                                      "values", "baseline", "delta", "ci_low", "ci_high", "p_value", "significant"]
    assert len(frame) == 3 * 5 + 3
    row = frame[(frame["layer"] == "conv3") & (frame["method"] == "context_encoder")].iloc[0]
    assert row["values"] == "0.2;0.21;0.22" and float(row["delta"]) == pytest.approx(0.10)
    assert row["significant"] == "True" and row["kind"] == "frozen"
    single = frame[(frame["probe"] == "seg-camvid") & (frame["method"] == "context_encoder")].iloc[0]
    assert single["significant"] == "" and single["std"] == "" and single["layer"] == ""


def test_latex_is_plain_ascii_with_one_hline_tabular_per_probe(made):
    tex = (made / "table.tex").read_text()
    assert tex.isascii() and tex.startswith("% Made by ")
    assert "\\toprule" not in tex and "\\midrule" not in tex and "\\usepackage" not in tex
    assert tex.count("\\noindent\\begin{tabular}") == 2 + 2  # two probes, pretext, paper (Δ cells nest their own)
    assert "random\\_init" in tex and "$\\pm$" in tex and "\\textbf{+10.0}" in tex and "$\\Delta$" in tex
    allowed = {"documentclass", "begin", "end", "subsection", "noindent", "par", "smallskip", "medskip",
               "footnotesize", "setlength", "tabcolsep", "hline", "textbf", "texttt", "pm", "Delta", "hookrightarrow",
               "ldots", "textbackslash", "times", "rightarrow", "geq", "leq", "mu", "cdot", "textasciitilde",
               "textasciicircum", "raggedright", "textwidth", "oddsidemargin", "evensidemargin"}  # all in the kernel
    assert set(re.findall(r"\\([A-Za-z]+)", tex)) <= allowed
    body = re.sub(r"\\[{}%&#$_]", "", tex.split("\n", 1)[1].replace("\\\\", ""))  # drop \\ and escapes
    assert body.count("{") == body.count("}") and body.replace("\\$", "").count("$") % 2 == 0


@pytest.mark.skipif(shutil.which("latex") is None, reason="no LaTeX installed")
def test_latex_compiles_without_packages_or_overfull_tables(made, tmp_path):
    result = subprocess.run(["latex", "-interaction=nonstopmode", "-halt-on-error", str(made / "table.tex")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "Overfull" not in (tmp_path / "table.log").read_text()


def test_figures_are_written_as_png(made):
    for name in ("figure.png", "layers.png", "delta.png", "pretext.png"):
        data = (made / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    provenance = json.loads((made / "provenance.json").read_text())
    assert len(provenance["records"]) == 20 and provenance["command"].startswith("ssl-ctx table ")


def test_existing_tables_are_kept_unless_overwrite(tmp_path):
    write_probe(tmp_path, "seg", "random_init", 0, {"miou": 0.25}, task="segmentation", metric="miou")
    table_command(tmp_path, command="ssl-ctx bench my.yaml")
    assert not any((tmp_path / "tables" / name).exists() for name in ("layers.png", "delta.png", "pretext.png"))
    with pytest.raises(UserError) as refused:
        table_command(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / "tables") in message and "`ssl-ctx bench my.yaml`" in message
    assert "pass --overwrite to replace them or -o DIR to write elsewhere" in message
    table_command(tmp_path, overwrite=True)
    assert json.loads((tmp_path / "tables" / "provenance.json").read_text())["command"].endswith("--overwrite")


def test_cli_table_end_to_end(tmp_path, capsys):
    synthetic_runs(tmp_path)
    arguments = ["table", str(tmp_path), "-o", str(tmp_path / "out"), "--baseline", "autoencoder"]
    result = subprocess.run([sys.executable, "-m", "ssl_ctx", *arguments], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| ↳ Δ vs autoencoder |" in result.stdout and "| autoencoder | 3 |" in result.stdout
    assert (tmp_path / "out" / "table.md").read_text() in result.stdout
    # The refusal and --overwrite in-process: a second interpreter would only add its start-up time.
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("ssl-ctx: error: ") and error.count("\n") == 0 and "--overwrite" in error
    assert main([*arguments, "--overwrite"]) == 0


# --- a further comparison: the context encoder against the autoencoder ----------------------------------------

def test_a_further_comparison_adds_rows_beside_the_baselines(tmp_path):
    frame = collect_records(synthetic_runs(tmp_path))
    summary = summarise(frame, "random_init", comparisons=[("context_encoder", "autoencoder")])
    cls = summary[summary["probe"] == "cls-tiny"]
    against_ae = cls[(cls["method"] == "context_encoder") & (cls["baseline"] == "autoencoder")]
    against_random = cls[(cls["method"] == "context_encoder") & (cls["baseline"] == "random_init")]
    assert list(against_ae["column"]) == list(LAYERS) and len(against_random) == 5
    ce = np.array(LAYER_SCORES["context_encoder"])
    ae = np.array(LAYER_SCORES["autoencoder"])
    for index, (_, row) in enumerate(against_ae.iterrows()):
        expected = welch_compare(ce[:, index], ae[:, index])
        assert row["delta"] == pytest.approx(ce[:, index].mean() - ae[:, index].mean(), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), abs=1e-12)
    # The same method numbers on both rows; the autoencoder itself is still compared with the baseline only.
    assert list(against_ae["mean"]) == list(against_random["mean"])
    assert set(cls.loc[cls["method"] == "autoencoder", "baseline"]) == {"random_init"}
    # A pair whose method has no records (seg-camvid has one seed of the context encoder: still a row, no test).
    seg = summary[(summary["probe"] == "seg-camvid") & (summary["baseline"] == "autoencoder")]
    assert len(seg) == 1 and seg["significant"].iloc[0] is None


def test_the_comparison_reaches_the_markdown_csv_and_provenance(tmp_path):
    root = synthetic_runs(tmp_path)
    table_command(root, comparisons=[("context_encoder", "autoencoder")])
    markdown = (root / "tables" / "table.md").read_text()
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    ce_row = next(i for i, line in enumerate(lines) if line.startswith("| context_encoder | 3 |"))
    assert lines[ce_row + 1].startswith("| ↳ Δ vs random_init |")
    assert lines[ce_row + 2].startswith("| ↳ Δ vs autoencoder |") and "**+" in lines[ce_row + 2]
    csv = pd.read_csv(root / "tables" / "table.csv")
    rows = csv[(csv["method"] == "context_encoder") & (csv["baseline"] == "autoencoder")]
    assert set(rows["probe"]) == {"cls-tiny", "seg-camvid"} and len(rows) == 6
    provenance = json.loads((root / "tables" / "provenance.json").read_text())
    assert provenance["comparisons"] == [["context_encoder", "autoencoder"]]
    assert provenance["command"].endswith("--compare context_encoder:autoencoder")


def test_cli_compare_takes_method_colon_other(tmp_path, capsys):
    synthetic_runs(tmp_path)
    assert main(["table", str(tmp_path), "--compare", "context_encoder"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--compare takes METHOD:OTHER" in error and "'context_encoder'" in error
    assert main(["table", str(tmp_path), "--compare", "context_encoder:autoencoder", "--overwrite"]) == 0
    assert "| ↳ Δ vs autoencoder |" in capsys.readouterr().out


def test_one_record_can_fill_two_table_sections(tmp_path):
    """A probe whose read-outs answer two questions (the localisation probe's class and box) names its sections in
    tags.tables; each becomes a probe of its own, and other metrics stay out."""
    for method, shift in (("random_init", 0.0), ("context_encoder", 0.05)):
        for seed in range(2):
            metrics = {**{f"top1@{layer}": 0.1 + shift + 0.01 * seed for layer in LAYERS},
                       **{f"map50@{layer}": 0.03 + shift + 0.01 * seed for layer in LAYERS},
                       **{f"corloc@{layer}": 0.5 for layer in LAYERS}}
            path = write_probe(tmp_path, "classification_localisation", method, seed, metrics, task="localisation",
                               metric=None)
            record = json.loads(path.read_text())
            record["config"]["tags"]["tables"] = {"classification": "top1", "localisation": "map50"}
            path.write_text(json.dumps(record))
    frame = collect_records(tmp_path)
    assert list(pd.unique(frame["probe"])) == ["classification", "localisation"]
    assert set(frame.loc[frame["probe"] == "classification", "metric"]) == {"top1"}
    assert set(frame.loc[frame["probe"] == "localisation", "metric"]) == {"map50"}
    markdown = table_command(tmp_path) is not None and (tmp_path / "tables" / "table.md").read_text()
    assert "### classification\n" in markdown and "### localisation\n" in markdown and "corloc" not in markdown


def test_paper_puts_the_published_number_beside_the_probe_that_reproduces_it(tmp_path):
    """A bench probe tagged with a column of the paper's Table 2 (``paper: classification``) gets that column's
    published number beside each method of the same name with --paper (and only then); a method the paper has
    no row for gets a dash, and the separate reference table is left out since the numbers stand in place."""
    for method, value in (("random_init", 0.40), ("context_encoder", 0.45), ("my_method", 0.5)):
        for seed in range(2):
            path = write_probe(tmp_path, "voc07_classification_finetune", method, seed, {"map": value + 0.01 * seed},
                               task="multilabel_classification", mode="finetune", metric="map", kind="fine-tuned")
            record = json.loads(path.read_text())
            record["config"]["tags"]["paper"] = "classification"
            path.write_text(json.dumps(record))
    table_command(tmp_path, paper=True)
    lines = (tmp_path / "tables" / "table.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    assert header.endswith("| paper: VOC07 classification mAP |")
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert rows["context_encoder"].endswith("| 56.5 |") and rows["random_init"].endswith("| 53.3 |")
    assert rows["my_method"].endswith("| — |")
    assert "not a result of this run" in "\n".join(lines) and "### paper (not our numbers)" not in "\n".join(lines)
    table_command(tmp_path, overwrite=True)
    assert "paper:" not in (tmp_path / "tables" / "table.md").read_text()
