// Package redisstock keeps the live stock counters in Redis, changed only
// by Lua scripts (embedded from lua/, run with EVALSHA and an EVAL
// fallback), through a redis.UniversalClient: the same code runs on one
// redis-server and on a Redis Cluster.
//
// # Key layout
//
// Every key of node N starts with the hash tag {P:N} (P is Config.Prefix,
// default "inv"), so all of a node's keys live in one slot and every script
// touches one slot (no CROSSSLOT on a cluster):
//
//	{P:N}:ready           string   present = counters loaded; its value is the node's epoch (the
//	                               token of the rebuild that loaded it); written only by the rebuild
//	{P:N}:rebuild         string   the rebuild lease: the token of the rebuild in progress, with a TTL
//	{P:N}:stockver        hash     sku -> count of absolute writes of on hand/safety (SetStock, repairs)
//	{P:N}:onhand          hash     sku -> on hand
//	{P:N}:reserved        hash     sku -> reserved
//	{P:N}:safety          hash     sku -> safety stock
//	{P:N}:holds           hash     hold id -> {"l":[[sku,qty],...],"c":created ms}   (open holds)
//	{P:N}:deadlines       zset     hold id scored by deadline ms (unpaid open holds: drives the sweeper)
//	{P:N}:closed:<id>     string   "released" | "committed" | "expired", TTL Config.ClosedTTL (7 days)
//	{P:N}:restocks        zset     restock id scored by when applied (ms, Config.Now): returns put back
//	                               into on hand; pruned of ids older than Config.RestockMemory (1 h) on
//	                               each Restock, replaced by a restore (the rebuild's restock ids)
//	{P:N}:restock:<tok>   string   answer of one Restock (a retry after a lost reply gets it), TTL 10 min
//	{P:N}:stage:<tok>:*   staging copies written by a restore, renamed in by one script, TTL 10 min
//	{P:N}:repair:<tok>    string   answer of one reconciliation repair (a retry gets it again), TTL 10 min
//	{P}:nodes             set      known nodes (the sweeper and the reconciliation iterate it)
//	{P:lim:<h>}           hash     purchase limit of one (promotion, SKU, customer), h = 128 bits of
//	                               SHA-256 of the triple: "t" total, "o:<order>" qty; expires at the
//	                               end of the promotion
//
// # Why it is safe
//
//   - Each script checks every line before it writes anything: Lua has no
//     rollback, and a script that has written cannot be stopped.
//   - Work per script is bounded (at most inventory.MaxLines lines; the
//     restore stages in chunks and swaps with renames).
//   - The hold record makes every script idempotent: go-redis retries a
//     script whose reply was lost (MaxRetries, io.EOF), and the repeat finds
//     the hold and reserves nothing more. The closed marker keeps a closed
//     id from being reserved again for ClosedTTL.
//   - Redis loses acknowledged writes on failover and comes back empty after
//     a restart without persistence: the ready key is in the node's slot, so
//     it is lost with the counters, and every script refuses a node without
//     it (ErrNotReady, nothing written) until inventory.Rebuild restores it
//     from the SQL ledger.
//
// A failover that keeps the ready key but drops a few recent writes is not
// detected here; the reconciliation finds and repairs what it left
// (inventory.Reconciler).
package redisstock
