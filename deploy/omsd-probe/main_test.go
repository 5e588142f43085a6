package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func readyz(checks map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := true
		for _, s := range checks {
			ok = ok && s == "ok"
		}
		if ok {
			w.WriteHeader(http.StatusOK)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "ready", "checks": checks})
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": 503, "checks": checks})
	}
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		args    []string
		ok      bool
	}{
		{"all ready", readyz(map[string]string{"database": "ok", "redis": "ok", "kafka": "ok"}), nil, true},
		{"broker down, not tolerated", readyz(map[string]string{"database": "ok", "redis": "ok", "kafka": "failing: dial tcp"}), nil, false},
		{"broker down, tolerated", readyz(map[string]string{"database": "ok", "redis": "ok", "kafka": "failing: dial tcp"}), []string{"-tolerate", "kafka"}, true},
		{"database down, broker tolerated", readyz(map[string]string{"database": "failing: timeout", "redis": "ok", "kafka": "failing: dial tcp"}), []string{"-tolerate", "kafka"}, false},
		{"redis down", readyz(map[string]string{"database": "ok", "redis": "failing: EOF", "kafka": "ok"}), []string{"-tolerate", "kafka"}, false},
		{"503 without checks", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503); io.WriteString(w, "overloaded") }, []string{"-tolerate", "kafka"}, false},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, []string{"-tolerate", "kafka"}, false},
		{"too slow", func(w http.ResponseWriter, r *http.Request) { time.Sleep(500 * time.Millisecond) }, []string{"-timeout", "100ms"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			var out strings.Builder
			err := run(context.Background(), append(tc.args, srv.URL+"/readyz"), &out)
			if (err == nil) != tc.ok {
				t.Fatalf("got error %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if err := run(context.Background(), []string{"http://127.0.0.1:1/healthz"}, io.Discard); err == nil {
		t.Error("no error for a closed port")
	}
}
