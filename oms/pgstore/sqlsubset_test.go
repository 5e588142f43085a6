package pgstore

// The SQL subset check: every statement omsd sends must be accepted by
// CockroachDB's own parser (the production database), not only by
// PostgreSQL (the local and test database). Three nets catch a statement:
//
//   - a static pass over every non-test .go file of the module: the SQL
//     argument of each pgx call (Exec, Query, QueryRow, Batch.Queue,
//     Prepare, CopyFrom), resolved through constants, local variables
//     (including `q += ...` in branches: every combination is checked),
//     concatenations and fmt.Sprintf templates (verbs whose argument is not
//     a constant get a stand-in value, logged), and every other string
//     literal that starts like a SQL statement (SQL handed to a wrapper). A
//     call whose SQL cannot be resolved fails the test unless it is listed
//     in dynamicSQLSites with the way its SQL is checked instead;
//   - every statement of every migration file, split by the parser itself;
//   - at run time, a pgx tracer on every pool the package's tests open
//     records each distinct SQL text sent, and TestMain parses them all
//     after the tests (sqlRecorder).

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	crdbparser "github.com/cockroachdb/cockroachdb-parser/pkg/sql/parser"
	"github.com/cockroachdb/cockroachdb-parser/pkg/sql/sem/tree"
	"github.com/jackc/pgx/v5"
)

// parseCockroach parses sql (one or more statements) with CockroachDB's
// parser. PostgreSQL's $n placeholders are CockroachDB's too, so the text
// is parsed as sent. It also refuses what parses but CockroachDB's planner
// refuses by default: one statement that modifies a table twice (two
// modifying CTEs of one table, or a CTE and the main statement), which
// needs the session setting enable_multiple_modifications_of_table.
func parseCockroach(sql string) error {
	stmts, err := crdbparser.Parse(sql)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		seen := map[string]int{}
		modifiedTables(st.AST, seen)
		for table, n := range seen {
			if n > 1 {
				return fmt.Errorf("modifies table %s %d times in one statement; CockroachDB refuses this unless enable_multiple_modifications_of_table is set: use one statement per modification in one transaction", table, n)
			}
		}
	}
	return nil
}

// modifiedTables counts the tables st inserts into, updates or deletes
// from, in the statement itself and in its WITH clauses, at any depth.
func modifiedTables(st tree.Statement, seen map[string]int) {
	with := func(w *tree.With) {
		if w == nil {
			return
		}
		for _, cte := range w.CTEList {
			modifiedTables(cte.Stmt, seen)
		}
	}
	target := func(te tree.TableExpr) {
		if a, ok := te.(*tree.AliasedTableExpr); ok {
			te = a.Expr
		}
		seen[tree.AsString(te)]++
	}
	switch n := st.(type) {
	case *tree.Insert:
		with(n.With)
		target(n.Table)
		if n.Rows != nil {
			modifiedTables(n.Rows, seen)
		}
	case *tree.Update:
		with(n.With)
		target(n.Table)
	case *tree.Delete:
		with(n.With)
		target(n.Table)
	case *tree.Select:
		with(n.With)
		if p, ok := n.Select.(*tree.ParenSelect); ok {
			modifiedTables(p.Select, seen)
		}
	}
}

// dynamicSQLSites are the calls whose SQL text is not a constant, keyed by
// module-relative file and enclosing function, with how their SQL is
// checked instead. Samples, if any, are parsed in place of the call's SQL.
var dynamicSQLSites = map[string]dynamicSite{
	"oms/pgstore/migrate.go:Migrate": {
		why: "runs each embedded migration file; every statement of every migration is parsed by TestEveryMigrationStatementParsesInCockroachDB",
	},
	"deploy/localstack/stacktest/stacktest.go:Database": {
		why:     "test helper: CREATE DATABASE with a random t_<hex> name",
		samples: []string{"CREATE DATABASE t_0123456789ab"},
	},
}

type dynamicSite struct {
	why     string
	samples []string
}

func TestEverySQLStatementParsesInCockroachDB(t *testing.T) {
	root := moduleRoot(t)
	res, err := collectGoSQL(root, dynamicSQLSites)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.problems {
		t.Error(p)
	}
	for _, n := range res.notes {
		t.Log(n)
	}
	for _, s := range res.stmts {
		if testing.Verbose() && os.Getenv("SQLSUBSET_LIST") != "" {
			t.Logf("%s: %s", s.pos, s.sql)
		}
		if err := parseCockroach(s.sql); err != nil {
			t.Errorf("%s: CockroachDB's parser rejects this statement (keep SQL in the subset both databases accept):\n%s\n%v", s.pos, s.sql, err)
		}
	}
	// A scan that finds nothing must not pass: pgstore alone sends about a
	// hundred statements.
	if len(res.stmts) < 80 {
		t.Errorf("found only %d SQL statements in the module; the scan is broken", len(res.stmts))
	}
	t.Logf("%d SQL statements at %d call sites and constants parsed by CockroachDB's parser", len(res.stmts), res.sites)
}

func TestEveryMigrationStatementParsesInCockroachDB(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	total := 0
	for _, m := range ms {
		file := fmt.Sprintf("oms/pgstore/migrations/%04d_%s.sql", m.Version, m.Name)
		stmts := splitSQL(m.SQL)
		if len(stmts) == 0 {
			t.Errorf("%s: no statement found", file)
		}
		for _, s := range stmts {
			total++
			if err := parseCockroach(s.sql); err != nil {
				t.Errorf("%s:%d: CockroachDB's parser rejects this statement:\n%s\n%v", file, s.line, s.sql, err)
			}
		}
	}
	t.Logf("%d migration statements in %d files parsed by CockroachDB's parser", total, len(ms))
}

// TestSQLSubsetCheckReportsPostgreSQLOnlyStatements runs the check on a
// small module of its own: PostgreSQL-only statements (LISTEN, VACUUM,
// LOCK TABLE, TABLESAMPLE), reached through a literal, a constant, a
// Sprintf template, a branch-built query and a wrapper, must each be
// reported; so must a call whose SQL is not a constant, a stale
// dynamicSQLSites entry, and the tests' PostgreSQL-only marker in non-test
// code.
func TestSQLSubsetCheckReportsPostgreSQLOnlyStatements(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.26\n")
	write("q/consts.go", "package q\n\nconst Table = `outbox`\n")
	write("store/store.go", `package store

import (
	"context"
	"fmt"

	"example.com/m/q"
)

type db interface {
	Exec(ctx context.Context, sql string, args ...any) (any, error)
}

const listen = "LISTEN " + q.Table

var lockSQL = fmt.Sprintf("LOCK TABLE %s IN %s MODE", q.Table, mode())

func mode() string { return "EXCLUSIVE" }

func run(ctx context.Context, d db, sql string) { _, _ = d.Exec(ctx, sql) }

func F(ctx context.Context, d db, full bool, name string) {
	d.Exec(ctx, "SELECT 1 FROM outbox WHERE id = $1", 1)
	d.Exec(ctx, listen)
	d.Exec(ctx, lockSQL)
	s := "SELECT id FROM outbox"
	if full {
		s += " TABLESAMPLE SYSTEM (10)"
	}
	go func() { d.Exec(ctx, s) }()
	run(ctx, d, `+"`VACUUM outbox`"+`)
	d.Exec(ctx, "SELECT "+name)
	d.Exec(ctx, "-- PostgreSQL only (test): not here\nSELECT 1")
}
`)
	sites := map[string]dynamicSite{"store/store.go:run": {why: "wrapper"}, "store/gone.go:G": {why: "stale"}}
	res, err := collectGoSQL(dir, sites)
	if err != nil {
		t.Fatal(err)
	}
	var rejected []string
	accepted := 0
	for _, s := range res.stmts {
		if err := parseCockroach(s.sql); err != nil {
			rejected = append(rejected, s.pos+" "+s.sql)
		} else {
			accepted++
		}
	}
	sort.Strings(rejected)
	want := []string{
		"store/store.go:24 LISTEN outbox",
		"store/store.go:25 LOCK TABLE outbox IN x MODE",
		"store/store.go:30 SELECT id FROM outbox TABLESAMPLE SYSTEM (10)",
		"store/store.go:31 VACUUM outbox",
	}
	if strings.Join(rejected, "\n") != strings.Join(want, "\n") {
		t.Errorf("rejected statements:\n%s\nwant:\n%s", strings.Join(rejected, "\n"), strings.Join(want, "\n"))
	}
	// SELECT 1 ..., SELECT id FROM outbox (the branch not taken), and the
	// marked SELECT 1, which is parsed all the same.
	if accepted != 3 {
		t.Errorf("got %d accepted statements, want 3: %+v", accepted, res.stmts)
	}
	problems := strings.Join(res.problems, "\n")
	for _, w := range []string{
		"store/store.go:32: cannot resolve the SQL of d.Exec",
		`dynamicSQLSites entry "store/gone.go:G" matches no call`,
		`store/store.go:33: "-- PostgreSQL only (test):" is for tests only`,
	} {
		if !strings.Contains(problems, w) {
			t.Errorf("problems do not report %q:\n%s", w, problems)
		}
	}
	if len(res.problems) != 3 {
		t.Errorf("got %d problems, want 3:\n%s", len(res.problems), problems)
	}
	if !strings.Contains(strings.Join(res.notes, "\n"), "store/store.go:16: fmt.Sprintf %s <- x") {
		t.Errorf("the Sprintf stand-in is not noted: %v", res.notes)
	}

	// The migration splitter and the runtime recorder report the same way.
	stmts := splitSQL("CREATE TABLE a (id INT PRIMARY KEY);\n\n-- a comment; with a semicolon\nVACUUM a;\nSELECT ';' FROM a")
	if len(stmts) != 3 || stmts[1].line != 3 || parseCockroach(stmts[1].sql) == nil || parseCockroach(stmts[2].sql) != nil {
		t.Errorf("split: %+v", stmts)
	}
	var r sqlRecorder
	r.add("SELECT 1")
	r.add("LISTEN outbox")
	r.add("\t" + pgOnlyMarker + " a test of LISTEN itself\nLISTEN orders")
	if err := r.check(); err == nil || !strings.Contains(err.Error(), "LISTEN outbox") || strings.Contains(err.Error(), "SELECT 1") ||
		strings.Contains(err.Error(), "LISTEN orders") {
		t.Errorf("recorder check: %v", err)
	}
	if all, pgOnly := r.count(); all != 3 || pgOnly != 1 {
		t.Errorf("recorder count: %d texts, %d PostgreSQL-only; want 3 and 1", all, pgOnly)
	}
}

// TestSQLSubsetCheckRefusesTwoModificationsOfOneTable: what the parser
// accepts but CockroachDB's planner refuses by default, one statement
// that modifies a table twice, is reported; one modification per table,
// with or without CTEs, is not.
func TestSQLSubsetCheckRefusesTwoModificationsOfOneTable(t *testing.T) {
	for sql, refused := range map[string]bool{
		`WITH moved AS (DELETE FROM t WHERE slot <> 0 RETURNING k, n),
			folded AS (INSERT INTO t (k, slot, n) SELECT k, 0, sum(n) FROM moved GROUP BY k
				ON CONFLICT (k, slot) DO UPDATE SET n = t.n + excluded.n RETURNING 1)
			SELECT (SELECT count(*) FROM moved)`: true,
		`WITH d AS (DELETE FROM t RETURNING k) UPDATE t SET n = 0 WHERE k IN (SELECT k FROM d)`:   true,
		`WITH d AS (DELETE FROM t RETURNING k) INSERT INTO u SELECT k FROM d`:                     false,
		`INSERT INTO t (k) SELECT k FROM t WHERE n > 0 ON CONFLICT (k) DO UPDATE SET n = t.n + 1`: false,
		`UPDATE t SET n = 1 WHERE k = $1`:                                                         false,
	} {
		err := parseCockroach(sql)
		if (err != nil) != refused {
			t.Errorf("refused %v (%v), want %v:\n%s", err != nil, err, refused, sql)
		}
	}
}

// moduleRoot finds the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = up
	}
}

// sqlStatement is one statement found, with where it was found.
type sqlStatement struct {
	pos  string // module-relative file:line
	line int
	sql  string
}

// splitSQL splits a script into its statements with CockroachDB's scanner
// (which knows quotes and comments) and gives each one's first line.
func splitSQL(script string) []sqlStatement {
	var out []sqlStatement
	off := 0
	for off < len(script) {
		rest := script[off:]
		n, ok := crdbparser.SplitFirstStatement(rest)
		if !ok {
			n = len(rest)
		}
		text := rest[:n]
		if body := strings.TrimSpace(stripSQLComments(text)); body != "" && body != ";" {
			lead := len(text) - len(strings.TrimLeft(text, " \t\r\n"))
			out = append(out, sqlStatement{line: 1 + strings.Count(script[:off+lead], "\n"), sql: strings.TrimSpace(text)})
		}
		off += n
	}
	return out
}

// stripSQLComments drops -- comments (enough to tell an empty piece).
func stripSQLComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, "--"); i >= 0 {
			l = l[:i]
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// sqlRecorder is a pgx tracer that records every distinct SQL text sent
// (queries, batch queries, prepares, COPY).
type sqlRecorder struct {
	mu   sync.Mutex
	seen map[string]bool
}

// testSQL records the SQL of every pool the package's tests open; TestMain
// parses it after the tests.
var testSQL = &sqlRecorder{}

func (r *sqlRecorder) add(sql string) {
	r.mu.Lock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[sql] = true
	r.mu.Unlock()
}

func (r *sqlRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(d.SQL)
	return ctx
}
func (r *sqlRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *sqlRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *sqlRecorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.add(d.SQL)
}
func (r *sqlRecorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
func (r *sqlRecorder) TracePrepareStart(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	r.add(d.SQL)
	return ctx
}
func (r *sqlRecorder) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
func (r *sqlRecorder) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	cols := make([]string, len(d.ColumnNames))
	for i, c := range d.ColumnNames {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	r.add("COPY " + d.TableName.Sanitize() + " (" + strings.Join(cols, ", ") + ") FROM STDIN")
	return ctx
}
func (r *sqlRecorder) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// pgOnlyMarker opens the SQL text of a test that is PostgreSQL-only on
// purpose (say why after the colon): the runtime check counts such a text
// and does not parse it. Only tests may use it: the static pass over the
// non-test code reports the marker as a problem.
const pgOnlyMarker = "-- PostgreSQL only (test):"

// check parses every recorded statement and reports those CockroachDB's
// parser rejects.
func (r *sqlRecorder) check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bad []string
	for sql := range r.seen {
		if strings.HasPrefix(strings.TrimSpace(sql), pgOnlyMarker) {
			continue
		}
		if err := parseCockroach(sql); err != nil {
			bad = append(bad, fmt.Sprintf("%s\n    %v", sql, err))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%d of %d distinct SQL texts sent by the tests are rejected by CockroachDB's parser:\n%s",
			len(bad), len(r.seen), strings.Join(bad, "\n"))
	}
	return nil
}

// count gives the distinct texts recorded and, of them, those marked
// PostgreSQL-only.
func (r *sqlRecorder) count() (all, pgOnly int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for sql := range r.seen {
		if strings.HasPrefix(strings.TrimSpace(sql), pgOnlyMarker) {
			pgOnly++
		}
	}
	return len(r.seen), pgOnly
}

// checkRecordedSQL runs after the package's tests (TestMain).
func checkRecordedSQL() error {
	if err := testSQL.check(); err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	if n, pgOnly := testSQL.count(); n > 0 {
		fmt.Fprintf(os.Stderr, "pgstore: %d distinct SQL texts sent by the tests accepted by CockroachDB's parser, %d more marked PostgreSQL-only (test)\n", n-pgOnly, pgOnly)
	}
	return nil
}

// ---- the static pass ----

// sqlCalls maps a method name to the index of its SQL argument.
var sqlCalls = map[string]int{
	"Exec":     1, // (ctx, sql, args...)
	"Query":    1,
	"QueryRow": 1,
	"Queue":    0, // pgx.Batch.Queue(sql, args...)
	"Prepare":  2, // (ctx, name, sql)
	"CopyFrom": 1, // (ctx, pgx.Identifier{...}, []string{...}, src)
}

// sqlStart tells a string literal that begins a SQL statement.
var sqlStart = regexp.MustCompile(`^\s*(SELECT|INSERT|UPDATE|DELETE|UPSERT|WITH|CREATE|ALTER|DROP|TRUNCATE|SET|RESET|SHOW|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|COPY|GRANT|REVOKE|VACUUM|ANALYZE|LISTEN|NOTIFY|UNLISTEN|LOCK|EXPLAIN|DECLARE|PREPARE|EXECUTE|DEALLOCATE|CALL|DO|REFRESH|COMMENT ON|IMPORT|EXPORT|BACKUP|RESTORE)\s`)

type goSQL struct {
	stmts    []sqlStatement
	problems []string
	notes    []string
	sites    int
}

type goPkg struct {
	consts map[string]ast.Expr // package-level const and var initialisers
	files  map[string]*goFile  // by module-relative path
}

type goFile struct {
	rel     string
	ast     *ast.File
	imports map[string]string // local name -> import path
}

type sqlScan struct {
	fset    *token.FileSet
	modPath string
	pkgs    map[string]*goPkg // by import path
	used    map[token.Pos]bool
	out     *goSQL
	sites   map[string]dynamicSite
	hit     map[string]bool
	noted   map[string]bool
	seen    map[string]bool // pos+sql already recorded
}

// collectGoSQL finds every SQL statement in the non-test Go files under root.
func collectGoSQL(root string, sites map[string]dynamicSite) (*goSQL, error) {
	modText, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	var modPath string
	for _, l := range strings.Split(string(modText), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			modPath = f[1]
		}
	}
	if modPath == "" {
		return nil, errors.New("no module line in go.mod")
	}
	sc := &sqlScan{fset: token.NewFileSet(), modPath: modPath, pkgs: map[string]*goPkg{}, used: map[token.Pos]bool{},
		out: &goSQL{}, sites: sites, hit: map[string]bool{}, noted: map[string]bool{}, seen: map[string]bool{}}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			if p != root {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(sc.fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		dir := filepath.ToSlash(filepath.Dir(rel))
		ip := modPath
		if dir != "." {
			ip += "/" + dir
		}
		pkg := sc.pkgs[ip]
		if pkg == nil {
			pkg = &goPkg{consts: map[string]ast.Expr{}, files: map[string]*goFile{}}
			sc.pkgs[ip] = pkg
		}
		gf := &goFile{rel: rel, ast: f, imports: map[string]string{}}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			local := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				local = im.Name.Name
			}
			gf.imports[local] = path
		}
		pkg.files[rel] = gf
		for _, decl := range f.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok && (gd.Tok == token.CONST || gd.Tok == token.VAR) {
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					if len(vs.Values) == len(vs.Names) {
						for i, n := range vs.Names {
							pkg.consts[n.Name] = vs.Values[i]
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var ips []string
	for ip := range sc.pkgs {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	for _, ip := range ips {
		pkg := sc.pkgs[ip]
		var rels []string
		for rel := range pkg.files {
			rels = append(rels, rel)
		}
		sort.Strings(rels)
		for _, rel := range rels {
			sc.callSites(pkg, pkg.files[rel])
		}
	}
	// Second net: any SQL-looking literal that no call site used.
	for _, ip := range ips {
		pkg := sc.pkgs[ip]
		var rels []string
		for rel := range pkg.files {
			rels = append(rels, rel)
		}
		sort.Strings(rels)
		for _, rel := range rels {
			sc.looseLiterals(pkg, pkg.files[rel])
		}
	}
	var keys []string
	for k := range sites {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !sc.hit[k] {
			sc.out.problems = append(sc.out.problems, fmt.Sprintf("dynamicSQLSites entry %q matches no call whose SQL is not a constant; remove it", k))
		}
	}
	return sc.out, nil
}

func (sc *sqlScan) where(gf *goFile, pos token.Pos) string {
	return fmt.Sprintf("%s:%d", gf.rel, sc.fset.Position(pos).Line)
}

func (sc *sqlScan) record(gf *goFile, pos token.Pos, sql string) {
	w := sc.where(gf, pos)
	if sc.seen[w+"\x00"+sql] {
		return
	}
	sc.seen[w+"\x00"+sql] = true
	sc.out.stmts = append(sc.out.stmts, sqlStatement{pos: w, line: sc.fset.Position(pos).Line, sql: sql})
}

// env holds the possible values of a function's local string variables
// and the literals they were built from; a name mapped to a value with
// unknown set is a local whose value is not known.
type env map[string]strVal

// strVal is what eval finds: the possible values of a string expression,
// the stand-ins it used, and the literals it read.
type strVal struct {
	vals    []string
	notes   []string
	lits    []token.Pos
	unknown bool
}

func (e env) clone() env {
	c := make(env, len(e))
	for k, v := range e {
		c[k] = v
	}
	return c
}

// merge makes e the union of the branches.
func (e env) merge(branches ...env) {
	keys := map[string]bool{}
	for _, b := range branches {
		for k := range b {
			keys[k] = true
		}
	}
	for k := range keys {
		var m strVal
		set := map[string]bool{}
		for _, b := range branches {
			v, ok := b[k]
			if !ok {
				continue
			}
			if v.unknown {
				m.unknown = true
				break
			}
			for _, s := range v.vals {
				if !set[s] {
					set[s] = true
					m.vals = append(m.vals, s)
				}
			}
			m.notes = append(m.notes, v.notes...)
			m.lits = append(m.lits, v.lits...)
		}
		if m.unknown || len(m.vals) > maxVariants {
			e[k] = strVal{unknown: true}
		} else {
			e[k] = m
		}
	}
}

const maxVariants = 64

type funcCtx struct {
	pkg  *goPkg
	file *goFile
	name string // enclosing top-level function
}

func (sc *sqlScan) callSites(pkg *goPkg, gf *goFile) {
	for _, decl := range gf.ast.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Body != nil {
				sc.block(&funcCtx{pkg: pkg, file: gf, name: d.Name.Name}, d.Body.List, env{})
			}
		case *ast.GenDecl:
			// Calls in package-level initialisers.
			for _, spec := range d.Specs {
				if vs, ok := spec.(*ast.ValueSpec); ok {
					for _, v := range vs.Values {
						sc.expr(&funcCtx{pkg: pkg, file: gf, name: "init"}, v, env{})
					}
				}
			}
		}
	}
}

func (sc *sqlScan) block(fc *funcCtx, list []ast.Stmt, e env) {
	for _, s := range list {
		sc.stmt(fc, s, e)
	}
}

func (sc *sqlScan) stmt(fc *funcCtx, s ast.Stmt, e env) {
	switch s := s.(type) {
	case nil:
	case *ast.AssignStmt:
		for _, r := range s.Rhs {
			sc.expr(fc, r, e)
		}
		if len(s.Lhs) != len(s.Rhs) {
			for _, l := range s.Lhs {
				if id, ok := l.(*ast.Ident); ok {
					e[id.Name] = strVal{unknown: true}
				}
			}
			return
		}
		for i, l := range s.Lhs {
			id, ok := l.(*ast.Ident)
			if !ok {
				continue
			}
			v, err := sc.eval(fc, s.Rhs[i], e, 0)
			switch {
			case err != nil:
				e[id.Name] = strVal{unknown: true}
			case s.Tok == token.ADD_ASSIGN:
				if prev := e[id.Name]; !prev.unknown && prev.vals != nil {
					e[id.Name] = concat(prev, v)
				} else {
					e[id.Name] = strVal{unknown: true}
				}
			default:
				e[id.Name] = v
			}
		}
	case *ast.DeclStmt:
		gd, ok := s.Decl.(*ast.GenDecl)
		if !ok {
			return
		}
		for _, spec := range gd.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, n := range vs.Names {
				e[n.Name] = strVal{unknown: true}
				if len(vs.Values) == len(vs.Names) {
					sc.expr(fc, vs.Values[i], e)
					if v, err := sc.eval(fc, vs.Values[i], e, 0); err == nil {
						e[n.Name] = v
					}
				}
			}
		}
	case *ast.IfStmt:
		sc.stmt(fc, s.Init, e)
		sc.expr(fc, s.Cond, e)
		then := e.clone()
		sc.block(fc, s.Body.List, then)
		other := e.clone()
		sc.stmt(fc, s.Else, other)
		e.merge(then, other)
	case *ast.BlockStmt:
		sc.block(fc, s.List, e)
	case *ast.ForStmt:
		sc.stmt(fc, s.Init, e)
		sc.expr(fc, s.Cond, e)
		body := e.clone()
		sc.block(fc, s.Body.List, body)
		sc.stmt(fc, s.Post, body)
		e.merge(e.clone(), body)
	case *ast.RangeStmt:
		sc.expr(fc, s.X, e)
		body := e.clone()
		sc.block(fc, s.Body.List, body)
		e.merge(e.clone(), body)
	case *ast.SwitchStmt:
		sc.stmt(fc, s.Init, e)
		sc.expr(fc, s.Tag, e)
		sc.clauses(fc, s.Body, e)
	case *ast.TypeSwitchStmt:
		sc.stmt(fc, s.Init, e)
		sc.stmt(fc, s.Assign, e)
		sc.clauses(fc, s.Body, e)
	case *ast.SelectStmt:
		sc.clauses(fc, s.Body, e)
	case *ast.LabeledStmt:
		sc.stmt(fc, s.Stmt, e)
	default:
		// Expression statements, returns, go, defer, send, inc/dec: the
		// calls in them.
		ast.Inspect(s, func(n ast.Node) bool {
			if x, ok := n.(ast.Expr); ok {
				sc.expr(fc, x, e)
				return false
			}
			return true
		})
	}
}

func (sc *sqlScan) clauses(fc *funcCtx, body *ast.BlockStmt, e env) {
	branches := []env{e.clone()}
	for _, c := range body.List {
		b := e.clone()
		switch c := c.(type) {
		case *ast.CaseClause:
			for _, x := range c.List {
				sc.expr(fc, x, b)
			}
			sc.block(fc, c.Body, b)
		case *ast.CommClause:
			sc.stmt(fc, c.Comm, b)
			sc.block(fc, c.Body, b)
		}
		branches = append(branches, b)
	}
	e.merge(branches...)
}

// expr visits the calls in x; a function literal's body is walked with the
// variables as they are where it is written.
func (sc *sqlScan) expr(fc *funcCtx, x ast.Expr, e env) {
	if x == nil {
		return
	}
	ast.Inspect(x, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			sc.block(fc, n.Body.List, e.clone())
			return false
		case *ast.CallExpr:
			sc.call(fc, n, e)
		}
		return true
	})
}

func (sc *sqlScan) call(fc *funcCtx, c *ast.CallExpr, e env) {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return
	}
	idx, ok := sqlCalls[sel.Sel.Name]
	if !ok || len(c.Args) <= idx {
		return
	}
	sc.out.sites++
	callee := exprText(sc.fset, sel)
	var v strVal
	var err error
	if sel.Sel.Name == "CopyFrom" {
		v, err = sc.copyFrom(fc, c, e)
	} else {
		v, err = sc.eval(fc, c.Args[idx], e, 0)
	}
	if err != nil {
		// Its literals are reported here, not again as loose literals.
		ast.Inspect(c.Args[idx], func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok {
				sc.used[lit.Pos()] = true
			}
			return true
		})
		key := fc.file.rel + ":" + fc.name
		if site, ok := sc.sites[key]; ok {
			sc.hit[key] = true
			for _, s := range site.samples {
				sc.record(fc.file, c.Pos(), s)
			}
			return
		}
		sc.out.problems = append(sc.out.problems, fmt.Sprintf("%s: cannot resolve the SQL of %s statically (%v); make it a constant, or list %q in dynamicSQLSites with how its SQL is checked",
			sc.where(fc.file, c.Pos()), callee, err, key))
		return
	}
	sc.take(v)
	for _, s := range v.vals {
		sc.record(fc.file, c.Pos(), s)
	}
}

// take marks v's literals as parsed and keeps its notes.
func (sc *sqlScan) take(v strVal) {
	for _, p := range v.lits {
		sc.used[p] = true
	}
	for _, n := range v.notes {
		if !sc.noted[n] {
			sc.noted[n] = true
			sc.out.notes = append(sc.out.notes, n)
		}
	}
}

// copyFrom turns CopyFrom(ctx, pgx.Identifier{...}, []string{...}, src)
// into the COPY statement pgx sends.
func (sc *sqlScan) copyFrom(fc *funcCtx, c *ast.CallExpr, e env) (strVal, error) {
	var out strVal
	if len(c.Args) < 3 {
		return out, errors.New("CopyFrom with fewer than 3 arguments")
	}
	parts := func(x ast.Expr) ([]string, error) {
		cl, ok := x.(*ast.CompositeLit)
		if !ok {
			return nil, fmt.Errorf("%s is not a composite literal", exprText(sc.fset, x))
		}
		var names []string
		for _, el := range cl.Elts {
			v, err := sc.eval(fc, el, e, 0)
			if err != nil || len(v.vals) != 1 {
				return nil, fmt.Errorf("element %s is not a constant", exprText(sc.fset, el))
			}
			out.lits = append(out.lits, v.lits...)
			names = append(names, pgx.Identifier{v.vals[0]}.Sanitize())
		}
		return names, nil
	}
	table, err := parts(c.Args[1])
	if err != nil {
		return out, err
	}
	cols, err := parts(c.Args[2])
	if err != nil {
		return out, err
	}
	out.vals = []string{"COPY " + strings.Join(table, ".") + " (" + strings.Join(cols, ", ") + ") FROM STDIN"}
	return out, nil
}

// looseLiterals parses each SQL-looking string literal that no call site
// used, taking the whole concatenation it is part of.
func (sc *sqlScan) looseLiterals(pkg *goPkg, gf *goFile) {
	fc := &funcCtx{pkg: pkg, file: gf, name: "literal"}
	var stack []ast.Node
	ast.Inspect(gf.ast, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err == nil && strings.Contains(s, pgOnlyMarker) {
			sc.out.problems = append(sc.out.problems, fmt.Sprintf("%s: %q is for tests only; omsd's own SQL must parse in CockroachDB", sc.where(gf, lit.Pos()), pgOnlyMarker))
		}
		if err != nil || sc.used[lit.Pos()] || !sqlStart.MatchString(s) {
			return true
		}
		// The outermost concatenation this literal is part of.
		var top ast.Expr = lit
	up:
		for i := len(stack) - 2; i >= 0; i-- {
			switch p := stack[i].(type) {
			case *ast.BinaryExpr:
				if p.Op != token.ADD {
					break up
				}
				top = p
			case *ast.ParenExpr:
				top = p
			default:
				break up
			}
		}
		v, err := sc.eval(fc, top, env{}, 0)
		if err != nil {
			sc.out.problems = append(sc.out.problems, fmt.Sprintf("%s: SQL-looking string %q cannot be resolved statically (%v)", sc.where(gf, lit.Pos()), firstLine(s), err))
			sc.used[lit.Pos()] = true
			return true
		}
		sc.out.sites++
		sc.take(v)
		for _, s := range v.vals {
			sc.record(gf, lit.Pos(), s)
		}
		return true
	})
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// eval gives the possible values of a string expression: literals,
// constants and variables (local, package-level, or of another package of
// the module), concatenations, string(...) and fmt.Sprintf.
func (sc *sqlScan) eval(fc *funcCtx, x ast.Expr, e env, depth int) (strVal, error) {
	if depth > 20 {
		return strVal{}, errors.New("constant chain too deep")
	}
	switch x := x.(type) {
	case *ast.BasicLit:
		switch x.Kind {
		case token.STRING:
			s, err := strconv.Unquote(x.Value)
			if err != nil {
				return strVal{}, err
			}
			return strVal{vals: []string{s}, lits: []token.Pos{x.Pos()}}, nil
		case token.INT, token.FLOAT:
			return strVal{vals: []string{x.Value}}, nil
		}
	case *ast.ParenExpr:
		return sc.eval(fc, x.X, e, depth+1)
	case *ast.BinaryExpr:
		if x.Op != token.ADD {
			break
		}
		l, err := sc.eval(fc, x.X, e, depth+1)
		if err != nil {
			return strVal{}, err
		}
		r, err := sc.eval(fc, x.Y, e, depth+1)
		if err != nil {
			return strVal{}, err
		}
		return concat(l, r), nil
	case *ast.Ident:
		if v, ok := e[x.Name]; ok {
			if v.unknown {
				return strVal{}, fmt.Errorf("local %s is not a known constant", x.Name)
			}
			return v, nil
		}
		if init, ok := fc.pkg.consts[x.Name]; ok {
			return sc.eval(&funcCtx{pkg: fc.pkg, file: sc.fileOf(fc.pkg, init, fc.file), name: fc.name}, init, env{}, depth+1)
		}
		return strVal{}, fmt.Errorf("%s is not a known constant", x.Name)
	case *ast.SelectorExpr:
		if id, ok := x.X.(*ast.Ident); ok {
			if _, local := e[id.Name]; !local {
				if path, ok := fc.file.imports[id.Name]; ok {
					if pkg := sc.pkgs[path]; pkg != nil {
						if init, ok := pkg.consts[x.Sel.Name]; ok {
							return sc.eval(&funcCtx{pkg: pkg, file: sc.fileOf(pkg, init, fc.file), name: fc.name}, init, env{}, depth+1)
						}
					}
				}
			}
		}
	case *ast.CallExpr:
		if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "string" && len(x.Args) == 1 {
			return sc.eval(fc, x.Args[0], e, depth+1)
		}
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sprintf" && len(x.Args) >= 1 {
			if id, ok := sel.X.(*ast.Ident); ok && fc.file.imports[id.Name] == "fmt" {
				return sc.sprintf(fc, x, e, depth)
			}
		}
	}
	return strVal{}, fmt.Errorf("%s is not a constant string", exprText(sc.fset, x))
}

// fileOf finds the file of pkg that holds node (for its imports).
func (sc *sqlScan) fileOf(pkg *goPkg, node ast.Node, fallback *goFile) *goFile {
	for _, f := range pkg.files {
		if f.ast.FileStart <= node.Pos() && node.End() <= f.ast.FileEnd {
			return f
		}
	}
	return fallback
}

var printfVerb = regexp.MustCompile(`%[-+# 0]*[0-9]*(?:\.[0-9]+)?[a-zA-Z%]`)

// sprintf fills a fmt.Sprintf template: a verb whose argument is a
// constant gets it; any other gets a stand-in (1 for numbers, x for
// strings), noted so that the test log says what was parsed.
func (sc *sqlScan) sprintf(fc *funcCtx, c *ast.CallExpr, e env, depth int) (strVal, error) {
	formats, err := sc.eval(fc, c.Args[0], e, depth+1)
	if err != nil {
		return strVal{}, err
	}
	out := strVal{notes: formats.notes, lits: formats.lits}
	for _, format := range formats.vals {
		arg := 1
		var ferr error
		s := printfVerb.ReplaceAllStringFunc(format, func(v string) string {
			verb := v[len(v)-1]
			if verb == '%' {
				return "%"
			}
			if arg >= len(c.Args) {
				ferr = fmt.Errorf("fmt.Sprintf template %q has more verbs than arguments", format)
				return v
			}
			a := c.Args[arg]
			arg++
			if av, err := sc.eval(fc, a, e, depth+1); err == nil && len(av.vals) == 1 {
				out.notes = append(out.notes, av.notes...)
				out.lits = append(out.lits, av.lits...)
				if verb == 'q' {
					return strconv.Quote(av.vals[0])
				}
				return av.vals[0]
			}
			var stand string
			switch verb {
			case 'd', 'x', 'X', 'o', 'b', 'f', 'g', 'e':
				stand = "1"
			case 'q':
				stand = `"x"`
			default:
				stand = "x"
			}
			out.notes = append(out.notes, fmt.Sprintf("%s: fmt.Sprintf %s <- %s (stand-in for %s)", sc.where(fc.file, a.Pos()), v, stand, exprText(sc.fset, a)))
			return stand
		})
		if ferr != nil {
			return strVal{}, ferr
		}
		out.vals = append(out.vals, s)
	}
	return out, nil
}

// concat is every value of a followed by every value of b.
func concat(a, b strVal) strVal {
	out := strVal{notes: append(append([]string(nil), a.notes...), b.notes...), lits: append(append([]token.Pos(nil), a.lits...), b.lits...)}
	for _, x := range a.vals {
		for _, y := range b.vals {
			out.vals = append(out.vals, x+y)
		}
	}
	if len(out.vals) > maxVariants {
		out.vals = out.vals[:maxVariants]
	}
	return out
}

func exprText(fset *token.FileSet, x ast.Node) string {
	var b strings.Builder
	if err := printer.Fprint(&b, fset, x); err != nil {
		return fmt.Sprintf("%T", x)
	}
	return b.String()
}
