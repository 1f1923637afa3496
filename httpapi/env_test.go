package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/licensing"
	ts "github.com/udmg/gateway/testsupport"
)

const adminPassword = "admin-test-password"

// vendorPriv signs the licenses of these tests; its public half is the
// vendor key of this test binary (set before any node starts).
var vendorPriv ed25519.PrivateKey

func TestMain(m *testing.M) {
	pub, priv, err := licensing.GenerateKey()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	licensing.VendorKey, vendorPriv = pub, priv
	if _, err := description(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Answers of udmg-server processes are checked by the client.
	http.DefaultTransport = checkingTransport{next: http.DefaultTransport}
	code := m.Run()
	checked.Lock()
	fmt.Printf("openapi: %d exchanges checked against httpapi/openapi.json, %d of its operations answered with success\n", sum(checked.all), len(checked.ok))
	checked.Unlock()
	clientMismatches.Lock()
	for _, m := range clientMismatches.list {
		fmt.Println("openapi: FAIL (client side):", m)
		code = 1
	}
	clientMismatches.Unlock()
	os.Exit(code)
}

// env is one real single-node cluster, in process, with its API served by
// httptest.
type env struct {
	t     *testing.T
	node  *cluster.Node
	srv   *httptest.Server
	port  int
	logs  *syncBuffer
	clock *clock
}

// syncBuffer collects log output from the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clock is the API's wall clock, which tests move forward.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// freePort finds a loopback port free for both TCP and UDP (gossip uses both).
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// newEnv starts a single-node cluster in t.TempDir() and waits until it
// leads and has created its first administrator.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}, clock: &clock{}}
	e.srv = httptest.NewUnstartedServer(nil)
	e.port = e.srv.Listener.Addr().(*net.TCPAddr).Port
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nodeID := fmt.Sprintf("127.0.0.1:%d-test-0", e.port)
	identity, err := cluster.LoadIdentity(cluster.IdentityConfig{NodeID: nodeID, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	node, err := cluster.Start(cluster.Config{
		Identity:        identity,
		NodeID:          nodeID,
		DataDir:         t.TempDir(),
		RaftBind:        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		GossipBind:      fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		AdvertiseHost:   "127.0.0.1",
		BootstrapExpect: 1,
		Heartbeat:       500 * time.Millisecond,
		Deadline:        2 * time.Second,
		HeartbeatCheck:  time.Second,
		Hostname:        "test-host",
		AdminHost:       "127.0.0.1",
		AdminPort:       e.port,
		InitialUser:     "admin",
		InitialPassword: adminPassword,
		Logger:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.node = node
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := node.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("node log:\n%s", tail(e.logs.String(), 60))
		}
	})
	if !ts.Eventually(30*time.Second, func() bool { return node.IsLeader() && node.State().Initialized }) {
		t.Fatalf("node did not lead and initialise within 30s")
	}
	// Every request of the suite and its answer are checked against the
	// OpenAPI description (openapi_test.go).
	e.srv.Config.Handler = checkAPI(t, e.api(httpapi.Options{}))
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// api builds an API for the env's node; o's zero fields take the env's.
func (e *env) api(o httpapi.Options) *httpapi.API {
	o.Node = e.node
	o.Identity = httpapi.Identity{Hostname: "test-host", IP: "127.0.0.1", Port: e.port}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.Now == nil {
		o.Now = e.clock.Now
	}
	return httpapi.New(o)
}

// serve serves another API of the same node (other options) for one test.
func (e *env) serve(o httpapi.Options) *ts.APIClient {
	srv := httptest.NewServer(checkAPI(e.t, e.api(o)))
	e.t.Cleanup(srv.Close)
	return &ts.APIClient{Base: srv.URL, User: "admin", Password: adminPassword}
}

func (e *env) admin() *ts.APIClient {
	return &ts.APIClient{Base: e.srv.URL, User: "admin", Password: adminPassword}
}

func (e *env) anonymous() *ts.APIClient {
	return &ts.APIClient{Base: e.srv.URL}
}

// do sends a request and fails the test on a transport error.
func do(t *testing.T, c *ts.APIClient, method, path string, body any) *ts.Response {
	t.Helper()
	r, err := c.Do(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// expect checks an answer's status and, when errPart is set, that its JSON
// error contains it.
func expect(t *testing.T, r *ts.Response, status int, errPart string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want %d", r, status)
	}
	if errPart != "" && !strings.Contains(r.ErrorMessage(), errPart) {
		t.Fatalf("error %q does not contain %q (answer %s)", r.ErrorMessage(), errPart, r)
	}
	if status >= 400 && r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("error answer is %q, not JSON: %s", r.Header.Get("Content-Type"), r)
	}
}

// addUser creates a user through the API as admin.
func (e *env) addUser(name, password string, perms map[string]string) *ts.APIClient {
	e.t.Helper()
	r := do(e.t, e.admin(), "POST", "/api/users", map[string]any{"username": name, "password": password, "perms": perms})
	expect(e.t, r, 201, "")
	return e.admin().As(name, password)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
