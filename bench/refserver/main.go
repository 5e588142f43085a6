// Command refserver is the HTTP ceiling of the benchmarks: the least a
// server can do for POST /v1/orders over net/http, measured with the same
// load client as omsd, on the same machine, in the same run (oms-bench's
// capacity stage). omsd's closed-loop capacity divided by this server's is
// the share of the HTTP ceiling omsd reaches.
//
// It does what omsd's HTTP layer does before any business logic, and
// nothing more: a bearer key must be present (any key: there is no channel
// table), the body is capped at 1 MiB and decoded strictly into the v1
// order request (unknown fields refused), at least one line must have a
// quantity above zero, and the answer is 201 with an order view (a fresh
// UUID, status reserved, the lines, reserved_until). Nothing is stored:
// GET /v1/orders/{id} is always 404. Every other route is 404 too.
//
//	refserver [-addr 127.0.0.1:0]
//
// It prints "listening on http://HOST:PORT" as its first line on stdout
// and serves until SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/omsd/omsd/oms"
)

// maxBody is omsd's default body cap.
const maxBody = 1 << 20

// orderView is the answer to an accepted order: what a channel (and the
// load client) reads from omsd's 201.
type orderView struct {
	ID            string     `json:"id"`
	ExternalID    string     `json:"external_id"`
	Status        string     `json:"status"`
	PaymentStatus string     `json:"payment_status"`
	ReservedUntil time.Time  `json:"reserved_until"`
	Lines         []oms.Line `json:"lines"`
	Currency      string     `json:"currency"`
	CreatedAt     time.Time  `json:"created_at"`
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

const problemBase = "https://omsd.dev/problems/"

func writeProblem(w http.ResponseWriter, status int, slug, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: problemBase + slug, Title: http.StatusText(status), Status: status, Detail: detail})
}

// Handler serves the reference routes.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", postOrder)
	mux.HandleFunc("GET /v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			writeProblem(w, http.StatusUnauthorized, "unauthorized", "a Bearer key is required")
			return
		}
		writeProblem(w, http.StatusNotFound, "not-found", "no such order")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not-found", "no such route")
	})
	return mux
}

func authorized(r *http.Request) bool {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && strings.TrimSpace(key) != ""
}

func postOrder(w http.ResponseWriter, r *http.Request) {
	if !authorized(r) {
		writeProblem(w, http.StatusUnauthorized, "unauthorized", "a Bearer key is required")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("the request body exceeds %d bytes", maxBody))
			return
		}
		writeProblem(w, http.StatusBadRequest, "bad-body", "the request body could not be read")
		return
	}
	var req oms.OrderRequest // the v1 order request, as omsd decodes it
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "bad-json", err.Error())
		return
	}
	if dec.More() {
		writeProblem(w, http.StatusBadRequest, "bad-json", "the request body holds more than one JSON value")
		return
	}
	positive := false
	for _, l := range req.Lines {
		positive = positive || l.Qty > 0
	}
	if !positive {
		writeProblem(w, http.StatusUnprocessableEntity, "validation", "at least one line with qty > 0 is required")
		return
	}
	now := time.Now().UTC()
	v := orderView{
		ID: uuid.NewString(), ExternalID: req.ExternalID, Status: "reserved", PaymentStatus: req.Payment.Status,
		ReservedUntil: now.Add(15 * time.Minute), Lines: req.Lines, Currency: req.Currency, CreatedAt: now,
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/v1/orders/"+v.ID)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "refserver:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "refserver:", err)
		os.Exit(1)
	}
}
