// Package inventory is the stock of omsd: on hand, reserved and safety stock
// per (node, SKU), and the holds that reserve it. It is the part of the OMS
// that guarantees no oversell.
//
// # Model
//
//	available = on_hand - reserved - safety
//
// A WMS/ERP snapshot sets on hand and safety (SetStock). Intake reserves all
// lines of one shipment at one node atomically, all or nothing (Reserve),
// keyed by the shipment id: the Hold. A hold is then released (cancel),
// committed (shipped: on hand and reserved both drop), or expired by the
// sweeper when its deadline passes unpaid; Confirm (paid) removes the
// deadline. Each of these happens exactly once: the first call reports
// true, repeats report false, and a hold id is never reused. A return
// received at a node puts its units back into on hand with Restock
// (Restocker), once per restock id, after its SQL commit.
//
// # Guarantees (each tested by the contract suite in package stocktest)
//
//   - No oversell: a reservation never drives available below zero, under
//     any concurrency (500 buyers racing for 100 units win exactly 100).
//   - All or nothing: a hold with one short line reserves nothing
//     (*ShortError says which line).
//   - Idempotent holds: a repeat of an open hold's id (go-redis retrying a
//     script whose reply was lost) reserves nothing more and succeeds; the
//     id of a closed hold answers ErrHoldClosed.
//   - Exactly-once closing: Release, Commit and the expiry of each hold
//     happen once, even with several sweepers at once.
//   - Fail closed after data loss: the live counters (Redis) are a cache of
//     the SQL ledger. A node whose counters are not loaded (a restarted or
//     failed-over Redis) refuses every write with ErrNotReady, and intake
//     answers 503, until Rebuild restores it from the ledger.
//
// # Rebuild and reconciliation
//
// The SQL ledger is the truth (Ledger, implemented by oms/pgstore).
// Rebuild takes a lease on each node and fences it, reads the ledger and
// restores every counter and hold atomically before marking it ready under
// a new epoch. It keeps the store's holds the ledger does not know yet
// (reserved before the fence, committed to SQL after the read) and gives
// unpaid holds the ledger's deadline plus a grace. RebuildNotReady rebuilds
// the nodes NotReadyNodes finds, leaving alone those another process is
// rebuilding or has rebuilt since. A Reconciler compares ready nodes with
// the ledger and repairs drift (see DriftKind): a store hold the ledger
// shipped is committed; one it closed is released; one it does not know is
// only an orphan after a grace period, because intake reserves before its
// SQL commit; a ledger hold missing from the store is re-added if it fits
// under on hand, else reported (ReconcilerConfig.OnUnfitHold); a restock of
// the ledger's last RestockWindow that the store does not remember is
// applied; on hand is repaired by the difference left once those commits
// and restocks are counted. A rebuild restores the window's restock ids as
// applied, since the ledger's on hand already has their units.
//
// # Purchase limits
//
// Limits counts what each customer bought of a promoted SKU during a
// promotion (Take, idempotent per order; GiveBack). Intake takes the limit
// before the stock and gives it back if the reservation fails.
//
// Implementations: inventory/redisstock (go-redis, Lua, runs unchanged on a
// Redis Cluster) and inventory/memstock (in memory, for other packages'
// unit tests). This package imports no driver.
package inventory
