package localstack

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDirs are where Debian puts the PostgreSQL 15 server binaries.
var pgBinDirs = []string{"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"}

// Postgres is a private PostgreSQL server.
type Postgres struct {
	Port    int
	DataDir string
	proc    *child
	tmpRoot string // a fallback directory we created and must remove
	log     *slog.Logger

	pauseMu sync.Mutex
	paused  bool
}

// URL is the connection string of the postgres database as the postgres
// superuser.
func (p *Postgres) URL() string { return p.DatabaseURL("postgres") }

// DatabaseURL is the connection string for database db on this server.
func (p *Postgres) DatabaseURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// PID is the process id of the postmaster.
func (p *Postgres) PID() int { return p.proc.PID() }

// StartPostgres initializes (if needed) a data directory under dir and runs
// a PostgreSQL server on a free loopback port with fsync and
// synchronous_commit on. As root it runs initdb and postgres as the postgres
// user; when dir is not reachable by that user (a checkout under /root, or a
// 0700 test directory) the data directory moves to a postgres-owned
// temporary directory, which Close removes.
func StartPostgres(ctx context.Context, dir string, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	initdb, err := lookBinary("initdb", "postgresql", pgBinDirs...)
	if err != nil {
		return nil, err
	}
	server, err := lookBinary("postgres", "postgresql", pgBinDirs...)
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	p := &Postgres{log: log}
	base, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	if cred != nil && !traversableByOthers(base) {
		tmp, err := os.MkdirTemp("", "omsd-pg-")
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return nil, err
		}
		log.Info("data directory moved: the postgres user cannot reach the state dir", "state_dir", base, "pg_dir", tmp)
		p.tmpRoot = tmp
		base = tmp
	}
	p.DataDir = filepath.Join(base, "pgdata")
	sock := filepath.Join(base, "pgsock")
	for _, d := range []string{p.DataDir, sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, p.cleanup(err)
		}
		if cred != nil {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, p.cleanup(err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(p.DataDir, "PG_VERSION")); err != nil {
		cmd := exec.CommandContext(ctx, initdb, "-D", p.DataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-instructions")
		cmd.SysProcAttr = credAttr(cred)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return nil, p.cleanup(fmt.Errorf("localstack: initdb: %w: %s", err, out.String()))
		}
	}
	port, err := freePort(false)
	if err != nil {
		return nil, p.cleanup(err)
	}
	p.Port = port
	logFile, err := os.OpenFile(filepath.Join(base, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, p.cleanup(err)
	}
	if cred != nil {
		_ = os.Chown(logFile.Name(), uid, gid)
	}
	args := []string{"-D", p.DataDir, "-p", strconv.Itoa(port), "-k", sock}
	// pg_stat_statements, when the server has it, shows where the
	// database time goes (CREATE EXTENSION pg_stat_statements to read it).
	real, _ := filepath.EvalSymlinks(server)
	if libdir, err := exec.Command(filepath.Join(filepath.Dir(real), "pg_config"), "--pkglibdir").Output(); err == nil {
		if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(libdir)), "pg_stat_statements.so")); err == nil {
			args = append(args, "-c", "shared_preload_libraries=pg_stat_statements")
		}
	}
	cmd := exec.Command(server, append(args,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "max_connections=300",
		"-c", "shared_buffers=256MB",
		"-c", "max_wal_size=2GB",
		// Analyze within seconds of a table's growth, not a minute: a fresh
		// stack's tables start empty, and a statement prepared on a table
		// never analyzed gets a generic plan costed for ~700 rows (a seq
		// scan of customer_keys in the customers' merge check, seen with
		// auto_explain) that it keeps until an ANALYZE invalidates it.
		"-c", "autovacuum_naptime=5s",
		"-c", "log_min_messages=warning")...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
	// backends with it if we die.
	p.proc, err = startChild("postgres", cmd, syscall.SIGQUIT, cred)
	logFile.Close()
	if err != nil {
		return nil, p.cleanup(err)
	}
	if err := p.waitReady(ctx); err != nil {
		_ = p.Close()
		return nil, err
	}
	log.Info("postgres ready", "port", port, "pid", p.PID(), "data_dir", p.DataDir)
	return p, nil
}

func (p *Postgres) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		if p.proc.exited() {
			return fmt.Errorf("localstack: postgres exited at start: %v (see %s)", p.proc.err, filepath.Join(filepath.Dir(p.DataDir), "postgres.log"))
		}
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, p.URL())
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		ccancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("localstack: postgres did not become ready on port %d: %w", p.Port, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the server (fast shutdown, then kill) and removes a fallback
// data directory.
func (p *Postgres) Close() error {
	var err error
	if p.proc != nil {
		p.pauseMu.Lock()
		_ = p.resumeLocked() // a stopped server cannot shut down
		p.pauseMu.Unlock()
		// SIGINT is the fast shutdown: roll back sessions, checkpoint, exit.
		err = p.proc.stop(syscall.SIGINT, 20*time.Second)
	}
	return p.cleanup(err)
}

func (p *Postgres) cleanup(err error) error {
	if p.tmpRoot != "" {
		_ = os.RemoveAll(p.tmpRoot)
		p.tmpRoot = ""
	}
	return err
}

// traversableByOthers reports whether every directory from / to dir can be
// entered by a user who is neither its owner nor in its group.
func traversableByOthers(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || d == filepath.Dir(d) {
			return true
		}
	}
}
