"""report.html: one self-contained page (the plot embedded) that a browser opens offline."""

from __future__ import annotations

import base64
import html

from .columns import (
    ALL,
    DETAILS,
    MAIN,
    answers_by_question,
    fmt,
    heading,
    legend,
    retrieval_line,
    sampling_line,
    shown,
    variant,
)

CSS = """
body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1300px;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;
padding:4px 8px;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right}
.answers{table-layout:fixed;width:100%}
.answers td{white-space:pre-wrap;overflow-wrap:anywhere}.nostop{background:#fff3f0}
.flag{color:#a33;font-weight:bold}.ref{color:#555}.note{background:#f6f8ff;padding:.5em 1em}
dl.legend dt{font-weight:bold}dl.legend dd{margin:0 0 .3em 1.5em}
.passages{font-size:12px;color:#444;white-space:normal}
"""
SCRIPT = (  # lets a headless browser check the report: the plot decoded, the tables' rows
    "<script>window.addEventListener('load',function(){var i=document.querySelector"
    "('img.plot');document.body.setAttribute('data-plot-width',i?i.naturalWidth:0);"
    "document.body.setAttribute('data-metric-rows',document.querySelectorAll"
    "('table.metrics tr.model').length);var t=document.querySelector('table.metrics');"
    "document.body.setAttribute('data-metrics-text',t?t.innerText:'');"
    "document.body.setAttribute('data-passages',document.querySelectorAll"
    "('.passages li').length);"
    "document.body.setAttribute('data-answer-columns',document.querySelectorAll"
    "('table.answers tr:first-child th').length-1);});</script>"
)


def to_html(models, rows, categories, sampling, plot, note) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mlxtune comparison</title>",
        f"<style>{CSS}</style></head><body><h1>mlxtune comparison</h1>",
        f"<p>{len(models)} models, {len(models[0].answers)} questions, "
        + e(sampling_line(models, sampling))
        + "</p>",
        f"<p class='note'>{e(note)}</p>",
    ]
    if retrieval_line(models):
        parts.append(f"<p>{e(str(retrieval_line(models)).replace('`', ''))}</p>")
    main = shown(MAIN, rows)
    parts += ["<h2>Metrics</h2>", _table(rows, main, "metrics"), _legend(main)]
    if plot:
        data = base64.b64encode(plot.read_bytes()).decode()
        parts += [
            "<h2>Loss curves</h2>",
            f"<img class='plot' alt='loss curves' src='data:image/png;base64,{data}'>",
        ]
    parts += [
        "<details><summary>All metrics and per category</summary>",
        _table(rows, shown(ALL, rows), "all"),
        _legend(shown(DETAILS, rows)),
    ]
    for category, crow in categories.items():
        parts += [f"<h3>{e(category)}</h3>", _table(crow, shown(ALL, crow), "category")]
    parts.append("</details>")
    parts += _answers(models)
    parts += [SCRIPT, "</body></html>"]
    return "\n".join(parts)


def _answers(models) -> list[str]:
    e = html.escape
    parts = [
        "<h2>Answers</h2><p><span class='flag'>did not stop</span>: the answer ran to the "
        "token limit (shaded). Retrieval variants list the passages they were given.</p>",
        "<table class='answers'><tr><th>question</th>",
    ]
    parts += [f"<th>{e(m.name)}<br><small>{e(variant(m))}</small></th>" for m in models]
    parts.append("</tr>")
    for question, answers in answers_by_question(models):
        ref = question.get("reference")
        ref_html = f"<div class='ref'>reference: {e(ref)}</div>" if ref else ""
        parts.append(
            f"<tr><td><b>{e(question['question'])}</b><br><i>{e(question['kind'])}</i>"
            f"{ref_html}</td>"
        )
        for answer in answers:
            stopped = answer["finish_reason"] == "stop"
            cls = "" if stopped else " class='nostop'"
            flag = "" if stopped else "<div class='flag'>did not stop</div>"
            parts.append(f"<td{cls}>{flag}{e(answer['answer'])}{_passages(answer)}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return parts


def _passages(answer: dict) -> str:
    passages = answer.get("passages")
    if passages is None:
        return ""
    if not passages:
        return "<div class='passages'>no passage matched</div>"
    e = html.escape
    items = "".join(
        f"<li><b>{e(p['title'] or 'untitled')}</b> ({e(p['category'])}, score "
        f"{p['score']:.2f}): {e(p['text'])}</li>"
        for p in passages
    )
    return (
        f"<details class='passages'><summary>{len(passages)} passages</summary>"
        f"<ol>{items}</ol></details>"
    )


def _table(rows: list[dict], columns, cls: str) -> str:
    e = html.escape
    head = "<tr><th>model</th><th>variant</th>" + "".join(
        f"<th>{e(heading(c))}</th>" for c in columns
    )
    body = "".join(
        f"<tr class='model'><td>{e(r['model'])}</td><td>{e(r['variant'])}</td>"
        + "".join(f"<td class='num'>{fmt(r.get(c.key), c.pattern)}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table class='{cls}'>{head}</tr>{body}</table>"


def _legend(columns) -> str:
    e = html.escape
    items = "".join(f"<dt>{e(h)}</dt><dd>{e(m)}</dd>" for h, m in legend(columns))
    return f"<dl class='legend'>{items}</dl>"
