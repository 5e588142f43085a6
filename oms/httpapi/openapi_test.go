package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/omsd/omsd/oms/httpapi/api"
)

// TestOpenAPIMatchesTheRoutes checks that every operation of the published
// document has a handler for its method and path.
func TestOpenAPIMatchesTheRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths) == 0 {
		t.Fatalf("got openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	s, err := New(Config{AdminKey: "openapi-admin-key-0123456789"}, &memChannels{byHash: nil, byID: nil})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(OrderRoutes(nil, nil, RateConfig{}))
	s.Register(FulfillmentRoutes(nil))
	s.Register(ReturnRoutes(nil))
	s.Handler()
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			m := strings.ToUpper(method)
			concrete := strings.NewReplacer("{id}", "X1", "{node_id}", "N1", "{sku}", "S1").Replace(path)
			_, pattern := s.mux.Handler(httptest.NewRequest(m, concrete, nil))
			if pattern == "" || pattern == "/" {
				t.Errorf("%s %s is documented but has no handler", m, path)
				continue
			}
			documented[pattern] = true
		}
	}
	if len(documented) < 20 {
		t.Errorf("got %d documented routes with handlers, want every route of the v1 contract", len(documented))
	}
}

// TestOpenAPIListsTheAuthAndHeaderProblems checks that every operation that
// takes a key documents its 401 and its 429 (failed authentications are
// limited per address), and that order submission documents the 400 of a
// bad Idempotency-Key.
func TestOpenAPIListsTheAuthAndHeaderProblems(t *testing.T) {
	type operation struct {
		Security  *[]any           `yaml:"security"`
		Responses map[string]any   `yaml:"responses"`
		Params    []map[string]any `yaml:"parameters"`
	}
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	op := func(path, method string) operation {
		var o operation
		n := doc.Paths[path][method]
		if err := n.Decode(&o); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return o
	}
	secured := 0
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			op := op(path, method)
			if op.Security != nil && len(*op.Security) == 0 {
				continue
			}
			secured++
			for _, code := range []string{"401", "429"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s %s takes a key but does not document %s", strings.ToUpper(method), path, code)
				}
			}
		}
	}
	if secured < 17 {
		t.Errorf("got %d operations that take a key, want every one of the v1 contract", secured)
	}
	submit := op("/v1/orders", "post")
	if _, ok := submit.Responses["400"]; !ok {
		t.Errorf("POST /v1/orders does not document 400")
	}
	found := false
	for _, p := range submit.Params {
		found = found || (p["name"] == "Idempotency-Key" && p["in"] == "header")
	}
	if !found {
		t.Errorf("POST /v1/orders does not document the Idempotency-Key header")
	}
}
