package sourcing_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

// FuzzParseRules: the parser never panics, refuses with a *ValidationError,
// and every rule set it accepts can be planned with (keeping Plan's
// invariants), marshals back to a document it accepts again, and plans the
// same way after that round trip.
func FuzzParseRules(f *testing.F) {
	example, err := os.ReadFile("testdata/example_rules.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	def, _ := json.Marshal(sourcing.DefaultRules())
	f.Add(def)
	f.Add([]byte(`{"strategies": [{"name": "s", "filters": [{"type": "sku_exclusion", "tags": ["bulky"], "node_ids": ["S1"]}],
	  "ranking": {"mode": "weighted", "by": [{"type": "load", "weight": 1}]},
	  "split": {"policy": "ranked", "max_nodes": 1, "split_lines": true}, "fallback": "backorder"}], "fallback": "hold"}`))
	f.Add([]byte(`{"strategies": [], "fallback": "reject"}`))
	f.Add([]byte(`{"version": 1, "Fallback": "reject"}`))
	f.Add([]byte(`null`))

	nodes := []sourcing.Node{
		{ID: "WH-HZ", Type: "warehouse", Lat: 30.27, Lon: 120.15, Regions: []string{"CN-ZJ"}, Priority: 5, Active: true},
		{ID: "S1", Type: "store", Lat: 30.25, Lon: 120.16, Priority: 1, DailyCapacity: 10, UsedToday: 3, Active: true},
		{ID: "DS-7", Type: "dropship", Channels: []string{"jd"}, Active: true},
		{ID: "OFF", Type: "warehouse", Active: false},
	}
	stock := sourcing.StockMap{"WH-HZ": {"A": 2, "B": 1}, "S1": {"A": 5, "B": 5, "C": 1}, "DS-7": {"C": 9}, "OFF": {"A": 99}}
	orders := []sourcing.Order{
		{ID: "1", Channel: "tmall", Region: "CN-ZJ", Lat: 30.2, Lon: 120.1, HasLocation: true, Value: 60000,
			Lines: []sourcing.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1, Tags: []string{"bulky"}}, {SKU: "C", Qty: 1}}},
		{ID: "2", Channel: "jd", Region: "CN-SH", Value: 100, Pickup: true, PickupNode: "S1",
			Lines: []sourcing.Line{{SKU: "A", Qty: 3}}},
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := sourcing.ParseRules(data)
		if err != nil {
			var ve *sourcing.ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("got error %v (%T), want a *ValidationError with errors", err, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted rule set fails Validate: %v", err)
		}
		doc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal accepted rule set: %v", err)
		}
		r2, err := sourcing.ParseRules(doc)
		if err != nil {
			t.Fatalf("re-parse of marshalled rule set: got %v, want nil\n%s", err, doc)
		}
		for i := range orders {
			o := orders[i]
			res := sourcing.Plan(&o, nodes, stock, r)
			checkPlan(t, &o, nodes, stock, r, res)
			if res2 := sourcing.Plan(&o, nodes, stock, r2); !reflect.DeepEqual(res, res2) {
				t.Fatalf("plan after JSON round trip: got %+v, want %+v", res2, res)
			}
		}
	})
}
