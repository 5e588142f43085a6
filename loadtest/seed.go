package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// SeedConfig says what to create. The zero value seeds 1000 SKUs on 12
// nodes with 100 units each.
type SeedConfig struct {
	// SKUs is the catalogue size. Default 1000.
	SKUs int
	// Nodes is the number of nodes (up to six warehouses, then stores).
	// Default 12.
	Nodes int
	// Stock is the on-hand per warehouse and SKU (stores get a fifth of it
	// for about half of the catalogue; see StockPlan). Default 100.
	Stock int64
	// Prefix is put before channel ids ("lt" -> "lt-tmall") so that a
	// second seed of the same stack does not collide with the first
	// (channel keys are shown once, so an existing channel cannot be
	// reused). Empty: no prefix.
	Prefix string
	// Concurrency bounds the requests in flight. Default 32.
	Concurrency int
	// Progress, if not nil, gets a line per second while stock is written.
	Progress io.Writer
}

func (c *SeedConfig) setDefaults() {
	if c.SKUs <= 0 {
		c.SKUs = 1000
	}
	if c.Nodes <= 0 {
		c.Nodes = 12
	}
	if c.Stock <= 0 {
		c.Stock = 100
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
}

// StockRow is the on-hand seeded for one SKU at one node.
type StockRow struct {
	NodeID string `json:"node_id"`
	SKU    string `json:"sku"`
	OnHand int64  `json:"on_hand"`
}

// SeedFile is what seed created and run reads: the channels with their
// keys, the nodes, the catalogue and the initial stock. It holds secrets
// (channel keys): it is written with mode 0600.
type SeedFile struct {
	CreatedAt time.Time  `json:"created_at"`
	APIURL    string     `json:"api_url"`
	Channels  []Channel  `json:"channels"`
	Nodes     []Node     `json:"nodes"`
	SKUs      []SKU      `json:"skus"`
	Stock     []StockRow `json:"stock"`
}

// SeededBySKU sums the seeded on-hand per SKU.
func (s *SeedFile) SeededBySKU() map[string]int64 {
	m := make(map[string]int64, len(s.SKUs))
	for _, r := range s.Stock {
		m[r.SKU] += r.OnHand
	}
	return m
}

// Validate reports a seed file that run cannot use.
func (s *SeedFile) Validate() error {
	var errs []error
	if len(s.Channels) == 0 {
		errs = append(errs, errors.New("no channels"))
	}
	for _, c := range s.Channels {
		if c.APIKey == "" {
			errs = append(errs, fmt.Errorf("channel %q has no api_key", c.ID))
		}
	}
	if len(s.SKUs) == 0 {
		errs = append(errs, errors.New("no skus"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("loadtest: seed file: %w", err)
	}
	return nil
}

// WriteSeedFile writes s as indented JSON with mode 0600.
func WriteSeedFile(path string, s *SeedFile) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("loadtest: seed file: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("loadtest: seed file: %w", err)
		}
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("loadtest: seed file: %w", err)
	}
	return nil
}

// ReadSeedFile reads and validates a seed file.
func ReadSeedFile(path string) (*SeedFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: seed file: %w (run `oms-loadtest seed` first)", err)
	}
	var s SeedFile
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("loadtest: seed file %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return &s, nil
}

// Seed creates the channels, nodes and stock of cfg through the admin API
// and returns what it created. Channels and nodes go first (stock needs
// its node); stock rows are written with cfg.Concurrency requests in
// flight. A channel that already exists (409) is an error that suggests
// another prefix: its key cannot be read back. The first failure cancels
// the rest.
func Seed(ctx context.Context, c *Client, cfg SeedConfig) (*SeedFile, error) {
	cfg.setDefaults()
	out := &SeedFile{CreatedAt: time.Now().UTC(), APIURL: c.bases[0]}

	for _, dc := range defaultChannels {
		id := dc.id
		if cfg.Prefix != "" {
			id = cfg.Prefix + "-" + dc.id
		}
		ch, err := c.CreateChannel(ctx, id, dc.name)
		if err != nil {
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == http.StatusConflict {
				return nil, fmt.Errorf("%w (channel %q exists and its key is shown only once: seed with another --prefix)", err, id)
			}
			return nil, err
		}
		ch.Weight, ch.OrderPrefix = dc.weight, dc.prefix
		if ch.ID == "" {
			ch.ID = id
		}
		out.Channels = append(out.Channels, ch)
	}

	out.Nodes = BuildNodes(cfg.Nodes)
	out.SKUs = BuildSKUs(cfg.SKUs)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Concurrency)
	for _, n := range out.Nodes {
		g.Go(func() error { return c.PutNode(gctx, n) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	for ni, n := range out.Nodes {
		for si, s := range out.SKUs {
			if q, ok := StockPlan(n, ni, si, cfg.Stock); ok {
				out.Stock = append(out.Stock, StockRow{NodeID: n.ID, SKU: s.ID, OnHand: q})
			}
		}
	}
	var done atomic.Int64
	stop := startTicker(cfg.Progress, time.Second, func(w io.Writer) {
		fmt.Fprintf(w, "seed: %d/%d stock rows\n", done.Load(), len(out.Stock))
	})
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(cfg.Concurrency)
	for _, r := range out.Stock {
		g.Go(func() error {
			_, err := c.PutStock(gctx, r.NodeID, r.SKU, r.OnHand, 0)
			done.Add(1)
			return err
		})
	}
	err := g.Wait()
	stop()
	if err != nil {
		return nil, err
	}
	return out, nil
}

// startTicker calls f(w) every d until the returned stop is called. A nil
// w starts nothing.
func startTicker(w io.Writer, d time.Duration, f func(io.Writer)) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				f(w)
			}
		}
	}()
	return func() { close(quit); <-finished }
}
