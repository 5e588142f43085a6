package memstock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/omsd/omsd/inventory"
	"github.com/omsd/omsd/inventory/memstock"
)

// A checkout reserves the lines of one shipment at one node, all or
// nothing; the sweeper gives back what was not paid in time.
func Example() {
	ctx := context.Background()
	s := memstock.New(memstock.Config{AutoReady: true})
	if _, err := s.SetStock(ctx, "shanghai-dc", "lipstick-01", 3, 1); err != nil { // 3 on hand, 1 kept back
		fmt.Println(err)
		return
	}

	now := time.Now()
	err := s.Reserve(ctx, inventory.Hold{ID: "ship-1", Node: "shanghai-dc", Deadline: now.Add(30 * time.Minute),
		Lines: []inventory.Line{{SKU: "lipstick-01", Qty: 2}}})
	fmt.Println("first buyer:", err)

	err = s.Reserve(ctx, inventory.Hold{ID: "ship-2", Node: "shanghai-dc",
		Lines: []inventory.Line{{SKU: "lipstick-01", Qty: 1}}})
	var short *inventory.ShortError
	fmt.Println("second buyer out of stock:", errors.As(err, &short), short.Have)

	expired, _ := s.SweepExpired(ctx, now.Add(time.Hour), 0)
	fmt.Println("expired unpaid:", expired)

	levels, _ := s.Levels(ctx, []inventory.Key{{Node: "shanghai-dc", SKU: "lipstick-01"}})
	fmt.Printf("available again: %d\n", levels[0].Available)
	// Output:
	// first buyer: <nil>
	// second buyer out of stock: true 0
	// expired unpaid: [ship-1]
	// available again: 2
}
