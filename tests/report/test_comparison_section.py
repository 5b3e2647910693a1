"""The comparison section (report) and frame (review app) from ``comparison`` lines, including
hostile or malformed lines."""

from __future__ import annotations

from safe_trpo.report.comparison import comparison_figure, comparison_rows, comparison_section
from safe_trpo.review.comparison_view import comparison_frame


def _stat(mean: float) -> dict:
    return {"mean": mean, "lo": mean - 1, "hi": mean + 1, "min": mean - 2, "max": mean + 2}


def record(tracked: str = "ca", safety: str = "temperature") -> dict:
    series = {tracked: [0.8, 0.85, 0.86], "ca_setpoint": [0.85] * 3, safety: [330.0] * 3,
              "valve_opening": [0.5, 0.6, 0.6]}
    entry = {"episodes": 20, "return": _stat(-20.0), "iae": _stat(0.5),
             "valve_travel": _stat(1.5), "settling_minutes": _stat(2.0),
             "setpoint_steps": 60, "unsettled_steps": 3,
             "constraints": [{"name": "runaway", "limit": 0.25, "ep_cost": _stat(0.0),
                              "episodes_over": 0, "over": {"frac": 0, "lo": 0, "hi": 0.16}}]}
    return {"type": "comparison", "seq": 9, "episodes": 20, "seed": 3, "dt_minutes": 0.5,
            "plant": {"tracked": tracked, "setpoint": "ca_setpoint", "safety": safety,
                      "unit": "mol/L", "safety_unit": "K"},
            "limits_drawn": {"safe band": 340.0, "runaway": 350.0},
            "order": ["policy", "pid", "<script>x</script>"],
            "controllers": {"policy": entry, "pid": entry,
                            "<script>x</script>": {**entry, "solve_ms": {
                                "median": 20.0, "p95": 40.0, "max": 90.0, "solves": 2400,
                                "failures": 1}}},
            "example": {"policy": series, "pid": series}}


def test_rows_carry_each_figure_and_each_constraint():
    headers, rows = comparison_rows(record())
    assert len(rows) == 3 and headers[-1].startswith("runaway")
    assert rows[0][2] == "-20 [-21, -19]" and rows[0][3] == "-22"
    assert rows[0][-1] == "0 / 2 (0.25), 0 [0, 0.16]"
    assert comparison_frame(record()).shape == (3, len(headers))


def test_section_escapes_and_draws():
    html = comparison_section([{"type": "update"}, record()])
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert 'src="data:image/png;base64,' in html and "median 20 ms" in html
    assert "No comparison" in comparison_section([])


def test_malformed_lines_show_dashes_not_errors():
    bad = {"type": "comparison", "controllers": {"pid": {"return": "oops", "constraints": [7]}},
           "example": {"pid": {"ca": ["x", None]}}, "plant": "nope", "dt_minutes": "?"}
    headers, rows = comparison_rows(bad)
    assert rows[0][2] == "\u2014 [\u2014, \u2014]"
    assert "Comparison with baselines" in comparison_section([bad])


def test_figure_panels():
    assert len(comparison_figure(record()).axes) == 3
    # the vessel: the tracked variable is the safety variable, one panel for both
    assert len(comparison_figure(record("pressure", "pressure")).axes) == 2
