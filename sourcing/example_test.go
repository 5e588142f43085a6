package sourcing_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/omsd/omsd/sourcing"
)

func ExamplePlan() {
	nodes := []sourcing.Node{
		{ID: "WH-HZ", Type: "warehouse", Lat: 30.27, Lon: 120.15, Regions: []string{"CN-ZJ", "CN-JS"}, Priority: 10, Active: true},
		{ID: "WH-BJ", Type: "warehouse", Lat: 39.90, Lon: 116.40, Priority: 10, Active: true},
		{ID: "ST-SH", Type: "store", Lat: 31.23, Lon: 121.47, Regions: []string{"CN-SH"}, Priority: 5, Active: true},
	}
	stock := sourcing.StockMap{
		"WH-HZ": {"SKU-1": 5},
		"WH-BJ": {"SKU-1": 50, "SKU-2": 9},
	}
	order := &sourcing.Order{
		ID: "o-1", Channel: "tmall", Region: "CN-ZJ", Lat: 30.2, Lon: 120.1, HasLocation: true,
		Value: 5997, Lines: []sourcing.Line{{SKU: "SKU-1", Qty: 2, UnitPrice: 1999}, {SKU: "SKU-2", Qty: 1, UnitPrice: 1999}},
	}
	res := sourcing.Plan(order, nodes, stock, sourcing.DefaultRules())
	fmt.Println(res.Outcome, res.Strategy, res.Shipments)
	for _, e := range res.Explanation {
		fmt.Printf("%s %s %s: %s\n", e.NodeID, e.Status, e.Filter, e.Reason())
	}
	b, _ := json.Marshal(res.Explanation[2])
	fmt.Println(string(b))
	// Output:
	// fulfilled ship [{WH-BJ [{SKU-1 2} {SKU-2 1}]}]
	// WH-HZ candidate : ranked 1; not needed
	// WH-BJ chosen : ranked 2; chosen
	// ST-SH removed region: does not serve region CN-ZJ
	// {"node_id":"ST-SH","status":"removed","filter":"region","reason":"does not serve region CN-ZJ"}
}

func ExampleParseRules() {
	_, err := sourcing.ParseRules([]byte(`{
	  "strategies": [{"name": "s", "filters": [{"type": "stock"}], "ranking": {"by": []},
	                  "split": {"policy": "single_node", "max_nodes": 2}}],
	  "fallback": "later"}`))
	var ve *sourcing.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			fmt.Printf("%s: %s\n", fe.Field, fe.Message)
		}
	}
	// Output:
	// fallback: must be "reject", "backorder" or "hold", got "later"
	// strategies[0].split.max_nodes: single_node allows at most 1 node
}

func ExampleReplay() {
	past := `{"id": "a", "channel": "tmall", "region": "CN-ZJ", "value": 100, "lines": [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 1}]}
{"id": "b", "channel": "tmall", "region": "CN-ZJ", "value": 100, "lines": [{"sku": "X", "qty": 1}]}`
	orders, err := sourcing.ReadReplayOrders(strings.NewReader(past), 1000)
	if err != nil {
		fmt.Println(err)
		return
	}
	nodes := []sourcing.Node{{ID: "A", Type: "warehouse", Active: true}, {ID: "B", Type: "warehouse", Active: true}}
	stock := sourcing.StockMap{"A": {"X": 5}, "B": {"Y": 5}}
	for i := range orders { // one snapshot for every order
		orders[i].Nodes, orders[i].Avail = nodes, stock
	}
	draft := sourcing.DefaultRules()
	draft.Strategies[1].Split = sourcing.Split{Policy: "single_node"}
	if draft, err = draft.Compile(); err != nil { // Plan sees edits only once compiled
		fmt.Println(err)
		return
	}
	rep := sourcing.Replay(sourcing.DefaultRules(), draft, orders)
	fmt.Printf("active: %d fulfilled, split rate %.2f\n", rep.Active.Fulfilled, rep.Active.SplitRate)
	fmt.Printf("draft: %d fulfilled, %d rejected\n", rep.Draft.Fulfilled, rep.Draft.Rejected)
	fmt.Println("differ:", rep.Differ, rep.DifferIDs)
	// Output:
	// active: 2 fulfilled, split rate 0.50
	// draft: 1 fulfilled, 1 rejected
	// differ: 1 [a]
}
