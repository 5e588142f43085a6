package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/omsd/omsd/oms"
)

// CustomersAPI is what the customer and attribution routes read
// (pgstore.Store).
type CustomersAPI interface {
	GetCustomer(ctx context.Context, id string) (*oms.CustomerView, error)
	CustomerOrders(ctx context.Context, id string, limit int, after string) ([]oms.CustomerOrder, string, error)
	AttributionSummary(ctx context.Context, groupBy string, from, to time.Time) ([]oms.AttributionRow, error)
}

// Limits of the customer and attribution reads.
const (
	DefaultCustomerOrders = 50
	MaxCustomerOrders     = 500
	// MaxSummarySpan bounds one attribution summary.
	MaxSummarySpan = 366 * 24 * time.Hour
)

// CustomerRoutes registers the customer and attribution reads (admin key).
func CustomerRoutes(api CustomersAPI) func(mux *http.ServeMux, s *Server) {
	return func(mux *http.ServeMux, s *Server) {
		h := &customerHandlers{api: api}
		mux.HandleFunc("GET /v1/customers/{id}", s.Admin(handleJSON(s, http.StatusOK, h.get)))
		mux.HandleFunc("GET /v1/customers/{id}/orders", s.Admin(handleJSON(s, http.StatusOK, h.orders)))
		mux.HandleFunc("GET /v1/attribution/summary", s.Admin(handleJSON(s, http.StatusOK, h.summary)))
	}
}

type customerHandlers struct {
	api CustomersAPI
}

func (h *customerHandlers) get(r *http.Request, _ *noBody) (*oms.CustomerView, error) {
	return h.api.GetCustomer(r.Context(), r.PathValue("id"))
}

type customerOrderPage struct {
	Orders []oms.CustomerOrder `json:"orders"`
	Next   string              `json:"next,omitempty"`
}

func (h *customerHandlers) orders(r *http.Request, _ *noBody) (customerOrderPage, error) {
	q := r.URL.Query()
	limit := DefaultCustomerOrders
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxCustomerOrders {
			return customerOrderPage{}, oms.Invalid("the page size is not valid",
				oms.FieldError{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(MaxCustomerOrders)})
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > 256 {
		return customerOrderPage{}, oms.Invalid("the cursor is not valid", oms.FieldError{Field: "after", Message: "is not a cursor this API returned"})
	}
	orders, next, err := h.api.CustomerOrders(r.Context(), r.PathValue("id"), limit, after)
	if orders == nil {
		orders = []oms.CustomerOrder{}
	}
	return customerOrderPage{Orders: orders, Next: next}, err
}

type attributionSummary struct {
	From    time.Time            `json:"from"`
	To      time.Time            `json:"to"`
	GroupBy string               `json:"group_by"`
	Rows    []oms.AttributionRow `json:"rows"`
}

func (h *customerHandlers) summary(r *http.Request, _ *noBody) (attributionSummary, error) {
	q := r.URL.Query()
	var fs []oms.FieldError
	hour := func(field string) time.Time {
		v := q.Get(field)
		if v == "" {
			fs = append(fs, oms.FieldError{Field: field, Message: "is required (RFC 3339, a whole hour, e.g. 2026-12-01T00:00:00Z)"})
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			fs = append(fs, oms.FieldError{Field: field, Message: "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"})
			return time.Time{}
		}
		if !t.Equal(t.Truncate(time.Hour)) {
			fs = append(fs, oms.FieldError{Field: field, Message: "must be a whole hour: the totals are kept per hour of creation"})
		}
		return t.UTC()
	}
	from, to := hour("from"), hour("to")
	groupBy := q.Get("group_by")
	switch groupBy {
	case "associate", "store", "distributor":
	default:
		fs = append(fs, oms.FieldError{Field: "group_by", Message: "must be associate, store or distributor"})
	}
	if len(fs) == 0 {
		switch {
		case !from.Before(to):
			fs = append(fs, oms.FieldError{Field: "to", Message: "must be after from"})
		case to.Sub(from) > MaxSummarySpan:
			fs = append(fs, oms.FieldError{Field: "to", Message: "at most 366 days after from"})
		}
	}
	if len(fs) > 0 {
		return attributionSummary{}, oms.Invalid("the summary parameters are not valid", fs...)
	}
	rows, err := h.api.AttributionSummary(r.Context(), groupBy, from, to)
	if rows == nil {
		rows = []oms.AttributionRow{}
	}
	return attributionSummary{From: from, To: to, GroupBy: groupBy, Rows: rows}, err
}
