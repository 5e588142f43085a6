package main

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunThresholdsFailWithTheirOwnExitCode(t *testing.T) {
	tests := []struct {
		scenario  string
		intercept func(w http.ResponseWriter, r *http.Request, _ []byte) bool
		args      []string
		wantErr   error
		wantOut   string
	}{
		{"generous thresholds pass", nil, []string{"--max-p99", "10s", "--max-error-rate", "0.5"}, nil, ""},
		{"a slow server fails --max-p99",
			func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
					time.Sleep(40 * time.Millisecond)
				}
				return false
			},
			[]string{"--max-p99", "5ms"}, errThresholdFailed, "threshold FAILED: --max-p99 5ms: p99 latency was"},
		{"a failing server fails --max-error-rate",
			func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
					w.WriteHeader(http.StatusInternalServerError)
					return true
				}
				return false
			},
			[]string{"--max-error-rate", "0", "--retries", "0"}, errThresholdFailed, "threshold FAILED: --max-error-rate 0: error rate was 1.0000"},
		{"an error-free run holds --max-error-rate 0", nil, []string{"--max-error-rate", "0"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			f, env := stack(t)
			if _, _, err := runCLI(t, "seed", "--env", env, "--skus", "10", "--nodes", "2", "--stock", "1000"); err != nil {
				t.Fatal(err)
			}
			if tt.intercept != nil {
				f.SetIntercept(tt.intercept)
			}
			args := append([]string{"run", "--env", env, "--rate", "40", "--duration", "300ms", "--settle", "1ms", "--quiet",
				"--json", filepath.Join(t.TempDir(), "report.json")}, tt.args...)
			out, _, err := runCLI(t, args...)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v\n%s", err, tt.wantErr, out)
			}
			if errors.Is(err, errAuditFailed) {
				t.Errorf("a threshold failure is reported as an audit failure: %v", err)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, out)
			}
		})
	}
}

func TestRunRefusesBadThresholds(t *testing.T) {
	_, env := stack(t)
	for _, args := range [][]string{{"--max-error-rate", "1.5"}, {"--max-error-rate", "-0.1"}, {"--max-p99", "-1s"}} {
		_, _, err := runCLI(t, append([]string{"run", "--env", env, "--rate", "5"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "-")) {
			t.Errorf("%v: got %v, want a refusal naming the flag", args, err)
		}
	}
}

func TestRunHelpListsTheExitCodes(t *testing.T) {
	_, stderr, err := runCLI(t, "run", "-h")
	if err == nil {
		t.Fatal("want flag.ErrHelp")
	}
	for _, want := range []string{"-max-p99", "-max-error-rate", "2  the audit found a fault", "3  the audit passes (or --no-audit) but a threshold"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("run -h lacks %q", want)
		}
	}
}
