package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// hook is a real HTTP receiver answering a scripted list of statuses (the
// last one repeats) and recording what it got.
type hook struct {
	mu       sync.Mutex
	statuses []int
	bodies   []map[string]any
	keys     []string
	auth     []string
	srv      *httptest.Server
}

func newHook(t *testing.T, statuses ...int) *hook {
	k := &hook{statuses: statuses}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		k.mu.Lock()
		k.bodies = append(k.bodies, body)
		k.keys = append(k.keys, r.Header.Get("Idempotency-Key"))
		k.auth = append(k.auth, r.Header.Get("Authorization"))
		status := k.statuses[min(len(k.bodies), len(k.statuses))-1]
		k.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *hook) calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.bodies)
}

// TestWebhook: 500 then 200 succeeds on the retry with the facts as JSON,
// the same Idempotency-Key and the given headers, through Env.Dial; always
// 500 fails after the attempts with the status named and the URL's token
// kept out; a 404 is not retried; a refused connection is retried.
func TestWebhook(t *testing.T) {
	h := newHome(t)
	f := facts("in/a.txt")
	f.Filesize = 5

	var dials atomic.Int32
	h.env.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	k := newHook(t, 500, 200)
	r := h.run("WEBHOOK", map[string]any{"url": k.srv.URL + "/hooks/#RULE#", "headers": map[string]any{"Authorization": "Bearer t-#TRANSFERID#"}}, f)
	if k.calls() != 2 || !strings.Contains(r.Output, "200 OK (attempt 2)") {
		t.Fatalf("calls %d, output %q", k.calls(), r.Output)
	}
	b := k.bodies[1]
	if b["transferId"] != 42.0 || b["filename"] != "a.txt" || b["partner"] != "acme" || b["filesize"] != 5.0 || b["direction"] != "receive" {
		t.Errorf("body %v", b)
	}
	if k.keys[0] != "42/post/0" || k.keys[1] != k.keys[0] || k.auth[1] != "Bearer t-42" {
		t.Errorf("idempotency keys %q, auth %q", k.keys, k.auth)
	}
	// A rerun after a crash (at-least-once) carries the same key.
	h.run("WEBHOOK", map[string]any{"url": k.srv.URL + "/hooks/#RULE#"}, f)
	if k.calls() != 3 || k.keys[2] != k.keys[0] {
		t.Errorf("rerun: %d calls, keys %q", k.calls(), k.keys)
	}
	if dials.Load() == 0 {
		t.Error("Env.Dial was not used")
	}

	bad := newHook(t, 500)
	err := h.fail("WEBHOOK", map[string]any{"url": bad.srv.URL + "/x?token=s3cret", "attempts": 3}, f,
		"3 attempt(s), last: answered 500 Internal Server Error")
	if !errors.Is(err, ErrWebhook) || strings.Contains(err.Error(), "s3cret") || bad.calls() != 3 {
		t.Errorf("always 500: %v after %d calls", err, bad.calls())
	}

	gone := newHook(t, 404)
	h.fail("WEBHOOK", map[string]any{"url": gone.srv.URL}, f, "1 attempt(s), last: answered 404 Not Found")
	if gone.calls() != 1 {
		t.Errorf("a 404 was retried: %d calls", gone.calls())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/"
	l.Close()
	h.fail("WEBHOOK", map[string]any{"url": closed, "attempts": 2}, f, "2 attempt(s), last: no answer")
}
