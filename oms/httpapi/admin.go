package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/omsd/omsd/oms"
	"github.com/omsd/omsd/sourcing"
)

// AdminAPI is what the admin routes need.
type AdminAPI interface {
	PutNode(ctx context.Context, n oms.Node) (bool, error)
	GetNode(ctx context.Context, id string) (oms.Node, error)
	ListNodes(ctx context.Context) ([]oms.Node, error)
	SetStock(ctx context.Context, node, sku string, s oms.StockSnapshot) (oms.LevelView, error)
	StockBySKU(ctx context.Context, sku string) (oms.SKUStock, error)
	Rules() *sourcing.RuleSet
	ActivateRules(ctx context.Context, doc []byte) (*sourcing.RuleSet, error)
	Simulate(ctx context.Context, channel string, req *oms.OrderRequest, draft *sourcing.RuleSet) (*sourcing.Result, error)
	PutPromotion(ctx context.Context, p oms.Promotion) error
	ClearReview(ctx context.Context, id string) (*oms.Order, error)
}

// registerAdminRoutes registers the routes an operator calls with the
// admin key: the network of nodes, stock snapshots, the sourcing rules and
// their simulation, promotions, and clearing an order's review.
func registerAdminRoutes(mux *http.ServeMux, h *adminHandlers) {
	s := h.s
	mux.HandleFunc("PUT /v1/nodes/{id}", s.Admin(handleJSON(s, http.StatusOK, h.putNode)))
	mux.HandleFunc("GET /v1/nodes/{id}", s.Admin(handleJSON(s, http.StatusOK, h.getNode)))
	mux.HandleFunc("GET /v1/nodes", s.Admin(handleJSON(s, http.StatusOK, h.listNodes)))
	mux.HandleFunc("PUT /v1/inventory/{node_id}/{sku}", s.Admin(handleJSON(s, http.StatusOK, h.putStock)))
	mux.HandleFunc("GET /v1/inventory/{sku}", s.Admin(handleJSON(s, http.StatusOK, h.getStock)))
	mux.HandleFunc("GET /v1/sourcing/rules", s.Admin(handleJSON(s, http.StatusOK, h.getRules)))
	mux.HandleFunc("PUT /v1/sourcing/rules", s.Admin(handleJSON(s, http.StatusOK, h.putRules)))
	mux.HandleFunc("POST /v1/sourcing/simulate", s.Admin(handleJSON(s, http.StatusOK, h.simulate)))
	mux.HandleFunc("PUT /v1/promotions/{id}", s.Admin(handleJSON(s, http.StatusOK, h.putPromotion)))
	// The v1 path says "release"; what it does is clear the order's review.
	mux.HandleFunc("POST /v1/orders/{id}/release", s.Admin(handleJSON(s, http.StatusOK, h.clearReview)))
}

type adminHandlers struct {
	s     *Server
	admin AdminAPI
}

// putNode answers 201 for a new node, 200 for a replaced one.
func (h *adminHandlers) putNode(r *http.Request, n *oms.Node) (reply, error) {
	id := r.PathValue("id")
	if n.ID == "" {
		n.ID = id
	}
	if n.ID != id {
		return reply{}, oms.Invalid("the node id differs from the path", oms.FieldError{Field: "id", Message: "must equal the id in the path"})
	}
	created, err := h.admin.PutNode(r.Context(), *n)
	if err != nil {
		return reply{}, err
	}
	rp := reply{body: n}
	if created {
		rp.status = http.StatusCreated
	}
	return rp, nil
}

func (h *adminHandlers) getNode(r *http.Request, _ *noBody) (oms.Node, error) {
	return h.admin.GetNode(r.Context(), r.PathValue("id"))
}

type nodeList struct {
	Nodes []oms.Node `json:"nodes"`
}

func (h *adminHandlers) listNodes(r *http.Request, _ *noBody) (nodeList, error) {
	ns, err := h.admin.ListNodes(r.Context())
	if ns == nil {
		ns = []oms.Node{} // the contract's list is an array, never null
	}
	return nodeList{Nodes: ns}, err
}

func (h *adminHandlers) putStock(r *http.Request, snap *oms.StockSnapshot) (oms.LevelView, error) {
	return h.admin.SetStock(r.Context(), r.PathValue("node_id"), r.PathValue("sku"), *snap)
}

func (h *adminHandlers) getStock(r *http.Request, _ *noBody) (oms.SKUStock, error) {
	return h.admin.StockBySKU(r.Context(), r.PathValue("sku"))
}

func (h *adminHandlers) getRules(*http.Request, *noBody) (*sourcing.RuleSet, error) {
	return h.admin.Rules(), nil
}

// putRules passes the document on verbatim: the rule parser reports its
// faults as fields of a 422, which strict decoding here would hide.
func (h *adminHandlers) putRules(r *http.Request, doc *rawJSON) (*sourcing.RuleSet, error) {
	return h.admin.ActivateRules(r.Context(), *doc)
}

// simulateRequest is an order body, with the channel to plan for and an
// optional draft rule set.
type simulateRequest struct {
	oms.OrderRequest
	Channel string          `json:"channel"`
	Rules   json.RawMessage `json:"rules,omitempty"`
}

func (h *adminHandlers) simulate(r *http.Request, req *simulateRequest) (*sourcing.Result, error) {
	if req.Channel == "" {
		req.Channel = "simulation"
	}
	var draft *sourcing.RuleSet
	if len(req.Rules) > 0 {
		rs, err := sourcing.ParseRules(req.Rules)
		if err != nil {
			return nil, rulesError(err)
		}
		draft = rs
	}
	return h.admin.Simulate(r.Context(), req.Channel, &req.OrderRequest, draft)
}

func rulesError(err error) error {
	var ve *sourcing.ValidationError
	if errors.As(err, &ve) {
		e := oms.Invalid("the rule set is not valid")
		for _, f := range ve.Errors {
			e.Fields = append(e.Fields, oms.FieldError{Field: "rules." + f.Field, Message: f.Message})
		}
		return e
	}
	return oms.Invalid("the rule set is not valid", oms.FieldError{Field: "rules", Message: err.Error()})
}

func (h *adminHandlers) putPromotion(r *http.Request, p *oms.Promotion) (*oms.Promotion, error) {
	p.ID = r.PathValue("id")
	if err := h.admin.PutPromotion(r.Context(), *p); err != nil {
		return nil, err
	}
	return p, nil
}

// clearReview lets an order in review go on to fulfillment.
func (h *adminHandlers) clearReview(r *http.Request, _ *noBody) (*oms.Order, error) {
	return h.admin.ClearReview(r.Context(), r.PathValue("id"))
}
