package oms

import (
	"context"
	"slices"
	"testing"
)

func TestAHoldThatCannotBeRestoredPutsItsOrderInReview(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     OrderStatus
		payment    string
		shipStatus ShipmentStatus
		want       OrderStatus
	}{
		{"an unpaid order goes into review", OrderPendingPayment, PaymentPending, ShipmentPending, OrderInReview},
		{"a released order keeps its status and gets the reason", OrderReleased, PaymentPaid, ShipmentRequested, OrderReleased},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
			o := fx.order(tc.status, tc.payment, ship1("A", tc.shipStatus, "SKU-1", 2))
			mark := fx.store.mark()
			for range 2 { // every instance's reconciler may report it: once is enough
				if err := fx.f.ReviewUnfitHold(context.Background(), "A", o.Shipments[0].ID); err != nil {
					t.Fatal(err)
				}
			}
			got, _, err := fx.store.GetOrder(context.Background(), o.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want || !slices.Contains(got.ReviewReasons, ReviewStockShort) {
				t.Errorf("got %s with reasons %v, want %s with %s", got.Status, got.ReviewReasons, tc.want, ReviewStockShort)
			}
			if tp := fx.store.types(mark); !slices.Equal(tp, []string{string(EventOrderStockShort)}) {
				t.Errorf("got events %v, want one %s", tp, EventOrderStockShort)
			}
		})
	}
	fx := newFixture(t, map[string]int64{"A/SKU-1": 10})
	if err := fx.f.ReviewUnfitHold(context.Background(), "A", "00000000-0000-0000-0000-000000000000"); err != nil {
		t.Errorf("got %v for a hold no shipment owns, want nil", err)
	}
}
