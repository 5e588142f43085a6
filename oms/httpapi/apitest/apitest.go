// Package apitest holds omsd's HTTP tests to the published contract: every
// request a test sends and every answer it gets is checked against the
// OpenAPI document (oms/httpapi/api/openapi.yaml) with kin-openapi's
// openapi3filter, so that a handler and the document cannot drift apart.
//
// Hook it in once per test server, not per call: wrap the handler under
// test (Handler) or the client's transport (Transport, Client). A
// violation fails the test with the method, path, status and what is
// wrong.
//
// # What is checked
//
// Every response, always: its status must be documented for the operation
// (an undocumented status is a failure), its headers (Location,
// Retry-After, WWW-Authenticate where the document requires them), its
// Content-Type and its body against the schema. A call to a path or method
// the document does not have must not succeed, and its answer must still
// be a problem document.
//
// Requests are checked when the server accepted them (a 2xx answer). The
// document describes the requests omsd accepts; a test that sends a
// broken one on purpose (bad JSON, an unknown field, a 2 MiB body, bad
// UTF-8, a missing key) does so to see it refused, and the refusal is
// checked on the response side like any answer. What must never happen is
// a 2xx for a request the document says is invalid: that is a handler
// looser than its contract (or a contract stricter than its handler), and
// it fails the test. The converse, a valid-looking request refused with a
// 4xx, is ordinary: the document cannot express every business rule (stock,
// state, ownership).
//
// Authentication is the server's job: the checker accepts any bearer
// token where the operation takes one and checks shapes, not keys.
//
// omsd reads every request body as JSON whatever its Content-Type says
// (API.md: JSON bodies); a body sent without a Content-Type is checked as
// application/json.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/omsd/omsd/oms/httpapi/api"
)

// Load parses and validates the embedded document (OpenAPI 3.1, JSON Schema
// 2020-12).
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml does not load: %w", err)
	}
	if err := doc.Validate(loader.Context, openapi3.IsOpenAPI31OrLater()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not valid: %w", err)
	}
	return doc, nil
}

var shared struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// contract loads the document once per test binary and builds its router.
// The router matches any host: test servers listen on ephemeral ports.
func contract() (*openapi3.T, routers.Router, error) {
	shared.once.Do(func() {
		doc, err := Load()
		if err != nil {
			shared.err = err
			return
		}
		doc.Servers = openapi3.Servers{{URL: "/"}}
		r, err := gorillamux.NewRouter(doc)
		if err != nil {
			shared.err = fmt.Errorf("openapi.yaml: router: %w", err)
			return
		}
		shared.doc, shared.router = doc, r
	})
	return shared.doc, shared.router, shared.err
}

// Checker checks exchanges against the document.
type Checker struct {
	doc    *openapi3.T
	router routers.Router
	ignore map[string]bool
}

// Option configures a Checker.
type Option func(*Checker)

// Ignore exempts exact paths that a test registers for itself (routes that
// are not part of the product, such as an echo route to probe the
// middleware); calls to them are not checked at all.
func Ignore(paths ...string) Option {
	return func(c *Checker) {
		for _, p := range paths {
			c.ignore[p] = true
		}
	}
}

// New returns a Checker on the embedded document.
func New(opts ...Option) (*Checker, error) {
	doc, r, err := contract()
	if err != nil {
		return nil, err
	}
	c := &Checker{doc: doc, router: r, ignore: map[string]bool{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func mustNew(t testing.TB, opts ...Option) *Checker {
	t.Helper()
	c, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Violation is an exchange that breaks the contract.
type Violation struct {
	Method, Path string
	Status       int
	Side         string // "request" or "response"
	Err          error
}

func (v *Violation) Error() string {
	return fmt.Sprintf("OpenAPI contract: %s %s -> %d: %s: %v", v.Method, v.Path, v.Status, v.Side, v.Err)
}

func (v *Violation) Unwrap() error { return v.Err }

func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") && strings.TrimSpace(h[7:]) != "" {
		return nil
	}
	return errors.New("no bearer token")
}

// Check checks one exchange: req (whose body is reqBody; req.Body is not
// read) and the answer status, header and body.
func (c *Checker) Check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	if c.ignore[req.URL.Path] {
		return nil
	}
	v := func(side string, err error) error {
		return &Violation{Method: req.Method, Path: req.URL.RequestURI(), Status: status, Side: side, Err: err}
	}
	ctx := context.Background()
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.ContentLength = int64(len(reqBody))
	if len(reqBody) > 0 && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		if status >= 200 && status < 300 {
			return v("request", fmt.Errorf("an operation the document does not have answered %d: %w", status, err))
		}
		return c.checkProblem(header, body, v)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: authenticate, MultiError: true, IncludeResponseStatus: true},
	}
	if status >= 200 && status < 300 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return v("request (answered 2xx, so the document must allow it)", err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: in.Options,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return v("response", fmt.Errorf("%w; body: %.300s", err, body))
	}
	return nil
}

// checkProblem checks the answer to a call the document does not have: a
// problem document.
func (c *Checker) checkProblem(header http.Header, body []byte, v func(string, error) error) error {
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		return v("response", fmt.Errorf("an undocumented call answered Content-Type %q, want application/problem+json", ct))
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return v("response", fmt.Errorf("not JSON: %w", err))
	}
	if err := c.doc.Components.Schemas["Problem"].Value.VisitJSON(doc, openapi3.EnableJSONSchema2020()); err != nil {
		return v("response", fmt.Errorf("not a Problem: %w; body: %.300s", err, body))
	}
	return nil
}

// Handler wraps h so that every exchange it serves is checked; a violation
// fails t. The check runs before the answer is passed on, so it is over
// before the test reads the answer.
func Handler(t testing.TB, h http.Handler, opts ...Option) http.Handler {
	t.Helper()
	c := mustNew(t, opts...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reqBody []byte
		if r.Body != nil {
			reqBody, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if err := c.Check(r, reqBody, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Error(err)
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// Transport wraps base (nil: http.DefaultTransport) so that every exchange
// through it is checked; a violation fails t.
func Transport(t testing.TB, base http.RoundTripper, opts ...Option) http.RoundTripper {
	t.Helper()
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{t: t, c: mustNew(t, opts...), base: base}
}

// Client is an http.Client whose every exchange is checked.
func Client(t testing.TB, opts ...Option) *http.Client {
	t.Helper()
	return &http.Client{Transport: Transport(t, nil, opts...)}
}

type transport struct {
	t    testing.TB
	c    *Checker
	base http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	send := req
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		send = req.Clone(req.Context())
		send.Body = io.NopCloser(bytes.NewReader(b))
		send.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := tr.base.RoundTrip(send)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := tr.c.Check(req, reqBody, resp.StatusCode, resp.Header, body); err != nil {
		tr.t.Error(err)
	}
	return resp, nil
}
