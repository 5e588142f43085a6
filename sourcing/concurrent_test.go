package sourcing_test

import (
	"os"
	"reflect"
	"sync"
	"testing"

	"github.com/omsd/omsd/sourcing"
)

// TestConcurrentPlansShareOneRuleSet runs plans from many goroutines on one
// compiled rule set (run it with -race): results must match the serial ones.
func TestConcurrentPlansShareOneRuleSet(t *testing.T) {
	doc, err := os.ReadFile("testdata/example_rules.json")
	if err != nil {
		t.Fatal(err)
	}
	example, err := sourcing.ParseRules(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, rules := range []*sourcing.RuleSet{sourcing.DefaultRules(), example} {
		nodes, stock, orders := benchFixture(30, 4)
		for i := range orders {
			if i%5 == 0 {
				orders[i].Lines[0].Tags = []string{"bulky"}
				orders[i].Value = 60000
			}
		}
		want := make([]*sourcing.Result, len(orders))
		for i := range orders {
			want[i] = sourcing.Plan(&orders[i], nodes, stock, rules)
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for k := 0; k < 3*len(orders); k++ {
					i := (k + g*7) % len(orders)
					if got := sourcing.Plan(&orders[i], nodes, stock, rules); !reflect.DeepEqual(got, want[i]) {
						t.Errorf("goroutine %d, order %d: got %+v, want %+v", g, i, got, want[i])
						return
					}
				}
			}(g)
		}
		wg.Wait()
	}
}
