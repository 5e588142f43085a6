package httpapi

import (
	"context"
	"net/http"

	"github.com/omsd/omsd/oms"
)

// ReturnsAPI is what the after-sales routes need (oms.ReturnService).
// channel "" is an operator (admin key): every channel's returns.
type ReturnsAPI interface {
	Request(ctx context.Context, channel, orderID, idemKey string, req *oms.ReturnRequest) (*oms.Return, bool, error)
	Get(ctx context.Context, channel, id string) (*oms.Return, error)
	ForOrder(ctx context.Context, channel, orderID string) ([]*oms.Return, error)
	Approve(ctx context.Context, channel, id string) (*oms.Return, error)
	Reject(ctx context.Context, channel, id, reason string) (*oms.Return, error)
	Refund(ctx context.Context, channel, id, reference string) (*oms.Return, error)
	ApplyWMSEvent(ctx context.Context, ev oms.WMSEvent) (*oms.Return, error)
}

// ReturnRoutes registers returns, refunds and exchanges (a channel key for
// its own orders, the admin key for any) and the HTTP door for the
// warehouse's return events (admin key).
func ReturnRoutes(api ReturnsAPI) func(mux *http.ServeMux, s *Server) {
	return func(mux *http.ServeMux, s *Server) {
		h := &returnHandlers{api: api}
		mux.HandleFunc("POST /v1/orders/{id}/returns", s.AdminOrChannel(handleJSON(s, http.StatusOK, h.request)))
		mux.HandleFunc("GET /v1/orders/{id}/returns", s.AdminOrChannel(handleJSON(s, http.StatusOK, h.forOrder)))
		mux.HandleFunc("GET /v1/returns/{id}", s.AdminOrChannel(handleJSON(s, http.StatusOK, h.get)))
		mux.HandleFunc("POST /v1/returns/{id}/approve", s.AdminOrChannel(handleJSON(s, http.StatusOK, h.approve)))
		mux.HandleFunc("POST /v1/returns/{id}/reject", s.AdminOrChannel(handleJSON(s, http.StatusOK, h.reject)))
		mux.HandleFunc("POST /v1/returns/{id}/refund", s.AdminOrChannel(handleJSON(s, http.StatusOK, h.refund)))
		mux.HandleFunc("POST /v1/returns/{id}/events", s.Admin(handleJSON(s, http.StatusOK, h.event)))
	}
}

type returnHandlers struct {
	api ReturnsAPI
}

func channelID(r *http.Request) string {
	ch, _ := ChannelOf(r.Context())
	return ch.ID
}

// request answers 201 with a Location for a new return, 200 for a repeat.
func (h *returnHandlers) request(r *http.Request, req *oms.ReturnRequest) (reply, error) {
	key, err := idempotencyKey(r.Header)
	if err != nil {
		return reply{}, err
	}
	ret, created, err := h.api.Request(r.Context(), channelID(r), r.PathValue("id"), key, req)
	if err != nil {
		return reply{}, err
	}
	rp := reply{status: http.StatusOK, body: ret}
	if created {
		rp.status = http.StatusCreated
		rp.location = "/v1/returns/" + ret.ID
	}
	return rp, nil
}

type returnList struct {
	Returns []*oms.Return `json:"returns"`
}

func (h *returnHandlers) forOrder(r *http.Request, _ *noBody) (returnList, error) {
	rets, err := h.api.ForOrder(r.Context(), channelID(r), r.PathValue("id"))
	if rets == nil {
		rets = []*oms.Return{} // the contract's list is an array, never null
	}
	return returnList{Returns: rets}, err
}

func (h *returnHandlers) get(r *http.Request, _ *noBody) (*oms.Return, error) {
	return h.api.Get(r.Context(), channelID(r), r.PathValue("id"))
}

// emptyBody is a request that takes an empty body or {}.
type emptyBody struct{}

func (e *emptyBody) decodeBody(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	var v struct{}
	return decodeStrict(body, &v)
}

func (h *returnHandlers) approve(r *http.Request, _ *emptyBody) (*oms.Return, error) {
	return h.api.Approve(r.Context(), channelID(r), r.PathValue("id"))
}

type rejectRequest struct {
	Reason string `json:"reason"`
}

func (h *returnHandlers) reject(r *http.Request, req *rejectRequest) (*oms.Return, error) {
	return h.api.Reject(r.Context(), channelID(r), r.PathValue("id"), req.Reason)
}

type refundRequest struct {
	Status    string `json:"status"`
	Reference string `json:"reference"`
}

func (h *returnHandlers) refund(r *http.Request, req *refundRequest) (*oms.Return, error) {
	if req.Status != oms.RefundRefunded {
		return nil, oms.Invalid("the refund is not valid", oms.FieldError{Field: "status", Message: `must be "refunded"`})
	}
	return h.api.Refund(r.Context(), channelID(r), r.PathValue("id"), req.Reference)
}

func (h *returnHandlers) event(r *http.Request, ev *oms.WMSEvent) (*oms.Return, error) {
	id := r.PathValue("id")
	if ev.ReturnID == "" {
		ev.ReturnID = id
	}
	if ev.ReturnID != id {
		return nil, oms.Invalid("the return id differs from the path", oms.FieldError{Field: "return_id", Message: "must equal the id in the path"})
	}
	if !ev.IsReturnEvent() {
		return nil, oms.Invalid("not a return event", oms.FieldError{Field: "type", Message: "must be return.acknowledged or return.received"})
	}
	return h.api.ApplyWMSEvent(r.Context(), *ev)
}
