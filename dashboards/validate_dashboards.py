#!/usr/bin/env python3
"""Static checks of the Grafana dashboards in dashboards/grafana/ (Python 3 stdlib only).

For every dashboard JSON file:
  - it parses, has a uid (unique across files), a title and an integer schemaVersion;
  - panel ids are unique (row panels and panels nested in collapsed rows included);
  - every `datasource` anywhere in it is {"type": "prometheus", "uid": <uid>}, with the uid
    of the provisioned datasource (grafana/provisioning/datasources/*.yml);
  - every panel but a row has a description, a unit (fieldConfig.defaults.unit) and at
    least one query;
  - every `$var` a query uses is a templating variable (or a Grafana built-in such as
    $__rate_interval), and a variable inside a label matcher is matched with =~ or !~
    (the variables are multi-value);
  - every PromQL expression names only known metrics: those in exported-metrics.txt
    (written from the code), the recording rules of rules/*.yml, and `up`; and calls
    only PromQL functions.

And for the rules: every alert has a summary, a description and a runbook_url pointing at
a heading of README.md.

With --emit-rules FILE it also writes every panel and variable query, variables replaced
by values, as recording rules, so that `promtool check rules FILE` proves they parse.

Exits 1 with one line per problem, 0 with a summary.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Grafana's own variables; the values are what live_check.py and --emit-rules use.
BUILTIN_VARS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan",
    "tanh", "time", "timestamp", "vector", "year",
}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan",
}
GROUPING = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"

VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
TOKEN_RE = re.compile(r"\d[\w.]*|[A-Za-z_:][\w:]*")


def variables_in(text: str) -> list[str]:
    """Names of the Grafana variables `text` uses."""
    return [a or b or c for a, b, c in VAR_RE.findall(text)]


def substitute(expr: str, values: dict[str, str], default: str = ".*") -> str:
    """Replaces Grafana variables by values: built-ins by BUILTIN_VARS, others by `default`."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return values.get(name, BUILTIN_VARS.get(name, default))

    return VAR_RE.sub(repl, expr)


def metric_names(expr: str) -> tuple[set[str], list[str]]:
    """The metric names a PromQL expression selects, and problems found on the way.

    Not a parser: strings, label matchers, ranges and grouping label lists are removed,
    and what is left that is neither a number, a keyword nor a function call is a metric.
    """
    problems: list[str] = []
    names: set[str] = set()
    text = substitute(expr, {}, default="0")
    for m in re.finditer(r"__name__\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", text):
        if m.group(1) == "=":
            names.add(m.group(2))
        else:
            problems.append(f"cannot check a {m.group(1)} matcher on __name__; name the metric")
    text = STRING_RE.sub('""', text)
    for opening, closing in ("()", "[]", "{}"):
        if text.count(opening) != text.count(closing):
            problems.append(f"unbalanced {opening}{closing}")
    text = re.sub(r"\{[^{}]*\}", "{}", text)
    text = re.sub(r"\[[^\[\]]*\]", "[]", text)
    text = re.sub(GROUPING, r"\1", text)
    for m in TOKEN_RE.finditer(text):
        token = m.group(0)
        if token[0].isdigit():
            continue
        if token.lower() in KEYWORDS:
            continue
        rest = text[m.end():].lstrip()
        if rest.startswith("("):
            if token not in FUNCTIONS and token not in AGGREGATIONS:
                problems.append(f"unknown function {token}()")
            continue
        if token in AGGREGATIONS and re.match(r"(by|without)\b", rest):
            continue
        names.add(token)
    return names, problems


def load_known_metrics(root: Path) -> tuple[set[str], list[str]]:
    """Exported metrics (histograms as their _bucket/_sum/_count), recorded rules, `up`."""
    problems: list[str] = []
    known = {"up"}
    exported = root / "exported-metrics.txt"
    try:
        lines = exported.read_text().splitlines()
    except OSError as e:
        return known, [f"{exported}: {e}"]
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in {"counter", "gauge", "histogram"}:
            problems.append(f"{exported}:{number}: expected `<name> counter|gauge|histogram`")
            continue
        name, kind = fields
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            problems.append(f"{exported}:{number}: {name!r} is not a metric name")
        if kind == "histogram":
            known.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            if kind == "counter" and not name.endswith("_total"):
                problems.append(f"{exported}:{number}: counter {name} should end in _total")
            known.add(name)
    recorded = recording_rules(root)
    if not recorded:
        problems.append(f"{root / 'rules'}: no recording rules found")
    return known | recorded, problems


def recording_rules(root: Path) -> set[str]:
    names = set()
    for path in sorted((root / "rules").glob("*.yml")):
        for m in re.finditer(r"^\s*-?\s*record:\s*[\"']?([\w:]+)", path.read_text(), re.M):
            names.add(m.group(1))
    return names


def provisioned_uid(root: Path) -> tuple[str | None, list[str]]:
    folder = root / "grafana" / "provisioning" / "datasources"
    uids = []
    for path in sorted(folder.glob("*.y*ml")):
        text = path.read_text()
        if re.search(r"^\s*type:\s*[\"']?prometheus", text, re.M):
            uids += re.findall(r"^\s*uid:\s*[\"']?([\w.-]+)", text, re.M)
    if len(uids) != 1:
        return None, [f"{folder}: expected one provisioned prometheus datasource with a uid, found {uids}"]
    return uids[0], []


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out += all_panels(panel.get("panels") or [])
    return out


def datasource_refs(node, path="$"):
    """Every (json path, value) of a `datasource` key anywhere under node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.datasource", value
            yield from datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from datasource_refs(value, f"{path}[{i}]")


def variable_query_expr(query: str) -> str | None:
    """The PromQL a Grafana Prometheus variable query evaluates, None for label_values(label)."""
    query = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", query, re.S)
    if m:
        return f"count by ({m.group(2)}) ({m.group(1)})"
    if re.fullmatch(r"label_values\(\s*\w+\s*\)", query):
        return None
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return m.group(1)
    raise ValueError(f"unsupported variable query {query!r}")


def variable_query(var: dict) -> str:
    query = var.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or var.get("definition", "")


def check_expr(where: str, expr: str, known: set[str], var_names: set[str]) -> list[str]:
    problems = []
    for name in variables_in(expr):
        if name not in var_names and name not in BUILTIN_VARS:
            problems.append(f"{where}: uses ${name}, which is not a templating variable")
    for m in re.finditer(r"(\w+)\s*(=|!=)\s*\"[^\"]*\$", expr):
        problems.append(f"{where}: label {m.group(1)} matches a variable with {m.group(2)}; "
                        "use =~ (the variables are multi-value regexes)")
    names, parse_problems = metric_names(expr)
    problems += [f"{where}: {p}" for p in parse_problems]
    for name in sorted(names - known):
        problems.append(f"{where}: metric {name} is not exported by the code (exported-metrics.txt), "
                        "recorded in rules/, or `up`")
    return problems


def check_dashboard(path: Path, uid: str, known: set[str], queries: list[tuple[str, str]]) -> tuple[list[str], int, int]:
    """Problems of one dashboard; appends (label, expr) of every query to `queries`."""
    problems: list[str] = []
    try:
        board = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [f"{path.name}: not valid JSON: {e}"], 0, 0
    name = path.name
    if not isinstance(board.get("schemaVersion"), int):
        problems.append(f"{name}: schemaVersion missing or not an integer")
    for key in ("uid", "title"):
        if not board.get(key):
            problems.append(f"{name}: no {key}")
    want = {"type": "prometheus", "uid": uid}
    for where, ref in datasource_refs(board):
        if ref != want:
            problems.append(f"{name}: {where} is {json.dumps(ref)}, expected {json.dumps(want)}")

    variables = (board.get("templating") or {}).get("list") or []
    var_names = {v.get("name") for v in variables}
    if len(var_names) != len(variables):
        problems.append(f"{name}: duplicate templating variable names")
    for required in ("job", "instance"):
        if required not in var_names:
            problems.append(f"{name}: no `{required}` templating variable")
    for var in variables:
        where = f"{name}: variable ${var.get('name')}"
        if var.get("type") != "query":
            continue
        if var.get("datasource") is None:
            problems.append(f"{where}: no datasource")
        query = variable_query(var)
        try:
            expr = variable_query_expr(query)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if expr is not None:
            problems += check_expr(where, expr, known, var_names)
            queries.append((f"{where}", expr))

    panels = all_panels(board.get("panels") or [])
    ids = [p.get("id") for p in panels]
    for i in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        problems.append(f"{name}: panel id {i} is used more than once")
    n_queries = 0
    for panel in panels:
        where = f"{name}: panel {panel.get('id')} {panel.get('title')!r}"
        if not isinstance(panel.get("id"), int):
            problems.append(f"{where}: id missing or not an integer")
        if panel.get("type") == "row":
            continue
        if not (panel.get("description") or "").strip():
            problems.append(f"{where}: no description")
        unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            problems.append(f"{where}: no unit (fieldConfig.defaults.unit)")
        if panel.get("datasource") is None:
            problems.append(f"{where}: no datasource")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no queries")
        for target in targets:
            twhere = f"{where} query {target.get('refId')}"
            expr = (target.get("expr") or "").strip()
            if not expr:
                problems.append(f"{twhere}: empty expr")
                continue
            if target.get("datasource") is None:
                problems.append(f"{twhere}: no datasource")
            problems += check_expr(twhere, expr, known, var_names)
            queries.append((twhere, expr))
            n_queries += 1
    return problems, len(panels), n_queries


def github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def check_runbooks(root: Path) -> tuple[list[str], int]:
    problems = []
    readme = root / "README.md"
    try:
        text = readme.read_text()
    except OSError as e:
        return [f"{readme}: {e}"], 0
    anchors = {github_anchor(h) for h in re.findall(r"^#+\s+(.*)$", text, re.M)}
    count = 0
    for path in sorted((root / "rules").glob("*.yml")):
        blocks = re.split(r"^\s*-\s*(?=alert:)", path.read_text(), flags=re.M)[1:]
        for block in blocks:
            alert = re.match(r"alert:\s*(\S+)", block).group(1)
            count += 1
            where = f"{path.name}: alert {alert}"
            block = re.split(r"^\s*-\s*(?:record|alert):", block, flags=re.M)[0]
            for key in ("summary", "description", "runbook_url"):
                if not re.search(rf"^\s+{key}:\s*\S", block, re.M):
                    problems.append(f"{where}: no {key} annotation")
            m = re.search(r"^\s+runbook_url:\s*[\"']?([^\"'\s]+)", block, re.M)
            if m:
                url = m.group(1)
                if not url.startswith("dashboards/README.md#"):
                    problems.append(f"{where}: runbook_url {url} does not point into dashboards/README.md")
                elif url.split("#", 1)[1] not in anchors:
                    problems.append(f"{where}: runbook_url anchor #{url.split('#', 1)[1]} is not a heading of README.md")
    return problems, count


def emit_rules(queries: list[tuple[str, str]], target: Path) -> None:
    """Writes every query as a recording rule, so promtool can parse it."""
    lines = ["# Generated by validate_dashboards.py --emit-rules: every dashboard query, for",
             "# `promtool check rules` to parse. Not loaded by Prometheus.", "groups:",
             "  - name: dashboard-queries", "    rules:"]
    for i, (where, expr) in enumerate(queries):
        concrete = substitute(expr, {})
        lines.append(f"      # {where}")
        lines.append(f"      - record: dashboard_query:{i}")
        lines.append(f"        expr: {json.dumps(concrete)}")
    target.write_text("\n".join(lines) + "\n")


def validate(root: Path, emit: Path | None = None) -> tuple[list[str], str]:
    problems: list[str] = []
    uid, p = provisioned_uid(root)
    problems += p
    known, p = load_known_metrics(root)
    problems += p
    files = sorted((root / "grafana").glob("*.json"))
    if not files:
        problems.append(f"{root / 'grafana'}: no dashboard JSON files")
    uids: dict[str, str] = {}
    queries: list[tuple[str, str]] = []
    n_panels = n_queries = 0
    for path in files:
        p, panels, nq = check_dashboard(path, uid or "?", known, queries)
        problems += p
        n_panels += panels
        n_queries += nq
        try:
            board_uid = json.loads(path.read_text()).get("uid")
        except ValueError:
            continue
        if board_uid in uids:
            problems.append(f"{path.name}: uid {board_uid} is also the uid of {uids[board_uid]}")
        uids[board_uid] = path.name
    p, n_alerts = check_runbooks(root)
    problems += p
    if emit is not None:
        emit_rules(queries, emit)
    summary = (f"{len(files)} dashboards, {n_panels} panels, {n_queries} panel queries, "
               f"{len(known)} known series names, {n_alerts} alerts with runbooks: all valid")
    return problems, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE, help="the dashboards folder (default: this script's)")
    parser.add_argument("--emit-rules", type=Path, metavar="FILE",
                        help="also write every query as a recording rule to FILE, for promtool check rules")
    args = parser.parse_args()
    problems, summary = validate(args.root, args.emit_rules)
    if problems:
        for problem in problems:
            print(f"dashboards: {problem}", file=sys.stderr)
        print(f"dashboards: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"dashboards: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
