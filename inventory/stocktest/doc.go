// Package stocktest is the contract suite of inventory.Store,
// inventory.Rebuildable and inventory.Limits. Every implementation runs it:
//
//	func TestContract(t *testing.T) {
//		stocktest.Run(t, func(t *testing.T) inventory.Store { return memstock.New(memstock.Config{}) })
//	}
//
// It covers all-or-nothing reservation, the zero floor of available, safety
// stock, idempotent and single-use hold ids, exactly-once release, commit
// and expiry (two sweepers at once), Confirm, Levels of many keys,
// readiness, the oversell race (500 goroutines for 100 units on three
// nodes, with a watcher reading levels throughout), snapshot and restore,
// Rebuild from a ledger (in-flight holds kept, deadlines with their grace,
// the rebuild lease), restores that never pass on hand, and each repair of
// the Reconciler (shipped holds committed, on hand repaired while selling),
// and restocks (once per id, refused on a node that is not ready, racing
// with reservations, remembered through a rebuild, applied by the
// reconciler when owed and never counted twice around its reads).
// Run it with -race.
//
// Ledger is an in-memory inventory.Ledger (stock, holds and restocks), and
// Mirror a Store wrapper that records every successful write in it as omsd
// records it in SQL: together they let a test lose the store's data and
// rebuild it.
package stocktest
