package testsupport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL server started from the machine's own
// binaries, so mirror tests run against the real database the product uses.
type Postgres struct {
	Addr     string // 127.0.0.1:port, what [database] Address takes
	User     string // an ordinary (non-superuser) role owning DB
	Password string // User's password (scram-sha-256 over TCP)
	DB       string // database owned by User
	Dir      string // root of the instance: data/, sock/, postgres.log

	Port      int
	SocketDir string // unix socket directory (superuser access, trust auth)

	bin     string              // directory holding initdb, pg_ctl, postgres
	cred    *syscall.Credential // unprivileged user the server runs as; nil when not root
	running bool
}

const pgSuperuser = "postgres"

// StartPostgres initialises and starts a fresh PostgreSQL instance on a free
// loopback port, with an ordinary user and a database it owns, and stops and
// removes it when the test ends. It skips the test when no PostgreSQL server
// binaries are installed.
//
// The instance lives in its own short directory under os.TempDir rather than
// t.TempDir: unix socket paths are limited to 107 bytes, and t.TempDir's
// parents are private to root while the server runs as an unprivileged user.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := postgresBinDir()
	if err != nil {
		t.Skipf("PostgreSQL server binaries not found (%v); install postgresql to run these tests", err)
	}
	cred, err := unprivilegedCredential()
	if err != nil {
		t.Fatalf("postgres harness: %v", err)
	}
	dir, err := os.MkdirTemp("", "udmg-pg-")
	if err != nil {
		t.Fatalf("postgres harness: %v", err)
	}
	p := &Postgres{
		User:      "udmg_test",
		Password:  "udmg-test-secret",
		DB:        "udmg_test",
		Dir:       dir,
		SocketDir: filepath.Join(dir, "sock"),
		bin:       bin,
		cred:      cred,
	}
	t.Cleanup(func() {
		if p.running {
			_ = p.pgctl("stop", "-m", "immediate", "-w", "-t", "30")
			p.running = false
		}
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("postgres instance kept in %s", dir)
		}
	})
	if err := p.init(); err != nil {
		t.Fatalf("postgres harness: %v", err)
	}
	p.Start(t)
	if err := p.createUser(); err != nil {
		t.Fatalf("postgres harness: %v\n%s", err, p.logTail())
	}
	return p
}

// Start starts the server again on the same port and data, after Stop.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if p.running {
		return
	}
	if err := p.pgctl("start", "-w", "-t", "60", "-l", filepath.Join(p.Dir, "postgres.log")); err != nil {
		t.Fatalf("start postgres on %s: %v\n%s", p.Addr, err, p.logTail())
	}
	p.running = true
}

// Stop kills the server at once (pg_ctl stop -m immediate), like a crash or
// a database outage; Start brings it back.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if !p.running {
		return
	}
	if err := p.pgctl("stop", "-m", "immediate", "-w", "-t", "30"); err != nil {
		t.Fatalf("stop postgres on %s: %v", p.Addr, err)
	}
	p.running = false
}

// ConnString is a keyword/value connection string for User on DB over TCP.
func (p *Postgres) ConnString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable",
		p.Port, p.User, p.Password, p.DB)
}

// Superuser runs sql as the bootstrap superuser over the unix socket; for
// tests that need to look behind the product's back.
func (p *Postgres) Superuser(t testing.TB, sql string) {
	t.Helper()
	if err := p.superuserExec(context.Background(), p.DB, sql); err != nil {
		t.Fatalf("superuser %q: %v", sql, err)
	}
}

func (p *Postgres) init() error {
	data := filepath.Join(p.Dir, "data")
	if err := os.MkdirAll(p.SocketDir, 0o700); err != nil {
		return err
	}
	pwfile := filepath.Join(p.Dir, "superuser.pw")
	if err := os.WriteFile(pwfile, []byte("unused-superuser-secret\n"), 0o600); err != nil {
		return err
	}
	if err := p.chownAll(); err != nil {
		return err
	}
	out, err := p.run(filepath.Join(p.bin, "initdb"),
		"-D", data, "-U", pgSuperuser, "--pwfile", pwfile,
		"-E", "UTF8", "--locale", "C",
		"--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-sync")
	if err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	p.Port = port
	p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := fmt.Sprintf(`
# udmg test harness
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 60
shared_buffers = 16MB
# fsync off is safe for Stop (a killed server's writes are in the page
# cache); synchronous_commit must stay on: with it off, commits still in WAL
# buffers vanish when Stop kills the server.
fsync = off
full_page_writes = off
log_min_messages = warning
log_connections = off
`, port, p.SocketDir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		return err
	}
	return f.Close()
}

func (p *Postgres) createUser() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.superuserExec(ctx, "postgres", fmt.Sprintf(
		"CREATE ROLE %s LOGIN PASSWORD '%s'", p.User, p.Password)); err != nil {
		return fmt.Errorf("create role: %w", err)
	}
	if err := p.superuserExec(ctx, "postgres", fmt.Sprintf(
		"CREATE DATABASE %s OWNER %s", p.DB, p.User)); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

func (p *Postgres) superuserExec(ctx context.Context, db, sql string) error {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return err
	}
	cfg.Host = p.SocketDir
	cfg.Port = uint16(p.Port)
	cfg.User = pgSuperuser
	cfg.Database = db
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func (p *Postgres) pgctl(args ...string) error {
	args = append([]string{"-D", filepath.Join(p.Dir, "data")}, args...)
	out, err := p.run(filepath.Join(p.bin, "pg_ctl"), args...)
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v\n%s", args[2], err, out)
	}
	return nil
}

// run runs a PostgreSQL binary as the unprivileged user, with a minimal
// environment so the caller's PG* variables do not leak in.
func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = p.Dir
	cmd.Env = []string{"PATH=" + p.bin + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

func (p *Postgres) chownAll() error {
	if p.cred == nil {
		return nil
	}
	return filepath.Walk(p.Dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(p.cred.Uid), int(p.cred.Gid))
	})
}

func (p *Postgres) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// postgresBinDir finds the directory holding initdb and pg_ctl: the one
// pg_config names, else the newest /usr/lib/postgresql/*/bin.
func postgresBinDir() (string, error) {
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(globbed, func(i, j int) bool { return pgVersion(globbed[i]) > pgVersion(globbed[j]) })
	candidates = append(candidates, globbed...)
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no initdb and pg_ctl in %v", candidates)
}

func pgVersion(bindir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// unprivilegedCredential picks the user PostgreSQL runs as when the tests run
// as root (initdb and postgres refuse root): "postgres" if it exists, else
// "nobody". It returns nil when not root.
func unprivilegedCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, fmt.Errorf("running as root and neither user postgres nor nobody exists to run PostgreSQL as")
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
