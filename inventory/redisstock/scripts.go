package redisstock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The scripts. Each one touches the keys of one node (or one limit
// counter), all named in KEYS and sharing one hash tag, and checks before
// it writes.
var (
	//go:embed lua/reserve.lua
	reserveSrc string
	//go:embed lua/close.lua
	closeSrc string
	//go:embed lua/confirm.lua
	confirmSrc string
	//go:embed lua/setstock.lua
	setStockSrc string
	//go:embed lua/adjust.lua
	adjustSrc string
	//go:embed lua/swap.lua
	swapSrc string
	//go:embed lua/take.lua
	takeSrc string
	//go:embed lua/giveback.lua
	giveBackSrc string
	//go:embed lua/repair.lua
	repairSrc string
	//go:embed lua/fence.lua
	fenceSrc string
	//go:embed lua/finish.lua
	finishSrc string
	//go:embed lua/restock.lua
	restockSrc string
)

// script is a Lua script with the name its latency is recorded under.
type script struct {
	name string
	s    *redis.Script
}

func newScript(name, src string) *script { return &script{name: name, s: redis.NewScript(src)} }

var (
	reserveScript  = newScript("reserve", reserveSrc)
	closeScript    = newScript("close", closeSrc)
	confirmScript  = newScript("confirm", confirmSrc)
	setStockScript = newScript("set_stock", setStockSrc)
	adjustScript   = newScript("adjust", adjustSrc)
	swapScript     = newScript("swap", swapSrc)
	takeScript     = newScript("take", takeSrc)
	giveBackScript = newScript("give_back", giveBackSrc)
	repairScript   = newScript("repair", repairSrc)
	fenceScript    = newScript("fence", fenceSrc)
	finishScript   = newScript("finish", finishSrc)
	restockScript  = newScript("restock", restockSrc)
)

// allScripts are loaded by LoadScripts.
var allScripts = []*script{reserveScript, closeScript, confirmScript, setStockScript, adjustScript, swapScript, takeScript, giveBackScript, repairScript, fenceScript, finishScript, restockScript}

// loadScripts loads every script into the script cache of every master
// (go-redis's ClusterClient sends SCRIPT LOAD to all of them).
func loadScripts(ctx context.Context, rdb redis.Scripter) error {
	for _, sc := range allScripts {
		if err := sc.s.Load(ctx, rdb).Err(); err != nil {
			return fmt.Errorf("redisstock: load script %s: %w", sc.name, err)
		}
	}
	return nil
}

// run runs sc with EVALSHA, falling back to EVAL when the server does not
// have it cached (a restarted server, a new cluster node), and records its
// latency. go-redis retries it on a lost connection: every script is
// idempotent, or keyed so that a repeat is a no-op.
func run(ctx context.Context, rdb redis.Scripter, m *metrics, sc *script, keys []string, args ...any) (*redis.Cmd, error) {
	start := time.Now()
	cmd := sc.s.Run(ctx, rdb, keys, args...)
	m.observe(sc.name, time.Since(start))
	if err := cmd.Err(); err != nil {
		return cmd, fmt.Errorf("redisstock: script %s: %w", sc.name, err)
	}
	return cmd, nil
}

// reply splits a script's answer {tag, values...}.
func reply(cmd *redis.Cmd) (string, []any, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return "", nil, fmt.Errorf("redisstock: script reply: %w", err)
	}
	if len(vals) == 0 {
		return "", nil, errors.New("redisstock: empty script reply")
	}
	tag, ok := vals[0].(string)
	if !ok {
		return "", nil, fmt.Errorf("redisstock: script reply tag is %T", vals[0])
	}
	return tag, vals[1:], nil
}

// toInt reads an integer from a script reply value.
func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		var n int64
		_, err := fmt.Sscan(x, &n)
		return n, err
	default:
		return 0, fmt.Errorf("redisstock: reply value %T is not an integer", v)
	}
}

func toStr(v any) string {
	s, _ := v.(string)
	return s
}
