"""Tests of live_check.py against a fake Prometheus HTTP API."""

import contextlib
import io
import json
import shutil
import sys
import tempfile
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from unittest import mock

DASHBOARDS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DASHBOARDS))
import live_check  # noqa: E402
import validate_dashboards as vd  # noqa: E402


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers every query with one series, except: a query naming `empty` gets none, one
    naming `broken` a parse error. /api/v1/rules lists every rule of rules/, healthy."""

    queries: list = []

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        params = urllib.parse.parse_qs(url.query)
        if url.path == "/api/v1/query":
            query = params["query"][0]
            FakePrometheus.queries.append(query)
            if "broken" in query:
                return self.send(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
            result = [] if "empty" in query else [{"metric": {}, "value": [0, "1"]}]
            return self.send(200, {"status": "success", "data": {"resultType": "vector", "result": result}})
        if url.path == "/api/v1/rules":
            names = sorted(vd.recording_rules(DASHBOARDS))
            for path in (DASHBOARDS / "rules").glob("*.yml"):
                names += [l.split(":", 1)[1].strip() for l in path.read_text().splitlines() if l.strip().startswith("- alert:")]
            rules = [{"name": n, "health": "ok"} for n in names]
            return self.send(200, {"status": "success", "data": {"groups": [{"name": "all", "rules": rules}]}})
        self.send(404, {"status": "error", "error": "not found"})

    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class LiveCheck(unittest.TestCase):
    def setUp(self):
        self.server = HTTPServer(("127.0.0.1", 0), FakePrometheus)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        FakePrometheus.queries = []
        self.tmp = Path(tempfile.mkdtemp())
        self.root = self.tmp / "dashboards"
        shutil.copytree(DASHBOARDS, self.root, ignore=shutil.ignore_patterns("tests", "__pycache__"))

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.tmp)

    def run_check(self, *extra):
        argv = ["live_check.py", "--prometheus", self.url, "--root", str(self.root), *extra]
        out = io.StringIO()
        with mock.patch.object(sys, "argv", argv), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(io.StringIO()):
            code = live_check.main()
        return code, out.getvalue()

    def replace_query(self, title, expr):
        path = self.root / "grafana" / "overview.json"
        board = json.loads(path.read_text())
        next(p for p in board["panels"] if p["title"] == title)["targets"][0]["expr"] = expr
        path.write_text(json.dumps(board))

    def test_every_query_is_sent_with_variables_replaced(self):
        code, out = self.run_check()
        self.assertEqual(code, 0, out)
        self.assertEqual(len(FakePrometheus.queries), len(live_check.collect_queries(self.root)))
        for query in FakePrometheus.queries:
            self.assertNotIn("$", query)
        self.assertTrue(any('instance=~".*"' in q for q in FakePrometheus.queries))
        self.assertTrue(any("[1m]" in q for q in FakePrometheus.queries))

    def test_a_query_without_data_fails(self):
        self.replace_query("Rate-limited requests", "sum(rate(empty_total[5m]))")
        code, out = self.run_check()
        self.assertEqual(code, 1)
        self.assertIn("FAIL  overview.json: panel", out)
        self.assertIn("no data", out)

    def test_a_query_prometheus_rejects_fails(self):
        self.replace_query("Rate-limited requests", "broken(")
        code, out = self.run_check()
        self.assertEqual(code, 1)
        self.assertIn("parse error", out)

    def test_a_rule_prometheus_has_not_loaded_fails(self):
        rules = self.root / "rules" / "recording.yml"
        rules.write_text(rules.read_text() + "\n  - name: extra\n    rules:\n      - record: job:not_loaded:rate5m\n        expr: vector(1)\n")
        code, out = self.run_check()
        self.assertEqual(code, 1)
        self.assertIn("rule job:not_loaded:rate5m: not loaded", out)

    def test_an_unreachable_prometheus_exits_2(self):
        self.url = "http://127.0.0.1:1"
        code, _ = self.run_check()
        self.assertEqual(code, 2)


if __name__ == "__main__":
    unittest.main()
