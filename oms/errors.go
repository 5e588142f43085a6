package oms

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error for the edges: the HTTP API maps each kind to a
// status code, in one place.
type Kind int

// The kinds of error omsd reports.
const (
	KindInternal     Kind = iota // a bug or an unexpected failure: 500
	KindInvalid                  // the input is wrong: 422, with fields
	KindBadRequest               // the request cannot be read: 400
	KindNotFound                 // 404
	KindConflict                 // the state forbids it: 409
	KindUnavailable              // try again later: 503
	KindUnauthorized             // 401
	KindRateLimited              // 429
	KindTooLarge                 // 413
)

// Slug is the stable last part of a problem's RFC 9457 type URI
// (https://omsd.dev/problems/<slug>): clients match on it, so it never
// changes once published.
type Slug string

// The problem slugs omsd answers with.
const (
	SlugValidation          Slug = "validation"           // the input is wrong; errors lists every field at fault
	SlugInsufficientStock   Slug = "insufficient-stock"   // the stock cannot be reserved under the sourcing rules; nothing was kept
	SlugIdempotencyConflict Slug = "idempotency-conflict" // the external_id or Idempotency-Key was used for another body
	SlugLimitExceeded       Slug = "limit-exceeded"       // a per-customer purchase limit of a promotion is exceeded
	SlugNotFound            Slug = "not-found"            // no such resource (or another channel's)
	SlugUnavailable         Slug = "unavailable"          // a dependency failed; nothing was kept and a retry is safe
	SlugStockNotReady       Slug = "stock-not-ready"      // stock counters are being rebuilt from the ledger
	SlugOverloaded          Slug = "overloaded"           // past the admission budget: nothing was kept, retry after Retry-After
	SlugShuttingDown        Slug = "shutting-down"        // the instance is draining
	SlugInvalidTransition   Slug = "invalid-transition"   // the order's state machine forbids the move
	SlugStaleEvent          Slug = "stale-event"          // a warehouse event the shipment's state already covers
	SlugEventConflict       Slug = "event-conflict"       // a warehouse event that contradicts the shipment's state
	SlugAlreadyShipped      Slug = "already-shipped"      // too late to cancel: it shipped
	SlugOrderExpired        Slug = "order-expired"        // the order expired unpaid
	SlugPaymentExpired      Slug = "expired"              // the payment deadline passed
	SlugOrderCancelled      Slug = "order-cancelled"      // the order is cancelled
	SlugNotInReview         Slug = "not-on-hold"          // the order is not in review (v1 wire name)
	SlugRateLimited         Slug = "rate-limited"         // the channel's rate limit is exceeded
	SlugUnauthorized        Slug = "unauthorized"         // no valid API key
	SlugBodyTooLarge        Slug = "body-too-large"       // the request body exceeds the limit
	SlugBadBody             Slug = "bad-body"             // the request body could not be read
	SlugBadHeader           Slug = "bad-header"           // a request header is not valid
	SlugBadJSON             Slug = "bad-json"             // the body is not the JSON the route takes
	SlugChannelExists       Slug = "channel-exists"       // a channel with this id exists
	SlugInternal            Slug = "internal"             // a bug or unexpected failure
	SlugNotReady            Slug = "not-ready"            // a dependency of the instance is not reachable
)

// FieldError names one field at fault, as a JSON path ("lines[2].qty").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with a kind, a stable problem slug (the last part of
// the RFC 9457 type URI), and for validation every field at fault.
type Error struct {
	Kind       Kind
	Slug       Slug
	Detail     string
	Fields     []FieldError
	RetryAfter time.Duration
	Err        error // the cause, if any (not shown to clients)
}

func (e *Error) Error() string {
	msg := string(e.Slug)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if len(e.Fields) > 0 {
		msg += fmt.Sprintf(" (%d fields, first %s: %s)", len(e.Fields), e.Fields[0].Field, e.Fields[0].Message)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return "oms: " + msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind with a problem slug.
func Errorf(kind Kind, slug Slug, format string, args ...any) *Error {
	return &Error{Kind: kind, Slug: slug, Detail: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error listing fields.
func Invalid(detail string, fields ...FieldError) *Error {
	return &Error{Kind: KindInvalid, Slug: SlugValidation, Detail: detail, Fields: fields}
}

// KindOf returns the kind of err: that of the first *Error in its chain,
// KindInternal otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Sentinel errors of the order domain.
var (
	ErrNotFound = &Error{Kind: KindNotFound, Slug: SlugNotFound, Detail: "no such resource"}
)
