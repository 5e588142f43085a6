package loadtest

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSeedCreatesChannelsNodesAndStockWithBoundedConcurrency(t *testing.T) {
	f, tg := startFake(t)
	var inFlight, peak, puts atomic.Int64
	f.SetIntercept(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/inventory/") {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			puts.Add(1)
		}
		return false
	})
	sf, c := mustSeed(t, tg, SeedConfig{SKUs: 40, Nodes: 10, Stock: 50, Prefix: "t", Concurrency: 4})

	if len(sf.Channels) != len(defaultChannels) || sf.Channels[0].ID != "t-tmall" || sf.Channels[0].APIKey == "" || sf.Channels[0].OrderPrefix != "TM" {
		t.Errorf("got channels %+v, want %d prefixed channels with keys", sf.Channels, len(defaultChannels))
	}
	if len(sf.Nodes) != 10 || sf.Nodes[0].ID != "WH-HZ" || sf.Nodes[6].Type != "store" || sf.Nodes[6].Regions[0] == "" {
		t.Errorf("got nodes %+v, want 6 warehouses then stores", sf.Nodes)
	}
	if len(sf.SKUs) != 40 || sf.SKUs[0].ID != "SKU-000001" || sf.SKUs[39].ID != "SKU-000040" {
		t.Errorf("got SKUs %v…, want SKU-000001…SKU-000040", sf.SKUs[:2])
	}
	// 6 warehouses carry all 40; 4 stores about half at a fifth.
	var whRows, storeRows int
	for _, r := range sf.Stock {
		switch {
		case strings.HasPrefix(r.NodeID, "WH-") && r.OnHand == 50:
			whRows++
		case strings.HasPrefix(r.NodeID, "ST-") && r.OnHand == 10:
			storeRows++
		default:
			t.Errorf("unexpected stock row %+v", r)
		}
	}
	if whRows != 240 || storeRows < 40 || storeRows > 120 {
		t.Errorf("got %d warehouse and %d store rows, want 240 and about 80", whRows, storeRows)
	}
	if int(puts.Load()) != len(sf.Stock) {
		t.Errorf("server got %d stock PUTs, want %d", puts.Load(), len(sf.Stock))
	}
	if p := peak.Load(); p > 4 || p < 2 {
		t.Errorf("got %d stock PUTs in flight at most, want 2..4 (the limit is 4)", p)
	}
	// The seeded stock is what the API now says.
	inv, err := c.Inventory(testContext(t, 5*time.Second), "SKU-000001")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sumOnHand(inv.Nodes), sf.SeededBySKU()["SKU-000001"]; got != want || want < 300 {
		t.Errorf("got %d on hand for SKU-000001, want the seeded %d", got, want)
	}

	// The seed file round-trips, and a second seed with the same prefix
	// explains why it cannot reuse the channels.
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := WriteSeedFile(path, sf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSeedFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Stock) != len(sf.Stock) || back.Channels[1].APIKey != sf.Channels[1].APIKey || back.Nodes[3].Location != sf.Nodes[3].Location {
		t.Error("the seed file did not round-trip")
	}
	_, err = Seed(testContext(t, 5*time.Second), c, SeedConfig{SKUs: 1, Nodes: 1, Prefix: "t"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(err.Error(), "--prefix") {
		t.Errorf("got %v, want a 409 that suggests --prefix", err)
	}
}

func sumOnHand(ls []StockLevel) int64 {
	var n int64
	for _, l := range ls {
		n += l.OnHand
	}
	return n
}

func TestReadSeedFileRejectsUnusableFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadSeedFile(filepath.Join(dir, "none.json")); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Errorf("got %v, want an error pointing at seed", err)
	}
	path := filepath.Join(dir, "empty.json")
	if err := WriteSeedFile(path, &SeedFile{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSeedFile(path); err == nil || !strings.Contains(err.Error(), "no channels") {
		t.Errorf("got %v, want 'no channels'", err)
	}
}

func TestBuildNodesSpreadsAcrossRegions(t *testing.T) {
	nodes := BuildNodes(40)
	ids := map[string]bool{}
	regions := map[string]bool{}
	for _, n := range nodes {
		if ids[n.ID] {
			t.Errorf("duplicate node id %s", n.ID)
		}
		ids[n.ID] = true
		for _, r := range n.Regions {
			regions[r] = true
		}
		if n.Location.Lat < 18 || n.Location.Lat > 54 || n.Location.Lon < 73 || n.Location.Lon > 135 {
			t.Errorf("node %s at %+v is not in China", n.ID, n.Location)
		}
	}
	if len(regions) < 15 {
		t.Errorf("got %d regions served, want the country covered", len(regions))
	}
	if nodes[0].Regions == nil || len(nodes[0].Regions) != 0 {
		t.Errorf("got %v regions for the first DC, want an empty list (all regions)", nodes[0].Regions)
	}
}
