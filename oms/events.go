package oms

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Topics of the v1 contract.
const (
	TopicShipments = "oms.shipments" // key = node id
	TopicWMSEvents = "wms.events"    // key = shipment id
	TopicOrders    = "oms.orders"    // key = order id
)

// EventType names a kind of event on the contract's topics.
type EventType string

// Events omsd publishes. An order's status change publishes
// StatusEvent(status) ("order.shipped", "order.cancelled", ...).
const (
	EventOrderCreated            EventType = "order.created"
	EventOrderPaid               EventType = "order.paid"
	EventOrderReleased           EventType = "order.released"
	EventOrderExpired            EventType = "order.expired"
	EventOrderCancelFailed       EventType = "order.cancel_failed"
	EventOrderBackordered        EventType = "order.backordered"
	EventOrderReviewCleared      EventType = "order.hold_cleared" // v1 wire name
	EventShipmentRequested       EventType = "shipment.requested"
	EventShipmentCancelRequested EventType = "shipment.cancel_requested"
)

// Events warehouses send on wms.events (and POST /v1/shipments/{id}/events).
const (
	WMSAcknowledged  EventType = "shipment.acknowledged"
	WMSShipped       EventType = "shipment.shipped"
	WMSRejected      EventType = "shipment.rejected"
	WMSCancelled     EventType = "shipment.cancelled"
	WMSCancelRefused EventType = "shipment.cancel_refused"
)

// StatusEvent is the oms.orders event of an order that moved to s.
func StatusEvent(s OrderStatus) EventType { return EventType("order." + string(s)) }

// OutboxEvent is an event written in the same transaction as the state
// change it reports; the relay publishes it.
type OutboxEvent struct {
	ID      string // the event_id: stable, derived from what it reports
	Topic   string
	Key     string
	Seq     int64 // order within Key
	Payload []byte
	At      time.Time
}

var eventNamespace = uuid.MustParse("0b9e3c57-2f61-5d8a-b7c4-1e6d9f2a8b30")

// EventID derives a stable event id from the parts that identify the
// change (aggregate id, event type, version): the same change always has
// the same id, so a re-publication can be recognised downstream.
func EventID(parts ...string) string {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return uuid.NewSHA1(eventNamespace, b).String()
}

// OrderEvent is the payload of oms.orders.
type OrderEvent struct {
	EventID    string    `json:"event_id"`
	Type       EventType `json:"type"`
	OrderID    string    `json:"order_id"`
	Order      *Order    `json:"order"`
	OccurredAt time.Time `json:"occurred_at"`
}

// ShipmentEvent is the payload of oms.shipments.
type ShipmentEvent struct {
	EventID    string     `json:"event_id"`
	Type       EventType  `json:"type"`
	ShipmentID string     `json:"shipment_id"`
	OrderID    string     `json:"order_id"`
	NodeID     string     `json:"node_id"`
	Lines      []ShipLine `json:"lines"`
	ShipTo     *Address   `json:"ship_to,omitempty"`
	PickupNode string     `json:"pickup_node,omitempty"`
	// Attribution travels with the shipment for store fulfilment.
	Attribution *Attribution `json:"attribution,omitempty"`
	OccurredAt  time.Time    `json:"occurred_at"`
}

// WMSEvent is the payload of wms.events (and of POST /v1/shipments/{id}/events).
type WMSEvent struct {
	EventID        string    `json:"event_id"`
	Type           EventType `json:"type"`
	ShipmentID     string    `json:"shipment_id,omitempty"`
	TrackingNumber string    `json:"tracking_number,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	// ReturnID and Lines are for return events (return.acknowledged,
	// return.received; key = return id); ShipmentID is then empty.
	ReturnID   string         `json:"return_id,omitempty"`
	Lines      []ReceivedLine `json:"lines,omitempty"`
	OccurredAt time.Time      `json:"occurred_at"`
}

// IsReturnEvent reports whether ev is about a return, not a shipment.
func (ev *WMSEvent) IsReturnEvent() bool {
	return ev.Type == WMSReturnAcknowledged || ev.Type == WMSReturnReceived
}

// orderEvent builds the oms.orders event of the order's current version.
func orderEvent(typ EventType, o *Order, now time.Time) OutboxEvent {
	doc, _ := json.Marshal(o)
	return orderEventDoc(typ, o, doc, now)
}

// orderEventDoc is orderEvent with the order already encoded (intake
// encodes a new order once for the row, the event and the answer).
func orderEventDoc(typ EventType, o *Order, doc []byte, now time.Time) OutboxEvent {
	id := EventID(o.ID, string(typ), itoa64(int64(o.Version)))
	b, _ := json.Marshal(struct {
		EventID    string          `json:"event_id"`
		Type       EventType       `json:"type"`
		OrderID    string          `json:"order_id"`
		Order      json.RawMessage `json:"order"`
		OccurredAt time.Time       `json:"occurred_at"`
	}{id, typ, o.ID, doc, now})
	return OutboxEvent{ID: id, Topic: TopicOrders, Key: o.ID, Seq: int64(o.Version), Payload: b, At: now}
}

// shipmentEvent builds an oms.shipments event for one shipment.
func shipmentEvent(typ EventType, o *Order, s *Shipment, now time.Time) OutboxEvent {
	id := EventID(s.ID, string(typ))
	b, _ := json.Marshal(ShipmentEvent{EventID: id, Type: typ, ShipmentID: s.ID, OrderID: o.ID, NodeID: s.NodeID,
		Lines: s.Lines, ShipTo: o.ShipTo, PickupNode: o.Fulfillment.PickupNode, Attribution: o.Attribution, OccurredAt: now})
	return OutboxEvent{ID: id, Topic: TopicShipments, Key: s.NodeID, Seq: int64(o.Version), Payload: b, At: now}
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
