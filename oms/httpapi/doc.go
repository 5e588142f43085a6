// Package httpapi is omsd's HTTP API: the v1 contract of api/openapi.yaml,
// served by net/http with Go 1.22 ServeMux patterns. It knows package oms
// and the small interfaces it calls (Channels, Orders, AdminAPI,
// FulfillmentAPI), never a database or a broker.
//
// # A request's way through
//
// Every JSON route goes the same way, in this order; each step can end the
// request with a problem document, and none after it runs:
//
//	middleware     request id (X-Request-Id), panic recovery, metrics by
//	               route pattern
//	auth           Admin (the admin key, constant-time compare) or
//	               ChannelAuth (a channel key, by its SHA-256); a source
//	               past its failure budget is 429 before any lookup
//	rate limit     the channel's token bucket (POST /v1/orders only): 429
//	body cap       http.MaxBytesReader at Config.MaxBodyBytes: 413; the
//	               body must be UTF-8: 400
//	strict decode  one JSON value, no unknown fields: 400 naming the field
//	edge checks    what only HTTP has: path ids against body ids (422),
//	               the Idempotency-Key header (400)
//	one oms call   the interface method the route stands for
//	one mapper     writeError: the error's oms.Kind gives the status, its
//	               oms.Slug the problem type; or the result as JSON
//
// handleJSON is that sequence from "body cap" to "one mapper"; handlers are
// the function it calls once with the decoded request.
//
// # Route groups
//
// Each group is registered by one function:
//   - Server.routes: /healthz, /readyz (pings every ReadyCheck, 503 naming
//     the failing one; a failing DegradedCheck is a 200 "degraded" naming
//     it), /metrics, POST /v1/channels (admin) and the 404 for
//     everything else;
//   - registerOrderRoutes (from OrderRoutes): a channel submits and reads
//     its own orders; another channel's order is a 404;
//   - registerAdminRoutes (from OrderRoutes): nodes, stock snapshots,
//     sourcing rules and simulation, promotions, and clearing an order's
//     review (POST /v1/orders/{id}/release);
//   - FulfillmentRoutes: payment and cancellation (channel key) and
//     warehouse events over HTTP (admin key).
//   - ReturnRoutes: returns, refunds and exchanges (a channel key for its
//     own orders, the admin key for any) and return events (admin key);
//   - CustomerRoutes: customers across channels and the attribution
//     summary (admin key).
//
// Every route is in api/openapi.yaml, the contract; the tests check each
// request and answer against it (package apitest).
//
// # Limits
//
//   - Bodies: Config.MaxBodyBytes (default 1 MiB), then 413.
//   - Bearer tokens: at most 256 bytes; a longer one is refused unhashed.
//   - Idempotency-Key: one value of at most 255 bytes of UTF-8 without
//     control characters, else 400 with errors [{"field":
//     "Idempotency-Key"}] and oms is not called.
//   - Orders per channel: RateConfig, overridden by the channel's own
//     rate_per_sec and burst; past it 429 with Retry-After.
//   - Failed authentications per source address (an IPv4 address, an IPv6
//     /64; X-Forwarded-For is not trusted): AuthConfig, default 1 a second
//     with a burst of 20. Past it, every request from that source that does
//     not carry a key already verified by this instance is answered 429
//     with Retry-After, without asking the channel store; verified keys
//     from the same address (a shared NAT) keep working.
//   - Unknown keys are remembered for AuthConfig.UnknownKeyTTL (10s), at
//     most AuthConfig.UnknownKeys of them, so a wrong key costs the store
//     one query per TTL. A channel created through this instance works at
//     once; one created through another instance works here at the latest
//     one TTL after a failed use of its key. Known keys are remembered for
//     the life of the process.
//   - Headers: 64 KiB; read header timeout 5s, read 30s, write 60s.
//
// # Problems
//
// Errors are RFC 9457 problem documents (application/problem+json) whose
// type is ProblemBase + the error's oms.Slug (TypeURI); clients match on
// the slug, which never changes. The status comes from the error's
// oms.Kind, in one table (kindStatus):
//
//	KindBadRequest   400  bad-json, bad-body, validation (a header)
//	KindUnauthorized 401  unauthorized (with WWW-Authenticate)
//	KindNotFound     404  not-found
//	KindConflict     409  insufficient-stock, idempotency-conflict,
//	                      already-shipped, invalid-transition, channel-exists, ...
//	KindTooLarge     413  body-too-large
//	KindInvalid      422  validation, limit-exceeded, with errors[] naming fields
//	KindRateLimited  429  rate-limited, with Retry-After
//	KindUnavailable  503  unavailable, stock-not-ready, shutting-down,
//	                      with Retry-After (1s unless the error says)
//	KindInternal     500  internal: the cause is logged with the request
//	                      id, never shown
//
// Only internal errors are logged. Failed authentications are counted
// (omsd_http_auth_failures_total by reason, and
// omsd_http_auth_unknown_key_cache_hits_total), not logged.
package httpapi
