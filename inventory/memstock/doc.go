// Package memstock is an in-memory inventory.Store, inventory.Rebuildable
// and inventory.Limits with redisstock's behaviour, checked by the same
// contract suite (inventory/stocktest). One mutex makes every call atomic,
// as one Lua script is in Redis.
//
// Other packages' unit tests use it instead of Redis. By default a node is
// not ready until MarkReady (or a rebuild), as in Redis; Config.AutoReady
// makes every node ready at once for tests that do not care, and Lose
// forgets everything, as a restarted redis-server does, to test the 503
// path.
package memstock
