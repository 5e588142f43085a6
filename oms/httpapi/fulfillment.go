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
		h := &fulfillmentHandlers{s: s, f: f}
		mux.HandleFunc("POST /v1/orders/{id}/cancel", s.ChannelAuth(h.cancel))
		mux.HandleFunc("POST /v1/orders/{id}/payment", s.ChannelAuth(h.pay))
		mux.HandleFunc("POST /v1/shipments/{id}/events", s.Admin(h.shipmentEvent))
	}
}

type fulfillmentHandlers struct {
	s *Server
	f FulfillmentAPI
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

func (h *fulfillmentHandlers) cancel(w http.ResponseWriter, r *http.Request) {
	ch, _ := ChannelOf(r.Context())
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var req cancelRequest
	if len(body) > 0 { // the reason is optional, and so is the body
		if err := decodeStrict(body, &req); err != nil {
			h.s.writeError(w, r, err)
			return
		}
	}
	o, err := h.f.Cancel(r.Context(), ch.ID, r.PathValue("id"), req.Reason)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

type paymentRequest struct {
	Status string `json:"status"`
}

func (h *fulfillmentHandlers) pay(w http.ResponseWriter, r *http.Request) {
	ch, _ := ChannelOf(r.Context())
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var req paymentRequest
	if err := decodeStrict(body, &req); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	if req.Status != oms.PaymentPaid {
		h.s.writeError(w, r, oms.Invalid("the payment is not valid", oms.FieldError{Field: "status", Message: `must be "paid"`}))
		return
	}
	o, err := h.f.Pay(r.Context(), ch.ID, r.PathValue("id"))
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (h *fulfillmentHandlers) shipmentEvent(w http.ResponseWriter, r *http.Request) {
	body, err := h.s.readBody(w, r)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	var ev oms.WMSEvent
	if err := decodeStrict(body, &ev); err != nil {
		h.s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if ev.ShipmentID == "" {
		ev.ShipmentID = id
	}
	if ev.ShipmentID != id {
		h.s.writeError(w, r, oms.Invalid("the shipment id differs from the path", oms.FieldError{Field: "shipment_id", Message: "must equal the id in the path"}))
		return
	}
	o, err := h.f.ApplyWMSEvent(r.Context(), ev)
	if err != nil {
		h.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}
