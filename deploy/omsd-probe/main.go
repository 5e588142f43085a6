// Command omsd-probe checks an omsd HTTP endpoint from inside the omsd
// container image, which has no shell, curl or wget (distroless). It is the
// container health check of the compose file and the readiness probe of the
// Kubernetes manifests.
//
//	omsd-probe [-timeout 2s] [-tolerate broker] URL
//
// It exits 0 when URL answers 2xx. With -tolerate, a 503 from /readyz whose
// failing checks are all tolerated also exits 0: the outbox absorbs a broker
// outage (orders are committed with their events and published once the
// broker is back), so an instance should keep taking orders through one.
// Any other answer, a body that is not /readyz's problem document, or no
// answer within the timeout exits 1 with the reason on stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "omsd-probe:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("omsd-probe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed for the whole request")
	tolerate := fs.String("tolerate", "", "comma-separated /readyz checks whose failure still counts as ready (e.g. broker)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want exactly one URL")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", fs.Arg(0), err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	failing, err := failingChecks(resp.StatusCode, body)
	if err != nil {
		return fmt.Errorf("%s answered %d: %w", fs.Arg(0), resp.StatusCode, err)
	}
	allowed := map[string]bool{}
	for _, name := range strings.Split(*tolerate, ",") {
		if name = strings.TrimSpace(name); name != "" {
			allowed[name] = true
		}
	}
	var blocking []string
	for _, name := range failing {
		if !allowed[name] {
			blocking = append(blocking, name)
		}
	}
	if len(blocking) > 0 || len(failing) == 0 {
		return fmt.Errorf("%s answered %d: not ready: %s", fs.Arg(0), resp.StatusCode, string(body))
	}
	fmt.Fprintf(stdout, "ready; tolerated failing checks: %s\n", strings.Join(failing, ", "))
	return nil
}

// failingChecks reads the names of the failing checks from /readyz's 503
// problem document ({"checks": {"broker": "failing: ..."}}).
func failingChecks(status int, body []byte) ([]string, error) {
	if status != http.StatusServiceUnavailable {
		return nil, errors.New("not a readiness answer")
	}
	var doc struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Checks == nil {
		return nil, fmt.Errorf("not a readiness problem document: %s", string(body))
	}
	var failing []string
	for name, state := range doc.Checks {
		if state != "ok" {
			failing = append(failing, name)
		}
	}
	sort.Strings(failing)
	return failing, nil
}
