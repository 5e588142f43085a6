// Package loadtest offers load to omsd the way channels do and checks that
// nothing was lost, oversold or shipped twice. It is a client of the public
// contract only (the HTTP API in oms/httpapi/api/openapi.yaml and the oms.shipments topic)
// and imports no other omsd package, so it tests what a channel sees.
//
// # Seeding
//
// Seed creates five channels (keeping the api_key the API shows once),
// nodes (up to six distribution centres in Hangzhou, Beijing, Guangzhou,
// Chengdu, Wuhan and Shanghai, then stores across 25 cities with their
// ISO 3166-2:CN regions and coordinates) and stock for a catalogue of
// SKU-000001… through errgroup with a concurrency limit. What it created
// goes to a seed file (JSON, mode 0600: it holds the channel keys) that a
// run reads.
//
// # The open model
//
// A closed-loop load generator (N users, each waiting for an answer before
// sending again) slows down when the server does: a stall of one second
// delays every user's next request, so the requests that would have
// suffered are never sent and never measured. That is coordinated
// omission, and it makes percentiles look far better than what customers
// see. Real customers do not wait for each other.
//
// Run is an open model instead. A Schedule gives the offered rate r(t) for
// the profile (steady; ramp from Rate/10 to Rate; flash-sale: Rate/10,
// Rate for one minute in the middle, Rate/10 again, the spike shrinking to
// a third of the run for runs under three minutes) and its integral Λ(t).
// The k-th arrival is intended at Λ⁻¹(k) (or, with Poisson, at Λ⁻¹ of a
// sum of exponential gaps), computed before anything is sent: the schedule
// does not depend on the server. A dispatcher hands each arrival, with its
// intended time, to a bounded pool of workers. When every worker is busy
// the arrival waits in the queue, and when it is finally sent its latency
// is still measured from its intended time:
//
//	latency      = answer time − intended time   (reported as latency_ms)
//	service time = answer time − actual send     (what closed tools report)
//	send lag     = actual send − intended time   (client-side queueing)
//
// A slow server therefore shows up as growing latency and a queue, not as
// a lower offered rate. The client's own overhead is in the latency too
// (conservatively): timer wake-ups alone are late by about half a
// millisecond on a busy 2-core machine, which send_lag_ms shows. Latencies go into HDR histograms (1µs–1h, 3
// significant digits), one for the run and one per intended second.
// Failed requests are recorded at the time they failed. After the last
// arrival, queued and in-flight requests get Drain to finish; what is
// still queued is counted as unsent.
//
// # The closed loop, for capacity
//
// RunConfig.Closed runs the closed loop on purpose, for the one question it
// answers well: how many orders per second a server completes at a given
// concurrency. Workers clients each take the next order the moment their
// previous one is answered (an unbuffered hand-over, so never more than
// Workers in flight) until Duration has passed; latency is from the actual
// send (equal to the service time), there is no offered rate, and the
// achieved rate is the figure. It is not a latency measurement: use the
// open model for that. Options.NoAudit runs the load alone (no stock
// snapshot, no settling, no audit), for servers that keep no stock, such
// as the reference HTTP server of the benchmarks.
//
// Orders follow the v1 API: a channel picked by weight, 1–5 distinct lines
// whose SKUs are hot (the first HotSKUs of the catalogue, Zipf-distributed
// with exponent ZipfS) with probability HotShare and uniform otherwise,
// ship-to addresses in real cities, payment paid or pending. A network
// error or a 5xx/429 answer is retried with the same Idempotency-Key and
// the same bytes, as real channels do. An order that never got a definite
// answer is looked up by external id during the audit, never guessed.
//
// # The audit
//
// Audit is a pure function over plain data (AuditInput): the stock when
// the load started (a snapshot, falling back to the seed), the stock now,
// the accepted orders with their lines and read-back status, and the
// shipment events. Gather reads them from the API and the topic. Per SKU
// s, summing over nodes n, with I the initial and C the current levels and
// L(s) the units of s in live accepted orders (status not cancelled or
// expired; an order missing from the API counts as live):
//
//	oversold(s) = max( Σn max(0, −C.available, C.reserved − C.on_hand),
//	                   L(s) − Σn max(0, I.on_hand − I.reserved − I.safety_stock) )
//	leaked(s)   = | Σn (I.on_hand − C.on_hand) + Σn (C.reserved − I.reserved) − L(s) |
//
// The first term of leaked is what was shipped, the second what is still
// reserved: together, what live orders should hold. Pending-payment orders
// keep their reservation legitimately; cancelled and expired ones must have
// released it. oversold_units and leaked_units sum over SKUs.
//
// missing_orders counts accepted orders (201/200) that GET /v1/orders/{id}
// answers 404; all are read when there are at most AuditConfig.SampleMax
// (default 20,000), otherwise a random sample, and the report says which.
//
// duplicate_shipments reads oms.shipments from the first offset to the
// high-water marks taken at the start, with no consumer group, and counts
// for each shipment id the distinct event ids of its shipment.requested
// events, minus one: a second event id is a second request, while the same
// event id twice is a redelivery that consumers deduplicate.
// unpaid_shipments counts shipments requested for orders submitted unpaid
// (the load test never pays them, so they must not be released).
//
// gave_up_unheld: an order whose client gave up (every attempt failed:
// no answer, a timeout, or a 5xx/429 each time) is looked up by external
// id. The OMS either has it, live with its shipments (then it is audited
// like an accepted order), or does not have it (404). One it has, live,
// with no shipment is an order kept without its stock.
//
// # Faults
//
// RunConfig.Faults are injected at their offsets through a FaultInjector:
// DevControl, the control endpoint of omsd dev (OMS_DEV_CONTROL_URL and
// OMS_DEV_CONTROL_TOKEN in stack.env). The report gives each fault's
// intended offset, actual start and duration (until the stack was whole
// again), and the final outcomes of the requests completed in
// [start, start+duration+5s]; the charts mark it. Requests are spread over
// every URL of OMS_API_URLS, and a retry after a network error or a 5xx
// goes to the next one.
//
// All must be zero; the CLI exits non-zero otherwise. Caveat: the audit
// assumes nothing else changes the stock during the run (no stock PUTs,
// no other clients); orders left by an earlier run that expire or are
// cancelled during this one show as negative leaks.
package loadtest
