package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSourcingRulesSimulateAndReplay(t *testing.T) {
	s := newTestServer(t)
	key := seedBasic(t, s)

	var rules map[string]any
	s.mustCall("GET", "/v1/sourcing/rules", s.Admin, nil, 200, &rules)
	if _, ok := rules["strategies"]; !ok {
		t.Fatalf("got rules %v, want a document with strategies", rules)
	}
	s.mustCall("GET", "/v1/sourcing/rules", key, nil, 401, nil)

	t.Run("a bad rule set is 422 naming the field", func(t *testing.T) {
		bad := `{"strategies":[{"name":"x","filters":[{"type":"teleport"}],"ranking":{"by":[{"type":"priority"}]},"split":{"policy":"single_node"}}],"fallback":"reject"}`
		var p problem
		if got := s.call("PUT", "/v1/sourcing/rules", s.Admin, bad, nil, &p); got != 422 {
			t.Fatalf("got %d, want 422", got)
		}
		if !p.fields()["strategies[0].filters[0].type"] {
			t.Errorf("got fields %v, want strategies[0].filters[0].type", p.Errors)
		}
	})

	// Prefer Shanghai by priority: the active version changes at once.
	doc := `{"name":"prefer-sh","strategies":[{"name":"ship","filters":[{"type":"active"},{"type":"stock"}],
		"ranking":{"by":[{"type":"distance"}]},"split":{"policy":"single_node"}}],"fallback":"reject"}`
	var activated struct {
		Version int64  `json:"version"`
		Name    string `json:"name"`
	}
	s.mustCall("PUT", "/v1/sourcing/rules", s.Admin, doc, 200, &activated)
	if activated.Version < 1 || activated.Name != "prefer-sh" {
		t.Fatalf("got %+v, want a stamped version of prefer-sh", activated)
	}
	s.mustCall("GET", "/v1/sourcing/rules", s.Admin, nil, 200, &activated)
	if activated.Name != "prefer-sh" {
		t.Errorf("GET after PUT: got %q", activated.Name)
	}

	// A Shanghai buyer: the nearest node with stock is WH-SH.
	body := orderBody("SIM-1")
	body["ship_to"].(map[string]any)["region"] = "CN-SH"
	body["ship_to"].(map[string]any)["lat"] = 31.2
	body["ship_to"].(map[string]any)["lon"] = 121.5
	body["channel"] = "tmall"
	var plan struct {
		Outcome   string `json:"outcome"`
		Shipments []struct {
			NodeID string `json:"node_id"`
		} `json:"shipments"`
		Explanation []struct {
			NodeID string `json:"node_id"`
			Status string `json:"status"`
		} `json:"explanation"`
	}
	before := s.levels("SKU-1").reserved()
	s.mustCall("POST", "/v1/sourcing/simulate", s.Admin, body, 200, &plan)
	if plan.Outcome != "fulfilled" || len(plan.Shipments) != 1 || plan.Shipments[0].NodeID != "WH-SH" {
		t.Errorf("got plan %+v, want one shipment from WH-SH", plan)
	}
	if len(plan.Explanation) != 3 {
		t.Errorf("got %d explained nodes, want 3", len(plan.Explanation))
	}
	if got := s.levels("SKU-1").reserved(); got != before {
		t.Errorf("simulate reserved stock: %d -> %d", before, got)
	}

	t.Run("replay compares a draft with the active rules", func(t *testing.T) {
		dir := t.TempDir()
		draft := `{"name":"priority-first","strategies":[{"name":"ship","filters":[{"type":"active"},{"type":"stock"}],
			"ranking":{"by":[{"type":"priority"}]},"split":{"policy":"single_node"}}],"fallback":"reject"}`
		_ = os.WriteFile(filepath.Join(dir, "draft.json"), []byte(draft), 0o644)
		orders := `{"id":"o1","channel":"tmall","region":"CN-SH","lat":31.2,"lon":121.5,"has_location":true,"value":1000,"lines":[{"sku":"SKU-1","qty":1}]}
{"id":"o2","channel":"tmall","region":"CN-ZJ","lat":30.2,"lon":120.1,"has_location":true,"value":1000,"lines":[{"sku":"SKU-1","qty":1}]}
`
		_ = os.WriteFile(filepath.Join(dir, "orders.jsonl"), []byte(orders), 0o644)
		var out, errOut bytes.Buffer
		env := map[string]string{"OMS_DATABASE_URL": s.cfg.DatabaseURL, "OMS_REDIS_URL": s.cfg.RedisURL}
		err := run(context.Background(), []string{"sourcing", "replay", "-draft", filepath.Join(dir, "draft.json"), "-orders", filepath.Join(dir, "orders.jsonl")},
			func(k string) string { return env[k] }, &out, &errOut)
		if err != nil {
			t.Fatalf("replay: %v\n%s", err, errOut.String())
		}
		var rep struct {
			Orders int `json:"orders"`
			Differ int `json:"differ"`
			Active struct {
				Name      string `json:"name"`
				Fulfilled int    `json:"fulfilled"`
			} `json:"active"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("decode %s: %v", out.String(), err)
		}
		// Priority sends the Shanghai order to WH-HZ (priority 10): one plan differs.
		if rep.Orders != 2 || rep.Active.Fulfilled != 2 || rep.Differ != 1 || rep.Active.Name != "prefer-sh" {
			t.Errorf("got report %s", strings.TrimSpace(out.String()))
		}
	})
}
