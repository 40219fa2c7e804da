"""HTML pages over the dashboard payloads: the runs page, a run's page and the corpus
report. Each page is rendered from the same payload dict the JSON API returns (embedded in
the page as ``<script id="payload">``), so a page and the API cannot disagree.

Charts are plotly figures described as plain dicts and drawn by plotly.js, taken from the
installed plotly package (served by `policy serve` or inlined into a static report), never
from a CDN: the machines that look at these have no internet. Tables are plain HTML, so the
numbers read without JavaScript. Jinja2 escapes every value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import jinja2
import plotly.io as pio
from markupsafe import Markup

OUTCOME_COLOURS = {"allowed": "#2e7d32", "trimmed": "#ef6c00", "blocked": "#c62828", "invalid": "#757575"}
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT = {
    "margin": {"l": 56, "r": 48, "t": 40, "b": 44},
    "height": 340,
    "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    "plot_bgcolor": "#ffffff",
    "xaxis": {"gridcolor": "#eef1f4"},
    "yaxis": {"gridcolor": "#eef1f4"},
}


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("policy_engine.adapters", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@functools.cache
def plotly_js() -> str:
    """plotly.js as shipped inside the installed plotly package."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _layout(**extra: Any) -> dict[str, Any]:
    return {**_LAYOUT, **extra}


def _div(figure: dict[str, Any], div_id: str) -> Markup:
    html = pio.to_html(
        figure,
        include_plotlyjs=False,
        full_html=False,
        validate=False,
        div_id=div_id,
        config=PLOTLY_CONFIG,
        default_height=340,
    )
    return Markup(html)


def _empty(message: str) -> dict[str, Any]:
    return {
        "data": [],
        "layout": _layout(
            xaxis={"visible": False},
            yaxis={"visible": False},
            annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}],
        ),
    }


# ---- figures (each maps payload fields to a chart; no number is derived here) -----------------


def prompt_figure(budget: dict[str, Any]) -> dict[str, Any]:
    points = budget["series"]["prompt_tokens"]
    if not points:
        return _empty("no gated calls recorded for this run")
    x = [p["seq"] for p in points]
    bars = {
        "type": "bar",
        "name": "prompt tokens",
        "x": x,
        "y": [p["value"] for p in points],
        "marker": {"color": [OUTCOME_COLOURS.get(p["outcome"], "#757575") for p in points]},
        "text": [p["reason"] if p["outcome"] == "blocked" else "" for p in points],
        "textposition": "outside",
        "cliponaxis": False,
        "customdata": [
            [p["outcome"], ", ".join(c["reasons"]) or "-", p["call_id"]]
            for p, c in zip(points, budget["calls"], strict=True)
        ],
        "hovertemplate": "call %{x}: %{y} tokens<br>%{customdata[0]} (%{customdata[1]})<br>%{customdata[2]}<extra></extra>",
    }
    limit = {
        "type": "scatter",
        "mode": "lines",
        "name": "prompt limit",
        "x": x,
        "y": [p["limit"] for p in points],
        "line": {"shape": "hvh", "color": "#1f2933", "dash": "dash"},
    }
    return {
        "data": [bars, limit],
        "layout": _layout(
            xaxis={"title": {"text": "call #"}, "dtick": 1}, yaxis={"title": {"text": "tokens"}}, showlegend=True
        ),
    }


def ladder_figure(
    rungs: list[dict[str, Any]], *, name: str, limit: int | None, colour: str | None = None
) -> dict[str, Any]:
    """One call's (or pack's) walk down the ladder: prompt tokens before the first rung and
    after each, as steps, against the prompt limit."""
    if not rungs:
        return _empty("no rung was needed")
    trace: dict[str, Any] = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": [0] + [r["rung"] for r in rungs],
        "y": [rungs[0]["prompt_tokens_before"]] + [r["prompt_tokens_after"] for r in rungs],
        "line": {"shape": "hv"},
        "text": ["start"] + [f"{r['stage']} {r['step_kind']} {r['step_value']} ({r['verdict']})" for r in rungs],
        "hovertemplate": "%{text}: %{y} tokens<extra>" + name + "</extra>",
    }
    if colour:
        trace["line"]["color"] = colour
    layout = _layout(xaxis={"title": {"text": "rung"}, "dtick": 1}, yaxis={"title": {"text": "prompt tokens"}})
    if limit is not None:
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": limit,
                "y1": limit,
                "line": {"dash": "dash", "color": "#1f2933"},
            }
        ]
    return {"data": [trace], "layout": layout}


def run_ladder_figure(budget: dict[str, Any]) -> dict[str, Any]:
    calls = [c for c in budget["calls"] if c["rungs"]]
    if not calls:
        return _empty("no call needed the ladder")
    data = []
    for c in calls:
        one = ladder_figure(
            c["rungs"], name=f"call {c['seq']} ({c['outcome']}{': ' + c['reason'] if c['reason'] else ''})", limit=None
        )
        data.extend(one["data"])
    limit = (
        budget["limits"].get("request_prompt", {}).get("value")
        if isinstance(budget["limits"].get("request_prompt"), dict)
        else None
    )
    layout = _layout(
        xaxis={"title": {"text": "rung"}, "dtick": 1}, yaxis={"title": {"text": "prompt tokens"}}, showlegend=True
    )
    if limit is not None:
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": limit,
                "y1": limit,
                "line": {"dash": "dash", "color": "#1f2933"},
            }
        ]
    return {"data": data, "layout": layout}


def day_figure(budget: dict[str, Any]) -> dict[str, Any]:
    points = budget["series"]["day_spend"]
    if not points:
        return _empty("no gated calls recorded for this run")
    x = [p["seq"] for p in points]
    settled = {
        "type": "scatter",
        "mode": "lines",
        "name": "run's settled tokens (cumulative)",
        "x": x,
        "y": [p["run_settled_tokens"] for p in points],
        "line": {"shape": "hv", "color": "#1565c0"},
        "fill": "tozeroy",
    }
    projected = {
        "type": "scatter",
        "mode": "markers",
        "name": "projected day total at the call",
        "x": x,
        "y": [p["projected_day_tokens"] for p in points],
        "marker": {"size": 9, "color": [OUTCOME_COLOURS.get(p["outcome"], "#757575") for p in points]},
        "customdata": [p["outcome"] for p in points],
        "hovertemplate": "call %{x}: %{y} projected (%{customdata})<extra></extra>",
    }
    cap = {
        "type": "scatter",
        "mode": "lines",
        "name": "day cap",
        "x": x,
        "y": [p["day_limit"] for p in points],
        "line": {"shape": "hvh", "color": "#c62828", "dash": "dash"},
    }
    return {
        "data": [settled, projected, cap],
        "layout": _layout(
            xaxis={"title": {"text": "call #"}, "dtick": 1}, yaxis={"title": {"text": "tokens"}}, showlegend=True
        ),
    }


def kpi_figure(kpi: dict[str, Any]) -> dict[str, Any]:
    series = kpi["series"]
    if not series["novelty"]:
        return _empty("no call went ahead: no KPIs yet")
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "novelty",
            "x": [p["seq"] for p in series["novelty"]],
            "y": [p["value"] for p in series["novelty"]],
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "explore ratio",
            "x": [p["seq"] for p in series["explore_ratio"]],
            "y": [p["value"] for p in series["explore_ratio"]],
        },
        {
            "type": "bar",
            "name": "coverage (subcategories)",
            "x": [p["seq"] for p in series["coverage"]],
            "y": [p["value"] for p in series["coverage"]],
            "yaxis": "y2",
            "opacity": 0.3,
        },
    ]
    shapes = []
    for name, colour in (("novelty", "#1565c0"), ("explore_ratio", "#ef6c00")):
        threshold = kpi["gauges"][name]["threshold"]
        if threshold is not None:
            shapes.append(
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": threshold,
                    "y1": threshold,
                    "line": {"dash": "dot", "color": colour},
                }
            )
    layout = _layout(
        xaxis={"title": {"text": "call #"}, "dtick": 1},
        yaxis={"title": {"text": "ratio"}, "range": [0, 1.05]},
        yaxis2={"title": {"text": "subcategories"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
        shapes=shapes,
        showlegend=True,
    )
    return {"data": data, "layout": layout}


def runs_figure(runs: dict[str, Any]) -> dict[str, Any]:
    rows = list(reversed(runs["runs"]))  # oldest first, left to right
    return {
        "data": [
            {
                "type": "bar",
                "name": "settled tokens",
                "x": [r["run_id"] for r in rows],
                "y": [r["tokens"] for r in rows],
                "customdata": [[r["calls"], r["blocked"], r["usd"]] for r in rows],
                "hovertemplate": "%{x}: %{y} tokens, %{customdata[0]} calls, %{customdata[1]} blocked, $%{customdata[2]}<extra></extra>",
            }
        ],
        "layout": _layout(
            xaxis={"title": {"text": "run"}, "type": "category"}, yaxis={"title": {"text": "settled tokens"}}
        ),
    }


def corpus_figure(corpus: dict[str, Any]) -> dict[str, Any]:
    packs = [p for p in corpus["packs"] if p["prompt_tokens"] is not None]
    if not packs:
        return _empty("no valid pack")
    x = [
        f"{i}. {p['file'].replace(chr(92), '/').rsplit('/', 1)[-1]}" for i, p in enumerate(packs, start=1)
    ]  # unique labels: a category axis merges equal ones
    return {
        "data": [
            {
                "type": "bar",
                "name": "prompt tokens",
                "x": x,
                "y": [p["prompt_tokens"] for p in packs],
                "marker": {"color": [OUTCOME_COLOURS[p["outcome"]] for p in packs]},
                "text": [p["reason"] or "" for p in packs],
                "textposition": "outside",
                "cliponaxis": False,
            },
            {
                "type": "scatter",
                "mode": "markers",
                "name": "prompt limit",
                "x": x,
                "y": [p["prompt_limit"] for p in packs],
                "marker": {"symbol": "line-ew-open", "size": 28, "color": "#1f2933"},
            },
        ],
        "layout": _layout(xaxis={"type": "category"}, yaxis={"title": {"text": "tokens"}}, showlegend=True),
    }


# ---- pages ------------------------------------------------------------------------------------


def _plotly_tag(static_prefix: str | None) -> Markup:
    if static_prefix is None:  # a self-contained file
        return Markup('<script type="text/javascript">') + Markup(plotly_js()) + Markup("</script>")
    return Markup(f'<script src="{static_prefix}plotly.min.js"></script>')


def _payload_json(payload: Any) -> Markup:
    # "</" cannot close the script element once escaped; JSON parsers read "<\/" as "</"
    return Markup(json.dumps(payload, sort_keys=True, ensure_ascii=False).replace("</", "<\\/"))


def _links(root: str | None) -> dict[str, str] | None:
    if root is None:
        return None
    return {"runs": root, "openapi": f"{root}api/openapi.json", "metrics": f"{root}metrics"}


def runs_page(
    runs: dict[str, Any], *, db_label: str, root: str = "/", run_href: Callable[[str], str] | None = None
) -> str:
    from urllib.parse import quote

    href = run_href or (lambda run_id: f"{root}runs/{quote(run_id, safe='')}")
    charts = {"tokens": _div(runs_figure(runs), "chart-runs")} if runs["runs"] else {}
    return (
        _env()
        .get_template("runs.html")
        .render(
            runs=runs,
            charts=charts,
            run_href=href,
            db_label=db_label,
            links=_links(root),
            plotly_tag=_plotly_tag(f"{root}static/"),
            payload_json=_payload_json(runs),
        )
    )


def run_page(budget: dict[str, Any], kpi: dict[str, Any], *, db_label: str, root: str | None = "/") -> str:
    """The run page; ``root=None`` makes it one self-contained file (plotly.js inlined, no links)."""
    charts = {
        "prompt": _div(prompt_figure(budget), "chart-prompt"),
        "ladder": _div(run_ladder_figure(budget), "chart-ladder"),
        "day": _div(day_figure(budget), "chart-day"),
        "kpi": _div(kpi_figure(kpi), "chart-kpi"),
    }
    return (
        _env()
        .get_template("run.html")
        .render(
            budget=budget,
            kpi=kpi,
            charts=charts,
            db_label=db_label,
            links=_links(root),
            plotly_tag=_plotly_tag(None if root is None else f"{root}static/"),
            payload_json=_payload_json({"budget": budget, "kpi": kpi}),
        )
    )


def corpus_page(corpus: dict[str, Any]) -> str:
    """The corpus report, one self-contained file."""
    ladders = [
        json.dumps(
            ladder_figure(
                p["rungs"], name=p["file"], limit=p["prompt_limit"], colour=OUTCOME_COLOURS.get(p["outcome"])
            ),
            separators=(",", ":"),
        )
        for p in corpus["packs"]
    ]
    return (
        _env()
        .get_template("corpus.html")
        .render(
            corpus=corpus,
            charts={"prompt": _div(corpus_figure(corpus), "chart-corpus")},
            ladder_figures=ladders,
            links=None,
            plotly_tag=_plotly_tag(None),
            payload_json=_payload_json(corpus),
        )
    )
