package httpapi

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/omsd/omsd/oms/httpapi/apitest"
)

// loadDoc loads and validates the published document with kin-openapi
// (OpenAPI 3.1, JSON Schema 2020-12).
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := apitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// registeredPatterns reads the route patterns this package registers
// (mux.HandleFunc and mux.Handle calls with a literal pattern) from its
// non-test sources. The catch-all "/" (the 404 problem) is not an
// operation. pprof (/debug/pprof/) is served by cmd/omsd on its own
// listener, never on this API, and is not part of the contract.
func registeredPatterns(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: a route registered with a pattern that is not a literal; this test cannot see it", fset.Position(call.Pos()))
				return true
			}
			p, _ := strconv.Unquote(lit.Value)
			if p != "/" {
				out = append(out, p)
			}
			return true
		})
	}
	return out
}

// fullServer registers every route group.
func fullServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{AdminKey: "openapi-admin-key-0123456789"}, &memChannels{})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(OrderRoutes(nil, nil, RateConfig{}))
	s.Register(FulfillmentRoutes(nil))
	s.Register(ReturnRoutes(nil))
	s.Register(CustomerRoutes(nil))
	s.Handler()
	return s
}

// TestOpenAPIMatchesTheRoutes checks both ways: every operation of the
// document is served by the handler registered for exactly its method and
// path (parameter names included), and every route the package registers
// is documented.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	doc := loadDoc(t)
	s := fullServer(t)
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			want := method + " " + path
			documented[want] = true
			concrete := path
			for _, p := range []string{"{id}", "{node_id}", "{sku}"} {
				concrete = strings.ReplaceAll(concrete, p, "X1")
			}
			_, pattern := s.mux.Handler(httptest.NewRequest(method, concrete, nil))
			if pattern != want {
				t.Errorf("%s is documented but served by %q", want, pattern)
			}
		}
	}
	registered := registeredPatterns(t)
	for _, p := range registered {
		if !documented[p] {
			t.Errorf("route %s is registered but not documented in openapi.yaml", p)
		}
	}
	if len(registered) != len(documented) || len(documented) < 30 {
		t.Errorf("got %d registered routes and %d documented operations, want the same, every one of the v1 contract", len(registered), len(documented))
	}
}

// TestOpenAPIIsComplete checks what doc.Validate does not require: every
// operation has an operationId, a summary, tags and its own security; every
// POST and PUT a request body with a schema; every response a content
// schema, problem+json for errors; the two key schemes are described.
func TestOpenAPIIsComplete(t *testing.T) {
	doc := loadDoc(t)
	for _, name := range []string{"adminKey", "channelKey"} {
		ss := doc.Components.SecuritySchemes[name]
		if ss == nil || ss.Value.Type != "http" || ss.Value.Scheme != "bearer" || ss.Value.Description == "" {
			t.Errorf("security scheme %s: got %+v, want a described http bearer scheme", name, ss)
		}
	}
	ids := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: operationId %q missing or not unique", where, op.OperationID)
			}
			ids[op.OperationID] = true
			if op.Summary == "" || len(op.Tags) == 0 || op.Security == nil {
				t.Errorf("%s: want a summary, tags and security of its own", where)
			}
			if method == "POST" || method == "PUT" {
				if op.RequestBody == nil || op.RequestBody.Value.Content.Get("application/json") == nil ||
					op.RequestBody.Value.Content.Get("application/json").Schema == nil {
					t.Errorf("%s: no application/json request body schema", where)
				}
			}
			for code, r := range op.Responses.Map() {
				if len(r.Value.Content) == 0 {
					t.Errorf("%s %s: no content", where, code)
				}
				for ct, mt := range r.Value.Content {
					if mt.Schema == nil {
						t.Errorf("%s %s %s: no schema", where, code, ct)
					}
					if code >= "400" && ct != "application/problem+json" {
						t.Errorf("%s %s: error answered as %s, want application/problem+json", where, code, ct)
					}
				}
			}
			secured := len(*op.Security) > 0
			for _, code := range []string{"401", "429"} {
				if secured && op.Responses.Value(code) == nil {
					t.Errorf("%s takes a key but does not document %s", where, code)
				}
			}
		}
	}
}

// TestOpenAPIListsTheAuthAndHeaderProblems checks the keys each group takes
// and that order submission documents the Idempotency-Key and its 400.
func TestOpenAPIListsTheAuthAndHeaderProblems(t *testing.T) {
	doc := loadDoc(t)
	schemes := func(path, method string) []string {
		var out []string
		for _, req := range *doc.Paths.Value(path).GetOperation(method).Security {
			for name := range req {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		path, method string
		want         []string
	}{
		{"/v1/orders", "POST", []string{"channelKey"}},
		{"/v1/nodes", "GET", []string{"adminKey"}},
		{"/v1/orders/{id}/release", "POST", []string{"adminKey"}},
		{"/v1/orders/{id}/returns", "POST", []string{"adminKey", "channelKey"}},
		{"/v1/customers/{id}", "GET", []string{"adminKey"}},
		{"/healthz", "GET", nil},
	} {
		if got := schemes(tc.path, tc.method); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: got schemes %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
	submit := doc.Paths.Value("/v1/orders").Post
	if submit.Responses.Value("400") == nil {
		t.Errorf("POST /v1/orders does not document 400")
	}
	if p := submit.Parameters.GetByInAndName("header", "Idempotency-Key"); p == nil || p.Schema.Value.MaxLength == nil || *p.Schema.Value.MaxLength != 255 {
		t.Errorf("POST /v1/orders does not document the Idempotency-Key header of at most 255 bytes")
	}
}
