package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/oms/httpapi/apitest"
)

func TestReadyzTellsFailingFromDegraded(t *testing.T) {
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	tests := []struct {
		scenario        string
		ready, degraded map[string]func(context.Context) error
		wantCode        int
		wantStatus      string
		wantChecks      map[string]string // check -> prefix
	}{
		{"everything up is ready", map[string]func(context.Context) error{"database": up, "redis": up},
			map[string]func(context.Context) error{"broker": up}, 200, "ready",
			map[string]string{"database": "ok", "redis": "ok", "broker": "ok"}},
		{"a broker outage is degraded, not unready", map[string]func(context.Context) error{"database": up, "redis": up},
			map[string]func(context.Context) error{"broker": down}, 200, "degraded",
			map[string]string{"database": "ok", "redis": "ok", "broker": "degraded: connection refused"}},
		{"a database outage is unready whatever the broker", map[string]func(context.Context) error{"database": down, "redis": up},
			map[string]func(context.Context) error{"broker": down}, 503, "",
			map[string]string{"database": "failing: connection refused", "redis": "ok", "broker": "degraded"}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			s, err := New(Config{AdminKey: adminKey, ReadyChecks: tt.ready, DegradedChecks: tt.degraded},
				&memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(apitest.Handler(t, s.Handler()))
			defer ts.Close()
			resp, err := http.Get(ts.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Status any               `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("got %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantStatus != "" && body.Status != tt.wantStatus {
				t.Errorf("got status %v, want %s", body.Status, tt.wantStatus)
			}
			for name, prefix := range tt.wantChecks {
				if !strings.HasPrefix(body.Checks[name], prefix) {
					t.Errorf("got check %s %q, want %q...", name, body.Checks[name], prefix)
				}
			}
		})
	}
}

func TestAccessLogNamesTheRouteNeverTheQueryOrCredentials(t *testing.T) {
	var logs bytes.Buffer
	s, err := New(Config{AdminKey: adminKey, AccessLog: true, Log: slog.New(slog.NewJSONHandler(&logs, nil))},
		&memChannels{byHash: map[string]oms.Channel{}, byID: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(apitest.Handler(t, s.Handler()))
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/healthz?phone=13800000000", nil)
	req.Header.Set("Authorization", "Bearer very-secret-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("want one JSON access line, got %q: %v", logs.String(), err)
	}
	if line["msg"] != "http request" || line["method"] != "GET" || line["route"] != "GET /healthz" || line["status"] != 200.0 ||
		line["bytes"].(float64) <= 0 || line["duration_ms"] == nil || line["request_id"] == "" {
		t.Errorf("got %v", line)
	}
	if strings.Contains(logs.String(), "13800000000") || strings.Contains(logs.String(), "very-secret-key") {
		t.Errorf("the access log holds the query or the credential: %s", logs.String())
	}
}
