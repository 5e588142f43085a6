package httpapi

import (
	"context"
	"net/http"

	"github.com/omsd/omsd/oms"
)

// FulfillmentAPI is what the fulfillment routes need
// (oms.FulfillmentService).
type FulfillmentAPI interface {
	// Cancel and Pay act on an order of channel and answer 404 for another
	// channel's order.
	Cancel(ctx context.Context, channel, id, reason string) (*oms.Order, error)
	Pay(ctx context.Context, channel, id string) (*oms.Order, error)
	ApplyWMSEvent(ctx context.Context, ev oms.WMSEvent) (*oms.Order, error)
}

// FulfillmentRoutes registers payment and cancellation (channel key) and
// the HTTP door for warehouse events (admin key).
func FulfillmentRoutes(f FulfillmentAPI) func(mux *http.ServeMux, s *Server) {
	return func(mux *http.ServeMux, s *Server) {
		h := &fulfillmentHandlers{f: f}
		mux.HandleFunc("POST /v1/orders/{id}/cancel", s.ChannelAuth(handleJSON(s, http.StatusOK, h.cancel)))
		mux.HandleFunc("POST /v1/orders/{id}/payment", s.ChannelAuth(handleJSON(s, http.StatusOK, h.pay)))
		mux.HandleFunc("POST /v1/shipments/{id}/events", s.Admin(handleJSON(s, http.StatusOK, h.shipmentEvent)))
	}
}

type fulfillmentHandlers struct {
	f FulfillmentAPI
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

// decodeBody: the reason is optional, and so is the body.
func (c *cancelRequest) decodeBody(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	type plain cancelRequest // without this method, so decodeStrict does the work
	return decodeStrict(body, (*plain)(c))
}

func (h *fulfillmentHandlers) cancel(r *http.Request, req *cancelRequest) (*oms.Order, error) {
	ch, _ := ChannelOf(r.Context())
	return h.f.Cancel(r.Context(), ch.ID, r.PathValue("id"), req.Reason)
}

type paymentRequest struct {
	Status string `json:"status"`
}

func (h *fulfillmentHandlers) pay(r *http.Request, req *paymentRequest) (*oms.Order, error) {
	if req.Status != oms.PaymentPaid {
		return nil, oms.Invalid("the payment is not valid", oms.FieldError{Field: "status", Message: `must be "paid"`})
	}
	ch, _ := ChannelOf(r.Context())
	return h.f.Pay(r.Context(), ch.ID, r.PathValue("id"))
}

func (h *fulfillmentHandlers) shipmentEvent(r *http.Request, ev *oms.WMSEvent) (*oms.Order, error) {
	id := r.PathValue("id")
	if ev.ShipmentID == "" {
		ev.ShipmentID = id
	}
	if ev.ShipmentID != id {
		return nil, oms.Invalid("the shipment id differs from the path", oms.FieldError{Field: "shipment_id", Message: "must equal the id in the path"})
	}
	return h.f.ApplyWMSEvent(r.Context(), *ev)
}
