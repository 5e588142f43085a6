package main

import (
	"testing"
	"time"
)

// TestExpiredOrderGivesBackThePurchaseLimit: a customer at the limit of a
// promotion whose unpaid order expires may buy again; a cancelled order
// gives its allowance back too.
func TestExpiredOrderGivesBackThePurchaseLimit(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.PaymentTimeout = time.Second })
	key := seedBasic(t, s)
	now := time.Now().UTC()
	s.mustCall("PUT", "/v1/promotions/FLASH", s.Admin, map[string]any{"sku": "SKU-1", "per_customer_limit": 2,
		"starts_at": now.Add(-time.Hour), "ends_at": now.Add(time.Hour)}, 200, nil)

	first := orderBody("LIM-1", line("SKU-1", 2))
	first["payment"] = map[string]any{"status": "pending"}
	var o orderView
	s.mustCall("POST", "/v1/orders", key, first, 201, &o)
	again := orderBody("LIM-2", line("SKU-1", 1))
	again["customer"] = first["customer"]
	s.mustCall("POST", "/v1/orders", key, again, 422, nil)

	waitFor(t, "the unpaid order to expire", 15*time.Second, func() bool {
		var cur orderView
		s.mustCall("GET", "/v1/orders/"+o.ID, key, nil, 200, &cur)
		return cur.Status == "expired"
	})
	var o2 orderView
	s.mustCall("POST", "/v1/orders", key, again, 201, &o2)

	// Cancelling before release gives the allowance back as well.
	third := orderBody("LIM-3", line("SKU-1", 1))
	third["customer"] = first["customer"]
	third["payment"] = map[string]any{"status": "pending"}
	var o3 orderView
	s.mustCall("POST", "/v1/orders", key, third, 201, &o3)
	fourth := orderBody("LIM-4", line("SKU-1", 1))
	fourth["customer"] = first["customer"]
	s.mustCall("POST", "/v1/orders", key, fourth, 422, nil)
	s.mustCall("POST", "/v1/orders/"+o3.ID+"/cancel", key, map[string]any{"reason": "changed my mind"}, 200, nil)
	s.mustCall("POST", "/v1/orders", key, fourth, 201, nil)
}
