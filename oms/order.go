package oms

import (
	"crypto/sha256"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// OrderStatus is where an order is in its life (the v1 contract's names).
type OrderStatus string

// Order statuses. The allowed moves between them are in state.go.
const (
	OrderPendingPayment OrderStatus = "pending_payment"
	// OrderInReview: a person must look at the order before it goes to a
	// warehouse (its stock is held meanwhile). The v1 contract calls it
	// on_hold; in code a hold is only ever a stock reservation.
	OrderInReview OrderStatus = "on_hold"
	// OrderReleased: released to fulfillment, the warehouses were asked to
	// ship. (Freeing stock is "releasing a hold", never "releasing" an order.)
	OrderReleased         OrderStatus = "released"
	OrderPartiallyShipped OrderStatus = "partially_shipped"
	OrderShipped          OrderStatus = "shipped"
	OrderCancelRequested  OrderStatus = "cancel_requested"
	OrderCancelled        OrderStatus = "cancelled"
	OrderExpired          OrderStatus = "expired"
)

// ShipmentStatus is where one shipment is in its life.
type ShipmentStatus string

// Shipment statuses.
const (
	ShipmentPending         ShipmentStatus = "pending" // not released to the warehouse
	ShipmentRequested       ShipmentStatus = "requested"
	ShipmentAcknowledged    ShipmentStatus = "acknowledged"
	ShipmentShipped         ShipmentStatus = "shipped"
	ShipmentCancelRequested ShipmentStatus = "cancel_requested"
	ShipmentCancelled       ShipmentStatus = "cancelled"
	ShipmentRejected        ShipmentStatus = "rejected"
)

// Payment statuses.
const (
	PaymentPaid    = "paid"
	PaymentPending = "pending"
)

// Fulfillment types.
const (
	FulfillShip   = "ship"
	FulfillPickup = "pickup"
)

// Limits on an order request (the v1 contract, oms/httpapi/api/openapi.yaml).
const (
	MaxLines    = 500
	MaxQty      = 100000
	MaxUnitCost = int64(1) << 32 // keeps 500 lines x 100000 units x price inside int64
)

// Customer identifies the buyer. Email and phone are personal data: they are
// stored with the order for the warehouse and never logged.
type Customer struct {
	ID    string `json:"id"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
	// OmsdID is the omsd customer the order was matched to (set by omsd;
	// a request must not carry it).
	OmsdID string `json:"omsd_id,omitempty"`
}

// Address is a ship-to address.
type Address struct {
	Name       string   `json:"name"`
	Line1      string   `json:"line1"`
	Line2      string   `json:"line2,omitempty"`
	City       string   `json:"city"`
	Region     string   `json:"region"`
	PostalCode string   `json:"postal_code"`
	Country    string   `json:"country"`
	Lat        *float64 `json:"lat,omitempty"`
	Lon        *float64 `json:"lon,omitempty"`
}

// Line is one order line.
type Line struct {
	SKU       string `json:"sku"`
	Qty       int64  `json:"qty"`
	UnitPrice int64  `json:"unit_price"`
}

// Payment is the payment state a channel reports.
type Payment struct {
	Status string `json:"status"`
}

// Fulfillment says how the order reaches the buyer.
type Fulfillment struct {
	Type       string `json:"type"`
	PickupNode string `json:"pickup_node,omitempty"`
}

// Attribution records who brought the buyer (B2B2C): a distributor, a store
// (a node of type store) and a sales associate. Settlement pays from it.
type Attribution struct {
	Distributor string `json:"distributor,omitempty"`
	Store       string `json:"store,omitempty"`
	Associate   string `json:"associate,omitempty"`
	// Source says where a stored order's attribution came from: order,
	// binding or none (set by omsd; a request must not carry it).
	Source string `json:"source,omitempty"`
}

// OrderRequest is the body of POST /v1/orders.
type OrderRequest struct {
	ExternalID  string       `json:"external_id"`
	Customer    Customer     `json:"customer"`
	ShipTo      *Address     `json:"ship_to,omitempty"`
	Lines       []Line       `json:"lines"`
	Currency    string       `json:"currency"`
	Total       *int64       `json:"total,omitempty"`
	Payment     Payment      `json:"payment"`
	Fulfillment Fulfillment  `json:"fulfillment"`
	Attribution *Attribution `json:"attribution,omitempty"`
}

// ShipLine is a quantity of one SKU in a shipment.
type ShipLine struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Shipment is what one node ships for an order.
type Shipment struct {
	ID             string         `json:"id"`
	NodeID         string         `json:"node_id"`
	Status         ShipmentStatus `json:"status"`
	Lines          []ShipLine     `json:"lines"`
	TrackingNumber string         `json:"tracking_number,omitempty"`
	// HoldID is the inventory reservation of this shipment.
	HoldID string `json:"-"`
}

// Order is an order as omsd stores and answers it.
type Order struct {
	ID            string       `json:"id"`
	ExternalID    string       `json:"external_id"`
	Channel       string       `json:"channel"`
	Status        OrderStatus  `json:"status"`
	PaymentStatus string       `json:"payment_status"`
	ReservedUntil *time.Time   `json:"reserved_until"`
	Customer      Customer     `json:"customer"`
	ShipTo        *Address     `json:"ship_to,omitempty"`
	Lines         []Line       `json:"lines"`
	Currency      string       `json:"currency"`
	Total         int64        `json:"total"`
	Fulfillment   Fulfillment  `json:"fulfillment"`
	Attribution   *Attribution `json:"attribution,omitempty"`
	Shipments     []Shipment   `json:"shipments"`
	ReviewReasons []string     `json:"hold_reasons,omitempty"`
	// Flags record facts a person must act on, e.g. "cancel_failed_return_needed".
	Flags        []string `json:"flags,omitempty"`
	CancelReason string   `json:"cancel_reason,omitempty"`
	// Refunded is the total of the order's refunded returns (minor units).
	Refunded  int64     `json:"refunded,omitempty"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// encoded is the JSON of this order as stored, when intake has it.
	encoded []byte
}

// Encoded returns the order's JSON as stored when it is at hand (a new
// order), nil otherwise: the API answers with it instead of encoding the
// order a third time.
func (o *Order) Encoded() []byte { return o.encoded }

// orderNamespace is the UUIDv5 namespace of order ids.
var orderNamespace = uuid.MustParse("6f1c2a9e-3b7d-5c41-9e0a-8d2f4b6a1c3e")

// OrderID is the deterministic id of (channel, external id): copies of one
// order collide on it in Redis and in SQL.
func OrderID(channel, externalID string) string {
	return uuid.NewSHA1(orderNamespace, []byte(channel+"\x00"+externalID)).String()
}

// RequestHash fingerprints the meaning of a request (its decoded form
// re-encoded), so that whitespace or key order do not make a retry look
// different.
func RequestHash(req *OrderRequest) []byte { return hashJSON(req) }

// hashJSON is the SHA-256 of v's JSON encoding.
func hashJSON(v any) []byte {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return h[:]
}

// Value is the order's value in minor units.
func (r *OrderRequest) Value() int64 {
	var v int64
	for _, l := range r.Lines {
		v += l.Qty * l.UnitPrice
	}
	return v
}
