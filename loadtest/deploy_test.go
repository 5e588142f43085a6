package loadtest

import (
	"encoding/json"
	"os"
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
}

var metricRE = regexp.MustCompile(`\bomsd_[a-z0-9_]+`)

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
			for _, m := range families(r.Expr) {
				if !serverMetrics[m] {
					t.Errorf("%s uses unknown metric %s", r.Alert, m)
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
