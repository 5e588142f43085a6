package loadtest

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

func TestGeneratedOrdersFollowTheContract(t *testing.T) {
	seed := &SeedFile{
		Channels: []Channel{{ID: "tmall", APIKey: "k1", Weight: 3, OrderPrefix: "TM"}, {ID: "jd", APIKey: "k2", Weight: 1, OrderPrefix: "JD"}},
		SKUs:     BuildSKUs(500),
	}
	mix := MixConfig{PendingShare: 0.2}
	mix.setDefaults(len(seed.SKUs))
	g := newOrderGen(seed, mix, "run1")
	r := rand.New(rand.NewPCG(1, 2))
	z := g.newZipf(r)
	const n = 4000
	var pending, tmall int
	skuCount := map[string]int{}
	lineCounts := map[int]int{}
	extIDs := map[string]bool{}
	for k := range int64(n) {
		o := g.make(r, z, k)
		var b map[string]any
		if err := json.Unmarshal(o.body, &b); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"external_id", "customer", "ship_to", "lines", "currency", "payment", "fulfillment"} {
			if _, ok := b[f]; !ok {
				t.Fatalf("order %d has no %q: %s", k, f, o.body)
			}
		}
		if b["currency"] != "CNY" || b["fulfillment"].(map[string]any)["type"] != "ship" {
			t.Fatalf("order %d: got %s", k, o.body)
		}
		ship := b["ship_to"].(map[string]any)
		for _, f := range []string{"name", "line1", "city", "region", "postal_code", "country", "lat", "lon"} {
			if _, ok := ship[f]; !ok {
				t.Fatalf("order %d: ship_to has no %q", k, f)
			}
		}
		cust := b["customer"].(map[string]any)
		if cust["id"] == "" || cust["email"] == "" || cust["phone"] == "" {
			t.Fatalf("order %d: customer %v", k, cust)
		}
		pay := b["payment"].(map[string]any)["status"]
		if (pay == "pending") != o.pending || (pay != "paid" && pay != "pending") {
			t.Fatalf("order %d: payment %v, pending %v", k, pay, o.pending)
		}
		if o.pending {
			pending++
		}
		if o.channel == 0 {
			tmall++
		}
		if extIDs[o.externalID] || b["external_id"] != o.externalID {
			t.Fatalf("order %d: external id %q repeated or not in the body", k, o.externalID)
		}
		extIDs[o.externalID] = true
		lines := b["lines"].([]any)
		lineCounts[len(lines)]++
		if len(lines) < 1 || len(lines) > 5 || len(lines) != len(o.lines) {
			t.Fatalf("order %d: %d lines", k, len(lines))
		}
		seen := map[string]bool{}
		for _, l := range lines {
			lm := l.(map[string]any)
			sku := lm["sku"].(string)
			if seen[sku] {
				t.Fatalf("order %d repeats %s", k, sku)
			}
			seen[sku] = true
			skuCount[sku]++
			if q := lm["qty"].(float64); q < 1 || q > 3 || lm["unit_price"].(float64) <= 0 {
				t.Fatalf("order %d: line %v", k, lm)
			}
		}
	}
	if pending < n*15/100 || pending > n*25/100 {
		t.Errorf("got %d pending of %d, want about 20%%", pending, n)
	}
	if tmall < n*70/100 || tmall > n*80/100 {
		t.Errorf("got %d tmall orders of %d, want about 75%% (weight 3:1)", tmall, n)
	}
	for c := 1; c <= 5; c++ {
		if lineCounts[c] == 0 {
			t.Errorf("no order with %d lines", c)
		}
	}
	// Zipf among the 20 hot SKUs: the hottest is sold far more than the
	// 20th, and hot ones far more than a cold one.
	hot1, hot20, cold := skuCount[SKUID(1)], skuCount[SKUID(20)], skuCount[SKUID(300)]
	if hot1 < 3*hot20 || hot20 <= cold {
		t.Errorf("got %d lines for the hottest SKU, %d for the 20th, %d for a cold one: want a Zipf skew", hot1, hot20, cold)
	}
}

func TestAnArrivalsOrderDependsOnTheSeedAndItsIndexOnly(t *testing.T) {
	seed := &SeedFile{Channels: []Channel{{ID: "a", APIKey: "k", Weight: 1}, {ID: "b", APIKey: "k2", Weight: 1}}, SKUs: BuildSKUs(100)}
	var mix MixConfig
	mix.setDefaults(100)
	g := newOrderGen(seed, mix, "run")
	make1 := func(s, k uint64, warmup int) []byte {
		pcg := rand.NewPCG(0, 0)
		r := rand.New(pcg)
		z := g.newZipf(r)
		for range warmup { // a worker that served other arrivals first
			pcg.Seed(99, uint64(warmup))
			g.make(r, z, 0)
		}
		pcg.Seed(s, k)
		return g.make(r, z, int64(k)).body
	}
	if a, b := make1(1, 5, 0), make1(1, 5, 3); string(a) != string(b) {
		t.Errorf("same seed and index, different orders:\n%s\n%s", a, b)
	}
	if a, b := make1(1, 5, 0), make1(2, 5, 0); string(a) == string(b) {
		t.Error("different seeds gave the same order")
	}
}
