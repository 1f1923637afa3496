package proxy

import (
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// backend is a target that records what reached it; when drop is set it
// closes the connection instead of answering.
type backend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD path body"
	drop bool
}

func newBackend(t *testing.T, drop bool) *backend {
	b := &backend{drop: drop}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.seen = append(b.seen, r.Method+" "+r.URL.Path+" "+string(body))
		b.mu.Unlock()
		if b.drop {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Location", "/api/users/x")
		w.Header().Set("X-Prefix-Seen", r.Header.Get("X-Forwarded-Prefix"))
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) target() Target {
	host, port, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return Target{Hostname: host, Port: p}
}

func (b *backend) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...)
}

// deadTarget is an address where nothing listens.
func deadTarget(t *testing.T) Target {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	return Target{Hostname: "127.0.0.1", Port: addr.Port}
}

func serve(t *testing.T, targets ...Target) string { return serveAdmins(t, nil, targets...) }

func serveAdmins(t *testing.T, admins []string, targets ...Target) string {
	cfg := &Config{Proxy: Settings{Recover: true}, Services: []Service{{Name: "mft", Protocol: "http", Policy: "failover", Admins: admins, Targets: targets}}}
	p := New(cfg, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return srv.URL
}

func send(t *testing.T, method, url, body string) *http.Response {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestFailoverRules: a target that refuses connections is skipped for any
// request and then avoided; a request that reached a failing target is
// repeated on the next only when repeating is harmless (PUT, with its
// body), never for POST.
func TestFailoverRules(t *testing.T) {
	dropping, good := newBackend(t, true), newBackend(t, false)
	base := serve(t, deadTarget(t), dropping.target(), good.target())

	// The dead target refuses, the dropping one takes the PUT and hangs
	// up; the good one gets it whole.
	resp := send(t, "PUT", base+"/service/mft/api/users/x", `{"a":1}`)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(TargetHeader) != good.target().Addr() {
		t.Fatalf("PUT: %d from %q", resp.StatusCode, resp.Header.Get(TargetHeader))
	}
	if got := good.requests(); len(got) != 1 || got[0] != `PUT /api/users/x {"a":1}` {
		t.Fatalf("good target saw %q", got)
	}
	if loc, prefix := resp.Header.Get("Location"), resp.Header.Get("X-Prefix-Seen"); loc != "/service/mft/api/users/x" || prefix != "/service/mft" {
		t.Fatalf("Location %q, X-Forwarded-Prefix %q", loc, prefix)
	}

	// The good target is now the one in use; the seed's nginx form
	// (/mft/...) reaches it too.
	if resp := send(t, "GET", base+"/mft/ping", ""); resp.Header.Get(TargetHeader) != good.target().Addr() {
		t.Fatalf("GET /mft/ping answered by %q", resp.Header.Get(TargetHeader))
	}
	if n := len(dropping.requests()); n != 1 {
		t.Fatalf("the dropping target saw %d requests after the failover, want only the first", n)
	}

	// A POST that reached a target which then failed is not sent again.
	base = serve(t, dropping.target(), good.target())
	before := len(good.requests())
	if resp := send(t, "POST", base+"/service/mft/api/users", `{"u":"x"}`); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST to a failing target: %d, want 502", resp.StatusCode)
	}
	if len(good.requests()) != before {
		t.Fatalf("the POST was repeated on the next target")
	}
	if resp := send(t, "GET", base+"/service/other/x", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown service: %d", resp.StatusCode)
	}
}

// TestAdmins: with admins set, HTTP Basic logins of other users stop at
// the proxy; bearer tokens are left to the gateway to check.
func TestAdmins(t *testing.T) {
	good := newBackend(t, false)
	base := serveAdmins(t, []string{"admin"}, good.target())
	for _, c := range []struct {
		auth string
		want int
	}{
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("bob:pw")), http.StatusForbidden},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("admin:pw")), http.StatusCreated},
		{"Bearer some-token", http.StatusCreated},
	} {
		req, _ := http.NewRequest("GET", base+"/service/mft/api/users", nil)
		req.Header.Set("Authorization", c.auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", strings.Fields(c.auth)[0], resp.StatusCode, c.want)
		}
	}
	if n := len(good.requests()); n != 2 {
		t.Errorf("the target saw %d requests, want the 2 allowed", n)
	}
}
