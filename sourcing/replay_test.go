package sourcing_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

func TestReplay(t *testing.T) {
	nodes := []sourcing.Node{
		node("HZ", at(30.27, 120.15), prio(1)),
		node("BJ", at(39.90, 116.40), prio(9)),
		node("NOLOC", prio(0)),
	}
	stock := sourcing.StockMap{"HZ": {"X": 9, "Y": 9}, "BJ": {"X": 9}, "NOLOC": {"Z": 9}}
	// active: priority first and splits freely; draft: distance first, single node.
	active := ruleSet(t, "reject", sourcing.Strategy{Name: "a", Filters: filters("stock"),
		Ranking: sourcing.Ranking{By: by("priority")}, Split: sourcing.Split{Policy: "ranked"}})
	active = active.WithVersion(3)
	draft := ruleSet(t, "hold", sourcing.Strategy{Name: "d", Filters: filters("stock"),
		Ranking: sourcing.Ranking{By: by("distance")}, Split: single})
	orders := []sourcing.ReplayOrder{
		{Order: order(ln("X", 1))},             // active: BJ; draft: HZ
		{Order: order(ln("X", 1), ln("Y", 1))}, // active: BJ+HZ; draft: HZ
		{Order: order(ln("Y", 1), ln("Z", 1))}, // active: HZ+NOLOC; draft: hold
		{Order: order(ln("Q", 1))},             // both fail: reject vs hold
	}
	for i := range orders {
		orders[i].Order.ID = string(rune('a' + i))
		orders[i].Nodes, orders[i].Avail = nodes, stock
	}
	rep := sourcing.Replay(active, draft, orders)

	hzToHZ := 0.0
	bjToHZ := sourcing.DistanceKm(30.27, 120.15, 39.90, 116.40)
	want := sourcing.ReplayReport{
		Orders: 4,
		Active: sourcing.ReplayStats{
			Version: 3, Orders: 4, Fulfilled: 3, Rejected: 1, Shipments: 5,
			MeanShipments: 5.0 / 4, SplitRate: 2.0 / 4,
			MeanDistanceKm: (bjToHZ + bjToHZ + hzToHZ + hzToHZ) / 4, KnownDistance: 4,
		},
		Draft: sourcing.ReplayStats{
			Orders: 4, Fulfilled: 2, Hold: 2, Shipments: 2,
			MeanShipments: 2.0 / 4, SplitRate: 0, MeanDistanceKm: 0, KnownDistance: 2,
		},
		Differ:    4,
		DifferIDs: []string{"a", "b", "c", "d"},
	}
	if math.Abs(rep.Active.MeanDistanceKm-want.Active.MeanDistanceKm) < 1e-9 {
		rep.Active.MeanDistanceKm = want.Active.MeanDistanceKm
	}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("report:\ngot  %+v\nwant %+v", rep, want)
	}

	same := sourcing.Replay(active, active, orders)
	if same.Differ != 0 || same.DifferIDs != nil {
		t.Errorf("same rule set twice: got %d differing (%v), want 0", same.Differ, same.DifferIDs)
	}
}

func TestSamePlan(t *testing.T) {
	a := &sourcing.Result{Outcome: "fulfilled", Shipments: []sourcing.Shipment{
		{NodeID: "A", Lines: []sourcing.ShipLine{{SKU: "X", Qty: 1}, {SKU: "Y", Qty: 2}}},
		{NodeID: "B", Lines: []sourcing.ShipLine{{SKU: "Z", Qty: 1}}},
	}}
	b := &sourcing.Result{Outcome: "fulfilled", Reason: "other words", Shipments: []sourcing.Shipment{
		{NodeID: "B", Lines: []sourcing.ShipLine{{SKU: "Z", Qty: 1}}},
		{NodeID: "A", Lines: []sourcing.ShipLine{{SKU: "Y", Qty: 2}, {SKU: "X", Qty: 1}}},
	}}
	c := &sourcing.Result{Outcome: "fulfilled", Shipments: []sourcing.Shipment{
		{NodeID: "A", Lines: []sourcing.ShipLine{{SKU: "X", Qty: 1}, {SKU: "Y", Qty: 1}}},
		{NodeID: "B", Lines: []sourcing.ShipLine{{SKU: "Z", Qty: 1}, {SKU: "Y", Qty: 1}}},
	}}
	d := &sourcing.Result{Outcome: "backorder", Shipments: a.Shipments}
	for _, tc := range []struct {
		name string
		x, y *sourcing.Result
		want bool
	}{
		{"the order of shipments and lines does not matter", a, b, true},
		{"other quantities per node differ", a, c, false},
		{"another outcome differs", a, d, false},
	} {
		if got := sourcing.SamePlan(tc.x, tc.y); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadReplayOrders(t *testing.T) {
	good := `{"id": "o-1", "channel": "tmall", "region": "CN-ZJ", "lat": 30.2, "lon": 120.1, "has_location": true, "value": 3998, "lines": [{"sku": "X", "qty": 2, "unit_price": 1999, "tags": ["bulky"]}]}

{"id": "o-2", "channel": "jd", "region": "CN-SH", "pickup": true, "pickup_node": "S1", "value": 0, "lines": [{"sku": "Y", "qty": 1}]}
`
	got, err := sourcing.ReadReplayOrders(strings.NewReader(good), 0)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	want := []sourcing.ReplayOrder{
		{Order: sourcing.Order{ID: "o-1", Channel: "tmall", Region: "CN-ZJ", Lat: 30.2, Lon: 120.1, HasLocation: true, Value: 3998,
			Lines: []sourcing.Line{{SKU: "X", Qty: 2, UnitPrice: 1999, Tags: []string{"bulky"}}}}},
		{Order: sourcing.Order{ID: "o-2", Channel: "jd", Region: "CN-SH", Pickup: true, PickupNode: "S1",
			Lines: []sourcing.Line{{SKU: "Y", Qty: 1}}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	line := `{"id": "o", "channel": "c", "region": "r", "value": 1, "lines": [{"sku": "X", "qty": 1}]}`
	cases := []struct {
		name, input string
		limit       int
		line        int
		field, msg  string
	}{
		{"an unknown field names its line", line + "\n" + `{"id": "o", "lines": [{"sku": "X", "qty": 1}], "colour": "red"}`, 0, 2, "colour", "unknown field"},
		{"bad JSON names its line", line + "\n\n" + `{"id": `, 0, 3, "", "unexpected end of input"},
		{"a wrong type names its line and field", `{"lines": [{"sku": "X", "qty": "2"}]}`, 0, 1, "lines[0].qty", "must be an integer, got a string"},
		{"an order without lines is refused", `{"id": "o", "lines": []}`, 0, 1, "lines", "at least one line"},
		{"a line without SKU is refused", `{"lines": [{"qty": 1}]}`, 0, 1, "lines[0].sku", "is required"},
		{"a non-positive qty is refused", `{"lines": [{"sku": "X", "qty": 0}]}`, 0, 1, "lines[0].qty", "must be positive"},
		{"a line that is not an object is refused", `[1, 2]`, 0, 1, "", "want a JSON object"},
		{"two orders on one line are refused", line + " " + line, 0, 1, "", "unexpected data after the order"},
		{"more lines than the limit is an error, not a cut", line + "\n" + line + "\n" + line + "\n", 2, 3, "", "more than 2 lines"},
		{"a line longer than the cap is refused", line + "\n" + `{"id": "` + strings.Repeat("x", sourcing.MaxReplayLineBytes) + `"}`, 0, 2, "", "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sourcing.ReadReplayOrders(strings.NewReader(tc.input), tc.limit)
			var le *sourcing.ReplayLineError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want a *ReplayLineError", err)
			}
			if le.Line != tc.line || le.Field != tc.field || !strings.Contains(le.Message, tc.msg) {
				t.Errorf("got line %d field %q message %q, want line %d field %q message containing %q", le.Line, le.Field, le.Message, tc.line, tc.field, tc.msg)
			}
			if !strings.Contains(err.Error(), "line ") {
				t.Errorf("Error(): got %q, want it to name the line", err.Error())
			}
		})
	}
	if got, err := sourcing.ReadReplayOrders(strings.NewReader(line+"\n"+line+"\n"), 2); err != nil || len(got) != 2 {
		t.Errorf("exactly the limit: got %d orders, %v; want 2, nil", len(got), err)
	}
}
