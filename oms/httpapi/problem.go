package httpapi

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/omsd/omsd/oms"
)

// ProblemBase prefixes every problem type URI.
const ProblemBase = "https://omsd.dev/problems/"

// TypeURI is the RFC 9457 type of the problems with slug.
func TypeURI(slug oms.Slug) string { return ProblemBase + string(slug) }

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type      string           `json:"type"`
	Title     string           `json:"title"`
	Status    int              `json:"status"`
	Detail    string           `json:"detail,omitempty"`
	Instance  string           `json:"instance,omitempty"`
	RequestID string           `json:"request_id,omitempty"`
	Errors    []oms.FieldError `json:"errors,omitempty"`
	// ReturnsURL: a cancel that came too late (already-shipped) points to
	// where the buyer's return is requested.
	ReturnsURL string `json:"returns_url,omitempty"`
}

var kindStatus = map[oms.Kind]int{
	oms.KindInternal:     http.StatusInternalServerError,
	oms.KindInvalid:      http.StatusUnprocessableEntity,
	oms.KindBadRequest:   http.StatusBadRequest,
	oms.KindNotFound:     http.StatusNotFound,
	oms.KindConflict:     http.StatusConflict,
	oms.KindUnavailable:  http.StatusServiceUnavailable,
	oms.KindUnauthorized: http.StatusUnauthorized,
	oms.KindRateLimited:  http.StatusTooManyRequests,
	oms.KindTooLarge:     http.StatusRequestEntityTooLarge,
}

// StatusOf maps an error to its HTTP status by its kind; a kind without a
// status is a 500.
func StatusOf(err error) int {
	if status, ok := kindStatus[oms.KindOf(err)]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// writeError is the one mapper from errors to problem+json. Only internal
// errors are logged (with the cause); the client never sees the cause.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusOf(err)
	p := Problem{Status: status, Title: http.StatusText(status), Instance: r.URL.Path, RequestID: requestID(r.Context())}
	var e *oms.Error
	if errors.As(err, &e) {
		p.Type = TypeURI(e.Slug)
		p.Detail = e.Detail
		p.Errors = e.Fields
		if e.Slug == oms.SlugAlreadyShipped && r.PathValue("id") != "" {
			p.ReturnsURL = "/v1/orders/" + r.PathValue("id") + "/returns"
		}
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
		}
	}
	if status == http.StatusInternalServerError || p.Type == "" {
		p.Type = TypeURI(oms.SlugInternal)
		p.Detail = "internal error; the request id identifies it in the server log"
		s.log.ErrorContext(r.Context(), "internal error", "request_id", p.RequestID, "route", r.Pattern, "err", err)
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeRaw writes an already encoded JSON document.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func jsonEncode(w http.ResponseWriter, v any) error { return json.NewEncoder(w).Encode(v) }
