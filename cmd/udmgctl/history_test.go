package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestHistoryFilters: history list sends its filters as the history
// endpoint's query parameters (status in the API's case), and only those
// given; a --since or --until that is no RFC 3339 time is refused before
// anything is asked. The endpoint here records the request: whether the
// API filters on them is the API's test.
func TestHistoryFilters(t *testing.T) {
	var (
		mu      sync.Mutex
		queries []url.Values
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/api/history" {
			http.NotFound(w, r)
			return
		}
		queries = append(queries, r.URL.Query())
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"history":[{"id":7,"status":"DONE","rule":"statements","agent":"bank","account":"gw"}]}`))
	}))
	defer srv.Close()

	out := mustRun(t, srv.URL, "history", "list", "--rule", "statements", "--partner", "bank", "--account", "gw",
		"--since", "2026-12-01T00:00:00Z", "--until", "2026-12-02T00:00:00+01:00", "--status", "done", "--limit", "5")
	if !strings.Contains(out, "statements") || !strings.Contains(out, "bank") {
		t.Errorf("history list printed:\n%s", out)
	}
	mustRun(t, srv.URL, "history", "list")
	for _, bad := range []string{"--since", "--until"} {
		if code, _, errOut := udmgctl(srv.URL, "history", "list", bad, "2026-12-01"); code != 1 || !strings.HasPrefix(errOut, "udmgctl: history list: "+bad+` "2026-12-01": want an RFC 3339 time`) {
			t.Errorf("history list %s 2026-12-01: exit %d, %q", bad, code, errOut)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	want := []url.Values{
		{"rule": {"statements"}, "partner": {"bank"}, "account": {"gw"}, "since": {"2026-12-01T00:00:00Z"},
			"until": {"2026-12-02T00:00:00+01:00"}, "status": {"DONE"}, "limit": {"5"}},
		{"limit": {"100"}},
	}
	if len(queries) != len(want) {
		t.Fatalf("the endpoint was asked %d times (%v), want %d", len(queries), queries, len(want))
	}
	for i := range want {
		if queries[i].Encode() != want[i].Encode() {
			t.Errorf("request %d: query %s, want %s", i, queries[i].Encode(), want[i].Encode())
		}
	}
}
