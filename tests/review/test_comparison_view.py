"""The review app's Comparison tab, headless: the latest comparison line as a table."""

from __future__ import annotations

from tests.report.test_comparison_section import record
from tests.review.fixtures import append, make_run, open_app


def test_comparison_tab_shows_the_latest_line(reports):
    run_dir = make_run(reports, "r1")
    fields = {k: v for k, v in record().items() if k not in ("type", "seq")}
    append(run_dir, "comparison", **fields)
    at = open_app(page="Review", run="r1")
    table = next(d.value for d in at.dataframe if "IAE mean [95% CI]" in d.value.columns)
    assert list(table["Controller"]) == ["policy", "pid", "<script>x</script>"]
    assert table.iloc[0]["Return mean [95% CI]"] == "-20 [-21, -19]"
