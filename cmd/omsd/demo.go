package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/omsd/omsd/loadtest"
)

// demoConfig shapes `omsd dev --demo`: a short flash sale on a small
// catalogue whose hot SKUs sell out, so that the report shows both
// accepted orders and clean 409s, and the audit proves nothing oversold.
type demoConfig struct {
	Rate     float64
	Duration time.Duration
	SKUs     int
	Nodes    int
	Stock    int64
}

// runDemo seeds the running stack, runs the flash-sale profile against it,
// prints the report and writes it as JSON and HTML under stateDir/demo.
func runDemo(ctx context.Context, apiURLs []string, adminKey string, brokers []string, stateDir string, dc demoConfig, out io.Writer) error {
	target := loadtest.Target{APIURL: apiURLs[0], APIURLs: apiURLs, AdminKey: adminKey, Brokers: brokers}
	client := loadtest.NewClient(target, loadtest.ClientConfig{})
	defer client.Close()
	fmt.Fprintf(out, "\nomsd demo: seeding %d nodes and %d SKUs (%d units per warehouse and SKU) ...\n", dc.Nodes, dc.SKUs, dc.Stock)
	seed, err := loadtest.Seed(ctx, client, loadtest.SeedConfig{SKUs: dc.SKUs, Nodes: dc.Nodes, Stock: dc.Stock, Prefix: "demo", Progress: out})
	if err != nil {
		return fmt.Errorf("demo seed: %w", err)
	}
	dir := filepath.Join(stateDir, "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(out, "omsd demo: flash sale for %s, peaking at %.0f orders/s (baseline a tenth of it) ...\n", dc.Duration, dc.Rate)
	rep, err := loadtest.Execute(ctx, loadtest.Options{
		Target: target,
		Seed:   seed,
		Run:    loadtest.RunConfig{Profile: loadtest.ProfileFlashSale, Rate: dc.Rate, Duration: dc.Duration, Progress: out},
		Settle: 5 * time.Second,
		Log:    out,
	})
	if err != nil {
		return fmt.Errorf("demo run: %w", err)
	}
	if err := rep.WriteTable(out); err != nil {
		return err
	}
	jsonPath, htmlPath := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	if err := rep.WriteJSON(jsonPath); err != nil {
		return err
	}
	if err := rep.WriteHTMLFile(htmlPath); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nomsd demo: report written to %s (charts: %s)\n", jsonPath, htmlPath)
	if !rep.Passed() {
		return fmt.Errorf("demo: the audit found faults (see %s)", jsonPath)
	}
	fmt.Fprintln(out, "omsd demo: audit clean: nothing oversold, no order missing, no shipment requested twice, no stock leaked")
	return nil
}
