#!/usr/bin/env python3
"""Runs every dashboard query against a live Prometheus (Python 3 stdlib only).

Each panel query and each variable query of dashboards/grafana/*.json is evaluated with
/api/v1/query, variables replaced by `.*` and Grafana's built-ins by fixed values
($__rate_interval by --rate-interval). A query fails if Prometheus cannot parse or run
it, or if it returns no series: a panel naming a metric nothing exports has no data.

Unless --no-rules, it also checks /api/v1/rules: every rule of dashboards/rules/*.yml is
loaded, and none reports an evaluation error.

With --wait SECONDS, failing queries are retried until they pass or the time is up (for a
Prometheus that has only just started scraping).

    dashboards/live_check.py --prometheus http://127.0.0.1:9090 [--wait 60]

Exits 0 when everything passes, 1 otherwise, 2 when Prometheus cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate_dashboards as vd  # noqa: E402  (the same parsing of dashboards and rules)


class Unreachable(Exception):
    pass


def api_get(base: str, path: str, params: dict[str, str] | None = None, timeout: float = 10.0) -> dict:
    url = base.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        # Prometheus answers 400/422 with a JSON body naming the error.
        try:
            return json.load(e)
        except ValueError:
            return {"status": "error", "error": f"HTTP {e.code}"}
    except (urllib.error.URLError, OSError) as e:
        raise Unreachable(f"{url}: {e}") from e


def collect_queries(root: Path) -> list[tuple[str, str]]:
    """(where, expr with variables substituted) for every panel and variable query."""
    queries: list[tuple[str, str]] = []
    for path in sorted((root / "grafana").glob("*.json")):
        board = json.loads(path.read_text())
        for var in (board.get("templating") or {}).get("list") or []:
            if var.get("type") != "query":
                continue
            expr = vd.variable_query_expr(vd.variable_query(var))
            if expr is not None:
                queries.append((f"{path.name}: variable ${var.get('name')}", expr))
        for panel in vd.all_panels(board.get("panels") or []):
            for target in panel.get("targets") or []:
                expr = (target.get("expr") or "").strip()
                if expr:
                    where = f"{path.name}: panel {panel.get('id')} {panel.get('title')!r} query {target.get('refId')}"
                    queries.append((where, expr))
    return queries


def run_query(base: str, expr: str, rate_interval: str, timeout: float) -> tuple[bool, str]:
    concrete = vd.substitute(expr, {"__rate_interval": rate_interval})
    body = api_get(base, "/api/v1/query", {"query": concrete}, timeout)
    if body.get("status") != "success":
        return False, f"error: {body.get('errorType', '')} {body.get('error', body)}".strip()
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        return True, "scalar"
    if not result:
        return False, "no data"
    return True, f"{len(result)} series"


def check_rules(base: str, root: Path, timeout: float) -> list[str]:
    body = api_get(base, "/api/v1/rules", None, timeout)
    if body.get("status") != "success":
        return [f"/api/v1/rules: {body.get('error', body)}"]
    loaded: dict[str, dict] = {}
    for group in (body.get("data") or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            loaded[rule.get("name")] = rule
    problems = []
    wanted = set(vd.recording_rules(root))
    for path in sorted((root / "rules").glob("*.yml")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("- alert:"):
                wanted.add(line.split(":", 1)[1].strip())
    for name in sorted(wanted):
        rule = loaded.get(name)
        if rule is None:
            problems.append(f"rule {name}: not loaded by Prometheus (is rule_files pointing at dashboards/rules?)")
        elif rule.get("health") == "err":
            problems.append(f"rule {name}: {rule.get('lastError')}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", required=True, metavar="URL", help="e.g. http://127.0.0.1:9090")
    parser.add_argument("--root", type=Path, default=vd.HERE, help="the dashboards folder (default: this script's)")
    parser.add_argument("--rate-interval", default="1m", help="value of $__rate_interval (default 1m)")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="retry failing queries for this long (default: no retry)")
    parser.add_argument("--timeout", type=float, default=10, help="per-request timeout in seconds")
    parser.add_argument("--no-rules", action="store_true", help="skip the /api/v1/rules check")
    args = parser.parse_args()

    queries = collect_queries(args.root)
    if not queries:
        print(f"live_check: no dashboard queries under {args.root / 'grafana'}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.wait
    pending = list(queries)
    results: dict[str, tuple[bool, str]] = {}
    rule_problems: list[str] = []
    try:
        while True:
            still = []
            for where, expr in pending:
                ok, detail = run_query(args.prometheus, expr, args.rate_interval, args.timeout)
                results[where] = (ok, detail)
                # A query Prometheus rejects will not get better by waiting.
                if not ok and not detail.startswith("error"):
                    still.append((where, expr))
            rule_problems = [] if args.no_rules else check_rules(args.prometheus, args.root, args.timeout)
            pending = still
            if (not pending and not rule_problems) or time.monotonic() >= deadline:
                break
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    except Unreachable as e:
        print(f"live_check: cannot reach Prometheus: {e}", file=sys.stderr)
        return 2

    failures = 0
    for where, expr in queries:
        ok, detail = results[where]
        if ok:
            print(f"ok    {where}: {detail}")
        else:
            failures += 1
            print(f"FAIL  {where}: {detail}\n      {vd.substitute(expr, {'__rate_interval': args.rate_interval})}")
    for problem in rule_problems:
        failures += 1
        print(f"FAIL  {problem}")
    print(f"live_check: {len(queries)} queries, {failures} failure(s) against {args.prometheus}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
