// Package oms is the order domain of omsd: orders, shipments and their
// lifecycle, order intake and the group committer, the fulfillment
// pipeline's orchestration, and the admin service. It imports no driver:
// every database, Redis and Kafka call goes through a small interface
// declared here and implemented beneath (oms/pgstore, inventory/redisstock,
// oms/redisrecent, oms/relay, oms/wmsevents; oms/httpapi is the HTTP edge).
// A test (imports_test.go) keeps it that way.
//
// # Intake, top to bottom
//
//	POST /v1/orders ─► httpapi (auth, rate limit, body cap, strict decode)
//	     │
//	     ▼
//	Intake.Submit
//	  0. admission: past MaxInFlight orders in progress, 503 overloaded at once
//	  1. Checks: every field at fault in one 422 (text refused where the
//	     database could not store it: NUL, control characters, lengths)
//	  2. singleflight by order id = UUIDv5(channel, external_id); the work
//	     runs detached from the caller's cancellation from here on
//	  3. observe: one round trip to the review memory (Recent): repeat
//	     order, new customer with an unusual quantity (order put in review),
//	     and an attempt marker that tells a racing copy on another instance
//	  4. purchase limits (inventory.Limits), before the stock
//	  5. Placer.Place: availability (one round trip) ─► sourcing.Plan ─►
//	     one hold per shipment; a lost race releases and plans again
//	  6. Committer.Commit: the order joins its shard's next batch; ONE
//	     transaction per batch (OrderStore.CommitOrders); Commit returns only
//	     when the batch's outcome is known
//	  7. the answer: 201, 200 (a stored copy), 409, 422, 503
//
// When a commit fails, OrderStore.SettleOrders waits until no transaction
// can still store the order (it claims the order id itself, which waits for
// any batch holding it) and only then is anything given back: holds are
// released and limit slots returned only for an order that is certainly
// not stored. A copy of a stored order answers with it and never gives back
// the stored order's limit slot. A batch refused for one order's data
// (ErrOrderData) is split until the order at fault fails alone.
//
// # After intake
//
// Every later change (payment, cancellation, warehouse events, expiry,
// clearing a review) is one transaction on the locked order through the
// store's TransitionOrder or ApplyEvent: the state machines of state.go
// decide which moves exist, the order document, its shipments and the
// outbox events are written together, and the stock side effects (commit,
// release, confirm of holds) run after the commit; they are idempotent by
// hold id and the inventory reconciler repairs them from the ledger.
//
// # Vocabulary
//
// A hold is a stock reservation (inventory), held by one shipment under the
// shipment's id. An order in review (OrderInReview, wire name on_hold) waits
// for a person; ReviewChecks put it there and Admin.ClearReview lets it go.
// An order released to fulfillment (OrderReleased) has its shipments
// requested from the warehouses; freeing stock is releasing a hold.
package oms
