package sourcing_test

import (
	"encoding/json"
	"fmt"

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
