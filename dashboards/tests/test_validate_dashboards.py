"""Tests of validate_dashboards.py: the real folder passes, and each kind of mistake is caught."""

import json
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DASHBOARDS))
import validate_dashboards as vd  # noqa: E402


class MetricNames(unittest.TestCase):
    def names(self, expr):
        names, problems = vd.metric_names(expr)
        self.assertEqual(problems, [], expr)
        return names

    def test_selectors_inside_functions_and_aggregations_are_found(self):
        expr = 'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job=~"$job",route!~"/x|/y"}[$__rate_interval])))'
        self.assertEqual(self.names(expr), {"a_bucket"})

    def test_label_lists_of_grouping_and_matching_are_not_metrics(self):
        expr = "sum without (instance) (x) / on (job) group_left (instance, tier) y and ignoring (le) z"
        self.assertEqual(self.names(expr), {"x", "y", "z"})

    def test_numbers_durations_offsets_and_keywords_are_not_metrics(self):
        expr = "1 - (a offset 5m) > bool 14.4 * 0.01 or b unless c[5m:30s] == Inf"
        self.assertEqual(self.names(expr), {"a", "b", "c"})

    def test_recording_rule_names_with_colons_are_metrics(self):
        self.assertEqual(self.names('max(job:foo:ratio_rate5m{job=~"$job"}) / 0.01'), {"job:foo:ratio_rate5m"})

    def test_strings_are_not_metrics(self):
        expr = 'label_replace(up, "target", "$1", "instance", "(.*):.*")'
        self.assertEqual(self.names(expr), {"up"})

    def test_an_unknown_function_is_a_problem(self):
        _, problems = vd.metric_names("rat(x[5m])")
        self.assertIn("unknown function rat()", problems)

    def test_a_regex_on_the_metric_name_cannot_be_checked(self):
        _, problems = vd.metric_names('sum(rate({__name__=~"a|b"}[5m]))')
        self.assertTrue(any("__name__" in p for p in problems), problems)

    def test_unbalanced_parentheses_are_a_problem(self):
        _, problems = vd.metric_names("sum(rate(x[5m])")
        self.assertIn("unbalanced ()", problems)


class Folder(unittest.TestCase):
    """Copies the real dashboards folder, breaks one thing, and expects exactly that found."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.root = self.tmp / "dashboards"
        shutil.copytree(DASHBOARDS, self.root, ignore=shutil.ignore_patterns("tests", "__pycache__"))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def edit_overview(self, change):
        path = self.root / "grafana" / "overview.json"
        board = json.loads(path.read_text())
        change(board)
        path.write_text(json.dumps(board))

    def panel(self, board, title):
        return next(p for p in board["panels"] if p["title"] == title)

    def problems(self):
        problems, _ = vd.validate(self.root)
        return problems

    def assert_one_problem(self, *fragments):
        problems = self.problems()
        self.assertEqual(len(problems), 1, problems)
        for fragment in fragments:
            self.assertIn(fragment, problems[0])

    def test_the_real_folder_is_valid(self):
        self.assertEqual(self.problems(), [])

    def test_a_metric_nothing_exports_is_caught(self):
        def change(board):
            self.panel(board, "Rate-limited requests")["targets"][0]["expr"] = "sum(rate(courser_proxy_no_such_thing_total[5m]))"
        self.edit_overview(change)
        self.assert_one_problem("courser_proxy_no_such_thing_total", "Rate-limited requests")

    def test_a_histogram_needs_its_bucket_sum_or_count_suffix(self):
        def change(board):
            self.panel(board, "Rate-limited requests")["targets"][0]["expr"] = "courser_proxy_request_duration_seconds"
        self.edit_overview(change)
        self.assert_one_problem("courser_proxy_request_duration_seconds")

    def test_metrics_come_from_exported_metrics_txt(self):
        path = self.root / "exported-metrics.txt"
        path.write_text(path.read_text().replace("courser_proxy_rate_limited_total counter", ""))
        self.assert_one_problem("courser_proxy_rate_limited_total", "Rate-limited requests")

    def test_duplicate_panel_ids_are_caught(self):
        def change(board):
            board["panels"][3]["id"] = board["panels"][2]["id"]
        self.edit_overview(change)
        self.assert_one_problem("used more than once")

    def test_a_datasource_not_referenced_by_the_provisioned_uid_is_caught(self):
        def change(board):
            board["panels"][2]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "other"}
        self.edit_overview(change)
        self.assert_one_problem('"uid": "other"')

    def test_a_datasource_by_name_is_caught(self):
        def change(board):
            board["panels"][2]["datasource"] = "Prometheus"
        self.edit_overview(change)
        self.assert_one_problem("datasource")

    def test_an_undefined_variable_is_caught(self):
        def change(board):
            target = self.panel(board, "Rate-limited requests")["targets"][0]
            target["expr"] = target["expr"].replace("$instance", "$host")
        self.edit_overview(change)
        self.assert_one_problem("$host")

    def test_a_multi_value_variable_matched_with_equals_is_caught(self):
        def change(board):
            target = self.panel(board, "Rate-limited requests")["targets"][0]
            target["expr"] = target["expr"].replace('instance=~"$instance"', 'instance="$instance"')
        self.edit_overview(change)
        self.assert_one_problem("use =~")

    def test_a_panel_without_unit_or_description_is_caught(self):
        def change(board):
            panel = self.panel(board, "Rate-limited requests")
            del panel["fieldConfig"]["defaults"]["unit"]
            panel["description"] = ""
        self.edit_overview(change)
        problems = self.problems()
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any("no unit" in p for p in problems))
        self.assertTrue(any("no description" in p for p in problems))

    def test_a_missing_schema_version_is_caught(self):
        self.edit_overview(lambda board: board.pop("schemaVersion"))
        self.assert_one_problem("schemaVersion")

    def test_a_missing_instance_variable_is_caught(self):
        def change(board):
            board["templating"]["list"] = [v for v in board["templating"]["list"] if v["name"] != "instance"]
        self.edit_overview(change)
        problems = self.problems()
        self.assertTrue(any("no `instance` templating variable" in p for p in problems), problems)

    def test_a_runbook_url_to_a_missing_heading_is_caught(self):
        readme = self.root / "README.md"
        readme.write_text(readme.read_text().replace("### CourserRedisDown", "### Redis is down"))
        self.assert_one_problem("#courserredisdown")

    def test_the_emitted_rules_hold_every_query_with_variables_replaced(self):
        out = self.tmp / "queries.yml"
        problems, _ = vd.validate(self.root, out)
        self.assertEqual(problems, [])
        text = out.read_text()
        self.assertIn("record: dashboard_query:0", text)
        exprs = [line for line in text.splitlines() if line.strip().startswith("expr:")]
        self.assertEqual(len(exprs), text.count("record: dashboard_query:"))
        for line in exprs:
            self.assertNotIn("$", line)


if __name__ == "__main__":
    unittest.main()
