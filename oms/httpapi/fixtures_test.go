package httpapi

import (
	"time"

	"github.com/omsd/omsd/oms"
)

// The fakes answer with complete resources, as the real services do: the
// contract checker (apitest) holds every answer to the document, so a fake
// that answers half an order would be a failing test.

var fixtureTime = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// orderOf is the order a channel's request becomes.
func orderOf(channel string, req *oms.OrderRequest) *oms.Order {
	var total int64
	for _, l := range req.Lines {
		total += l.Qty * l.UnitPrice
	}
	pay := req.Payment.Status
	if pay == "" {
		pay = oms.PaymentPaid
	}
	ful := req.Fulfillment
	if ful.Type == "" {
		ful.Type = oms.FulfillShip
	}
	return &oms.Order{
		ID: oms.OrderID(channel, req.ExternalID), ExternalID: req.ExternalID, Channel: channel,
		Status: oms.OrderReleased, PaymentStatus: pay, Customer: req.Customer, ShipTo: req.ShipTo,
		Lines: req.Lines, Currency: req.Currency, Total: total, Fulfillment: ful,
		Shipments: []oms.Shipment{}, Version: 1, CreatedAt: fixtureTime, UpdatedAt: fixtureTime,
	}
}

// sampleOrder is a complete released order with id and status.
func sampleOrder(id string, status oms.OrderStatus) *oms.Order {
	o := orderOf("web", &oms.OrderRequest{ExternalID: "TM-1", Customer: oms.Customer{ID: "C1"},
		Lines: []oms.Line{{SKU: "SKU-1", Qty: 1, UnitPrice: 100}}, Currency: "CNY"})
	o.ID, o.Status = id, status
	return o
}

// sampleReturn is a complete requested return.
func sampleReturn(id, orderID string) *oms.Return {
	return &oms.Return{
		ID: id, OrderID: orderID, ExternalID: "RMA-1", Channel: "web", Status: oms.ReturnRequested,
		Reason: "damaged", Resolution: "refund", Lines: []oms.ShipLine{{SKU: "S", Qty: 1}}, NodeID: "WH-1",
		Refund: oms.Refund{Amount: 0, Currency: "CNY", Status: "pending"}, Version: 1,
		CreatedAt: fixtureTime, UpdatedAt: fixtureTime,
	}
}
