// Package api embeds omsd's published OpenAPI 3.1 document (openapi.yaml),
// the v1 contract. httpapi's tests validate it with kin-openapi, hold it to
// the registered routes both ways, and check every request and answer of
// the HTTP tests against it (package apitest).
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the v1 API.
//
//go:embed openapi.yaml
var OpenAPI []byte
