package loadtest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// serverMetrics are the metric families omsd exposes (the dashboard and
// the alerts may use no other: a typo would make a panel silently empty).
var serverMetrics = map[string]bool{
	"omsd_http_requests_total":               true,
	"omsd_http_request_duration_seconds":     true,
	"omsd_intake_orders_total":               true,
	"omsd_intake_batch_size":                 true,
	"omsd_intake_commit_duration_seconds":    true,
	"omsd_intake_replans_total":              true,
	"omsd_intake_holds_total":                true,
	"omsd_inventory_reservations_total":      true,
	"omsd_inventory_units_total":             true,
	"omsd_inventory_drift_units_total":       true,
	"omsd_inventory_script_duration_seconds": true,
	"omsd_inventory_oversell_guard_total":    true,
	"omsd_sourcing_plans_total":              true,
	"omsd_sourcing_shipments_per_order":      true,
	"omsd_outbox_lag_seconds":                true,
	"omsd_outbox_published_total":            true,
	"omsd_wms_events_total":                  true,
	"omsd_consumer_lag_messages":             true,
	"omsd_inventory_not_ready_nodes":         true,
	"omsd_outbox_dead_rows":                  true,
	"omsd_outbox_dead_lettered_total":        true,
	"omsd_outbox_refused_total":              true,
	"omsd_wmsevents_dead_lettered_total":     true,
	"omsd_wmsevents_retrying_events":         true,
	"omsd_returns_operations_total":          true,
	"omsd_returns_requested_total":           true,
	"omsd_returns_received_units_total":      true,
	"omsd_returns_refunded_amount_total":     true,
	"omsd_returns_restock_errors_total":      true,
	"omsd_customer_matches_total":            true,
	"omsd_customer_lookup_batch_size":        true,
	"omsd_customer_lookup_errors_total":      true,
	"omsd_customer_binding_changes_total":    true,
	"omsd_attribution_rows_folded_total":     true,
	"omsd_attribution_fold_errors_total":     true,
}

var metricRE = regexp.MustCompile(`\bomsd_[a-z0-9_]+`)

// metricNameRE finds the metric families the server declares
// (prometheus.CounterOpts{Name: "omsd_..."} and the like).
var metricNameRE = regexp.MustCompile(`Name:\s*"(omsd_[a-z0-9_]+)"`)

// codeMetrics returns every metric family the server's code declares, read
// from the non-test Go files of the server's packages, so that an alert or
// a panel on a metric that was renamed or never existed fails here.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, dir := range []string{"../oms", "../inventory", "../cmd/omsd", "../sourcing"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range metricNameRE.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < len(serverMetrics) {
		t.Fatalf("found only %d metric names in the code", len(out))
	}
	return out
}

// families returns the metric families an expression uses (histogram
// series suffixes stripped).
func families(expr string) []string {
	var out []string
	for _, m := range metricRE.FindAllString(expr, -1) {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(m, suf); base != m && serverMetrics[base] {
				m = base
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// balanced checks (), [] and {} nest, ignoring quoted strings.
func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inQuote := false
	for _, r := range expr {
		switch {
		case r == '"':
			inQuote = !inQuote
		case inQuote:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inQuote
}

func TestGrafanaDashboardIsValid(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/omsd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Schema     int    `json:"schemaVersion"`
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				Type, UID string
			} `json:"datasource"`
			GridPos struct{ H, W, X, Y int } `json:"gridPos"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.Schema < 30 {
		t.Errorf("got title %q uid %q schemaVersion %d", d.Title, d.UID, d.Schema)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
	}
	if !hasDS {
		t.Error("no Prometheus datasource variable named datasource")
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !balanced(tg.Expr) {
				t.Errorf("panel %q: unbalanced expression %q", p.Title, tg.Expr)
			}
			fs := families(tg.Expr)
			if len(fs) == 0 {
				t.Errorf("panel %q: expression %q uses no omsd metric", p.Title, tg.Expr)
			}
			for _, f := range fs {
				if !serverMetrics[f] {
					t.Errorf("panel %q uses unknown metric %s", p.Title, f)
				}
				used[f] = true
			}
		}
	}
	var unused []string
	for m := range serverMetrics {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("no panel shows %v", unused)
	}
	if !strings.Contains(string(b), `histogram_quantile(0.99, sum by (le) (rate(omsd_http_request_duration_seconds_bucket{route=\"POST /v1/orders\"}`) {
		t.Error("no intake p99 panel over route=\"POST /v1/orders\"")
	}
}

func TestPrometheusAlertRulesAreValid(t *testing.T) {
	b, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	code := codeMetrics(t)
	byMetric := map[string][]string{}
	names := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q is empty or unnamed", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || names[r.Alert] {
				t.Errorf("rule with alert %q: missing or repeated name", r.Alert)
			}
			names[r.Alert] = true
			if !balanced(r.Expr) || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: bad expression %q", r.Alert, r.Expr)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: bad for %q", r.Alert, r.For)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			if len(families(r.Expr)) == 0 && !strings.Contains(r.Expr, `up{job="omsd"}`) {
				t.Errorf("%s: expression %q uses no omsd metric", r.Alert, r.Expr)
			}
			// Keyed by the whole expression too, for the alerts on up{job="omsd"}.
			byMetric[r.Expr] = append(byMetric[r.Expr], r.Expr+" for "+r.For)
			for _, m := range families(r.Expr) {
				if !code[m] {
					t.Errorf("%s uses metric %s, which the server does not declare", r.Alert, m)
				}
				byMetric[m] = append(byMetric[m], r.Expr+" for "+r.For)
			}
		}
	}
	for _, want := range []struct{ metric, contains string }{
		{"omsd_inventory_oversell_guard_total", "increase("},
		{"omsd_outbox_lag_seconds", "> 30 for 2m"},
		{"omsd_inventory_drift_units_total", "[10m])) > 0"},
		{"omsd_inventory_not_ready_nodes", "> 0"},
		{"omsd_outbox_dead_rows", "> 0"},
		{"omsd_wmsevents_dead_lettered_total", "increase("},
		{"omsd_wmsevents_retrying_events", "> 0 for 5m"},
		{"omsd_http_requests_total", `status=~"5.."`},
		{"omsd_http_request_duration_seconds", "histogram_quantile(0.99"},
		{`up{job="omsd"} == 0`, "== 0 for 2m"},
		{`absent(up{job="omsd"})`, "absent("},
		{"omsd_intake_commit_failures_total", `{cause="store"}[5m])) > 0`},
		{"omsd_intake_commit_failures_total", `cause=~"data|lease"`},
		{"omsd_outbox_publish_failures_total", "[5m])) > 0 for 5m"},
		{"omsd_fulfillment_stock_side_effect_errors_total", "sum by (instance, op) (increase("},
		{"omsd_consumer_lag_messages", "> 10000 for 5m"},
		{"omsd_returns_restock_errors_total", "increase("},
	} {
		found := false
		for _, e := range byMetric[want.metric] {
			found = found || strings.Contains(e, want.contains)
		}
		if !found {
			t.Errorf("no alert on %s containing %q (got %q)", want.metric, want.contains, byMetric[want.metric])
		}
	}
}

// TestServerMetricsExistInTheCode keeps the dashboard's list of metric
// families in step with what the server declares.
func TestServerMetricsExistInTheCode(t *testing.T) {
	code := codeMetrics(t)
	for m := range serverMetrics {
		if !code[m] {
			t.Errorf("serverMetrics lists %s, which the server does not declare (renamed?)", m)
		}
	}
}

// alertRule is one alerting rule of alerts.yml, as far as these tests read it.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	decodeKnownFields(t, "../deploy/prometheus/alerts.yml", &f)
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("alerts.yml has no rules")
	}
	return out
}

func decodeKnownFields(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

const runbookURL = "https://github.com/omsd/omsd/blob/main/deploy/RUNBOOK.md"

// TestEveryAlertHasARunbookSection checks that each alert links its own
// section of deploy/RUNBOOK.md, that the section exists and says what the
// alert means, how to check and what to do, and that the runbook has no
// section for an alert that is gone.
func TestEveryAlertHasARunbookSection(t *testing.T) {
	b, err := os.ReadFile("../deploy/RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	parts := regexp.MustCompile(`(?m)^## `).Split(string(b), -1)
	for _, p := range parts[1:] {
		title, body, _ := strings.Cut(p, "\n")
		sections[strings.TrimSpace(title)] = body
	}
	alerts := map[string]bool{}
	for _, r := range readAlertRules(t) {
		alerts[r.Alert] = true
		// GitHub's anchor of "## OmsdFoo" is #omsdfoo.
		if want := runbookURL + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		body, ok := sections[r.Alert]
		if !ok {
			t.Errorf("%s: no section \"## %s\" in deploy/RUNBOOK.md", r.Alert, r.Alert)
			continue
		}
		for _, part := range []string{"**What it means.**", "**How to check.**", "**What to do.**"} {
			if !strings.Contains(body, part) {
				t.Errorf("RUNBOOK.md %s: no %s paragraph", r.Alert, part)
			}
		}
		if len(body) < 300 {
			t.Errorf("RUNBOOK.md %s: %d characters is too short to help anyone", r.Alert, len(body))
		}
	}
	for title := range sections {
		if strings.HasPrefix(title, "Omsd") && !alerts[title] {
			t.Errorf("RUNBOOK.md has a section for %s, which is no alert", title)
		}
	}
}

// TestEveryAlertHasAUnitTest checks that deploy/prometheus/alerts_test.yml
// (run by promtool test rules) has, for every alert, a case where it fires
// with its severity and runbook link, and a case where it does not.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	var f struct {
		RuleFiles          []string `yaml:"rule_files"`
		EvaluationInterval string   `yaml:"evaluation_interval"`
		Tests              []struct {
			Interval    string `yaml:"interval"`
			InputSeries []struct {
				Series string `yaml:"series"`
				Values string `yaml:"values"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				EvalTime  string `yaml:"eval_time"`
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels      map[string]string `yaml:"exp_labels"`
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	decodeKnownFields(t, "../deploy/prometheus/alerts_test.yml", &f)
	if len(f.RuleFiles) != 1 || f.RuleFiles[0] != "alerts.yml" {
		t.Errorf("alerts_test.yml tests %v, want alerts.yml", f.RuleFiles)
	}
	rules := map[string]alertRule{}
	for _, r := range readAlertRules(t) {
		rules[r.Alert] = r
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, at := range tc.AlertRuleTest {
			r, ok := rules[at.Alertname]
			if !ok {
				t.Errorf("alerts_test.yml tests %q, which is no alert", at.Alertname)
				continue
			}
			if len(at.ExpAlerts) == 0 {
				quiet[at.Alertname] = true
				continue
			}
			fires[at.Alertname] = true
			for _, ea := range at.ExpAlerts {
				if ea.ExpLabels["severity"] != r.Labels["severity"] {
					t.Errorf("%s at %s: expected severity %q, the rule has %q", at.Alertname, at.EvalTime, ea.ExpLabels["severity"], r.Labels["severity"])
				}
				if ea.ExpAnnotations["runbook_url"] != r.Annotations["runbook_url"] || ea.ExpAnnotations["summary"] == "" || ea.ExpAnnotations["description"] == "" {
					t.Errorf("%s at %s: expected annotations must include the runbook_url, the summary and the description", at.Alertname, at.EvalTime)
				}
			}
		}
	}
	for name := range rules {
		if !fires[name] {
			t.Errorf("alerts_test.yml has no case where %s fires", name)
		}
		if !quiet[name] {
			t.Errorf("alerts_test.yml has no case where %s stays quiet", name)
		}
	}
}
