package sourcing_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

// Script tests, in the spirit of cockroach's datadriven: each file in
// testdata/script declares rules, nodes and stock, then plans orders and
// states the expected plan and explanation. Blocks look like
//
//	<command> [key=value ...]
//	<input lines>
//	----
//	<expected output, no blank lines>
//
// separated by blank lines; lines starting with # between blocks are
// comments. Commands:
//
//	rules [default] [file=F]  input: a rule-set document (none with "default"
//	                    or file=F, F relative to testdata)
//	nodes               input: ID [type=T] [at=LAT,LON] [regions=A,B] [channels=A,B]
//	                           [priority=N] [cap=N] [used=N] [inactive]
//	stock               input: NODE SKU=N ...
//	plan [channel=C] [region=R] [at=LAT,LON] [value=N] [pickup=NODE]
//	                    input: SKU QTY [tag ...]
//
// Run `go test ./sourcing -run Script -rewrite` to regenerate the expected
// outputs, then review the diff.
var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata/script")

type scriptBlock struct {
	line      int
	cmd       string
	args      map[string]string
	flags     []string
	input     []string
	wantStart int // index of the first expected line in the file's lines
	wantEnd   int
	want      string
}

func parseScript(t *testing.T, lines []string) []scriptBlock {
	var blocks []scriptBlock
	i := 0
	for i < len(lines) {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			i++
			continue
		}
		b := scriptBlock{line: i + 1, args: map[string]string{}}
		fields := strings.Fields(l)
		b.cmd = fields[0]
		for _, f := range fields[1:] {
			if k, v, ok := strings.Cut(f, "="); ok {
				b.args[k] = v
			} else {
				b.flags = append(b.flags, f)
			}
		}
		i++
		for i < len(lines) && lines[i] != "----" {
			b.input = append(b.input, lines[i])
			i++
		}
		if i == len(lines) {
			t.Fatalf("line %d: %s block without ----", b.line, b.cmd)
		}
		i++
		b.wantStart = i
		for i < len(lines) && lines[i] != "" {
			i++
		}
		b.wantEnd = i
		b.want = strings.Join(lines[b.wantStart:b.wantEnd], "\n")
		blocks = append(blocks, b)
	}
	return blocks
}

func TestScript(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no script files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			blocks := parseScript(t, lines)
			s := &scriptState{}
			changed := false
			outs := make([]string, len(blocks))
			for bi, b := range blocks {
				outs[bi] = s.run(t, &b)
				if outs[bi] != b.want && !*rewrite {
					t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", file, b.line, b.cmd, outs[bi], b.want)
				}
				changed = changed || outs[bi] != b.want
			}
			if *rewrite && changed {
				for bi := len(blocks) - 1; bi >= 0; bi-- {
					b := blocks[bi]
					lines = append(lines[:b.wantStart:b.wantStart], append(strings.Split(outs[bi], "\n"), lines[b.wantEnd:]...)...)
				}
				if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

type scriptState struct {
	rules *sourcing.RuleSet
	nodes []sourcing.Node
	stock sourcing.StockMap
}

func (s *scriptState) run(t *testing.T, b *scriptBlock) string {
	fail := func(format string, args ...any) string {
		t.Fatalf("line %d: "+format, append([]any{b.line}, args...)...)
		return ""
	}
	switch b.cmd {
	case "rules":
		if len(b.flags) == 1 && b.flags[0] == "default" {
			s.rules = sourcing.DefaultRules()
			return "ok"
		}
		doc := []byte(strings.Join(b.input, "\n"))
		if f, ok := b.args["file"]; ok {
			var err error
			if doc, err = os.ReadFile(filepath.Join("testdata", f)); err != nil {
				return fail("%v", err)
			}
		}
		r, err := sourcing.ParseRules(doc)
		if err != nil {
			return strings.ReplaceAll(err.Error(), "; ", "\n")
		}
		s.rules = r
		return "ok"
	case "nodes":
		s.nodes = nil
		for _, l := range b.input {
			f := strings.Fields(l)
			n := sourcing.Node{ID: f[0], Type: "warehouse", Active: true}
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				var err error
				switch k {
				case "type":
					n.Type = v
				case "at":
					n.Lat, n.Lon, err = parseAt(v)
				case "regions":
					n.Regions = strings.Split(v, ",")
				case "channels":
					n.Channels = strings.Split(v, ",")
				case "priority":
					n.Priority, err = strconv.Atoi(v)
				case "cap":
					n.DailyCapacity, err = strconv.ParseInt(v, 10, 64)
				case "used":
					n.UsedToday, err = strconv.ParseInt(v, 10, 64)
				case "inactive":
					n.Active = false
				default:
					return fail("unknown node attribute %q", k)
				}
				if err != nil {
					return fail("node %s: %v", n.ID, err)
				}
			}
			s.nodes = append(s.nodes, n)
		}
		return "ok"
	case "stock":
		s.stock = sourcing.StockMap{}
		for _, l := range b.input {
			f := strings.Fields(l)
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				q, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return fail("stock %s: %v", l, err)
				}
				s.stock.Set(f[0], k, q)
			}
		}
		return "ok"
	case "plan":
		o := sourcing.Order{ID: "o", Channel: "tmall", Region: "CN-ZJ"}
		for k, v := range b.args {
			var err error
			switch k {
			case "channel":
				o.Channel = v
			case "region":
				o.Region = v
			case "at":
				o.Lat, o.Lon, err = parseAt(v)
				o.HasLocation = true
			case "value":
				o.Value, err = strconv.ParseInt(v, 10, 64)
			case "pickup":
				o.Pickup, o.PickupNode = true, v
			default:
				return fail("unknown plan argument %q", k)
			}
			if err != nil {
				return fail("%s: %v", k, err)
			}
		}
		for _, l := range b.input {
			f := strings.Fields(l)
			q, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return fail("line %q: %v", l, err)
			}
			o.Lines = append(o.Lines, sourcing.Line{SKU: f[0], Qty: q, Tags: f[2:]})
		}
		return formatResult(sourcing.Plan(&o, s.nodes, s.stock, s.rules))
	}
	return fail("unknown command %q", b.cmd)
}

func parseAt(v string) (float64, float64, error) {
	a, b, _ := strings.Cut(v, ",")
	lat, err := strconv.ParseFloat(a, 64)
	if err != nil {
		return 0, 0, err
	}
	lon, err := strconv.ParseFloat(b, 64)
	return lat, lon, err
}

func formatResult(r *sourcing.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s by %q: %s", r.Outcome, r.Strategy, r.Reason)
	for _, s := range r.Shipments {
		b.WriteString("\nship " + s.NodeID + ":")
		for _, l := range s.Lines {
			fmt.Fprintf(&b, " %s=%d", l.SKU, l.Qty)
		}
	}
	if len(r.Unfilled) > 0 {
		b.WriteString("\nunfilled:")
		for _, l := range r.Unfilled {
			fmt.Fprintf(&b, " %s=%d", l.SKU, l.Qty)
		}
	}
	for _, e := range r.Explanation {
		fmt.Fprintf(&b, "\n  %s %s", e.NodeID, e.Status)
		if e.Filter != "" {
			b.WriteString(" by " + e.Filter)
		}
		if e.Score != 0 {
			fmt.Fprintf(&b, " score=%.3f", e.Score)
		}
		for _, v := range e.Rankings {
			if v.Unknown {
				fmt.Fprintf(&b, " %s=?", v.Ranking)
			} else {
				fmt.Fprintf(&b, " %s=%.4g", v.Ranking, v.Value)
			}
		}
		b.WriteString(": " + e.Reason())
	}
	return b.String()
}
