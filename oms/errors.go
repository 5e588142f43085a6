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

// FieldError names one field at fault, as a JSON path ("lines[2].qty").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with a kind, a stable problem slug (the last part of
// the RFC 9457 type URI), and for validation every field at fault.
type Error struct {
	Kind       Kind
	Slug       string
	Detail     string
	Fields     []FieldError
	RetryAfter time.Duration
	Err        error // the cause, if any (not shown to clients)
}

func (e *Error) Error() string {
	msg := e.Slug
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
func Errorf(kind Kind, slug, format string, args ...any) *Error {
	return &Error{Kind: kind, Slug: slug, Detail: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error listing fields.
func Invalid(detail string, fields ...FieldError) *Error {
	return &Error{Kind: KindInvalid, Slug: "validation", Detail: detail, Fields: fields}
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
	ErrNotFound = &Error{Kind: KindNotFound, Slug: "not-found", Detail: "no such resource"}
)
