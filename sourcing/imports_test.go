package sourcing_test

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStandardLibraryOnly keeps the package pure: its non-test files
// import nothing outside the standard library, and none of the standard
// packages that do I/O on their own.
func TestImportsStandardLibraryOnly(t *testing.T) {
	banned := map[string]bool{"net": true, "net/http": true, "os": true, "os/exec": true, "database/sql": true, "syscall": true, "unsafe": true}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") || banned[path] {
				t.Errorf("%s imports %q: got a non-standard or I/O import, want the standard library only", name, path)
			}
		}
	}
}
