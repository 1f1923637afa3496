package httpapi_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/mirror"
	ts "github.com/udmg/gateway/testsupport"
)

var nodeFields = []string{"nodeId", "nodeHostname", "nodeIPAddress", "nodePort", "nodeStatus", "nodeUptime", "nodeLastUpdate", "nodeLastActiveDate"}

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	// /ping needs nothing.
	r := do(t, e.anonymous(), "GET", "/ping", nil)
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != "ACTIVE" {
		t.Fatalf("/ping: %s", r)
	}
	expect(t, do(t, e.anonymous(), "POST", "/ping", nil), 405, "not allowed")

	bad := []struct {
		name   string
		header string
		want   string
	}{
		{"none", "", "authentication required"},
		{"wrong password", basic("admin", "wrong-password"), "invalid user name or password"},
		{"unknown user", basic("mallory", adminPassword), "invalid user name or password"},
		{"malformed basic", "Basic !!!", "malformed Basic credentials"},
		{"unknown token", "Bearer not-a-token", "invalid or revoked token"},
		{"empty token", "Bearer ", "empty bearer token"},
		{"other scheme", "Digest username=admin", "unsupported authorization scheme"},
	}
	for _, b := range bad {
		r := rawRequest(t, "GET", e.srv.URL+"/api/sb_healthcheck", b.header)
		expect(t, r, 401, b.want)
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s: 401 without WWW-Authenticate", b.name)
		}
	}
	for _, path := range []string{"/api/sb_mgmt_nodes", "/api/users", "/api/users/admin", "/api/license", "/api/tokens", "/api/no-such-thing"} {
		expect(t, rawRequest(t, "GET", e.srv.URL+path, ""), 401, "authentication required")
		expect(t, rawRequest(t, "POST", e.srv.URL+path, "Bearer nope"), 401, "invalid or revoked token")
	}

	// The healthcheck keeps the seed's fields exactly.
	r = do(t, e.admin(), "GET", "/api/sb_healthcheck", nil)
	expect(t, r, 200, "")
	var h map[string]any
	if err := r.Decode(&h); err != nil {
		t.Fatal(err)
	}
	want := append([]string{"status"}, nodeFields...)
	if got := keys(h); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("healthcheck fields %v, want %v", got, want)
	}
	if h["nodeId"] != e.node.ID() || h["nodeStatus"] != "ACTIVE" || h["nodePort"] != strconv.Itoa(e.port) || h["status"] != "operational" {
		t.Fatalf("healthcheck %v", h)
	}

	// Unknown endpoints and methods answer JSON, after authentication.
	expect(t, do(t, e.admin(), "GET", "/api/nothing", nil), 404, "no such endpoint")
	r = do(t, e.admin(), "DELETE", "/api/users", nil)
	expect(t, r, 405, "not allowed")
	if r.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("Allow: %q", r.Header.Get("Allow"))
	}
	expect(t, do(t, e.anonymous(), "DELETE", "/api/users", nil), 401, "")
}

func basic(user, password string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// rawRequest sends a request with an exact Authorization header.
func rawRequest(t *testing.T, method, url, authorization string, headers ...string) *ts.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return &ts.Response{Status: resp.StatusCode, Header: resp.Header, Body: []byte(b.String())}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	none := e.addUser("nobody", "nobody-password", nil)
	reader := e.addUser("reader", "reader-password", map[string]string{"administration": "r--", "users": "r--"})
	writer := e.addUser("writer", "writer-password", map[string]string{"users": "rw-"})
	deleter := e.addUser("deleter", "deleter-password", map[string]string{"users": "--d"})

	cases := []struct {
		who    *ts.APIClient
		method string
		path   string
		body   any
		status int
	}{
		{none, "GET", "/api/sb_healthcheck", nil, 200},
		{none, "GET", "/api/license", nil, 200},
		{none, "GET", "/api/sb_mgmt_nodes", nil, 403},
		{none, "GET", "/api/users", nil, 403},
		{none, "GET", "/api/users/nobody", nil, 200}, // oneself
		{none, "GET", "/api/users/admin", nil, 403},
		{none, "PUT", "/api/license", []byte("{}"), 403},
		{reader, "GET", "/api/sb_mgmt_nodes", nil, 200},
		{reader, "GET", "/api/users", nil, 200},
		{reader, "POST", "/api/users", map[string]any{"username": "x1", "password": "x1-password"}, 403},
		{reader, "DELETE", "/api/users/nobody", nil, 403},
		{reader, "PUT", "/api/license", []byte("{}"), 403},
		{writer, "GET", "/api/sb_mgmt_nodes", nil, 403},
		{writer, "POST", "/api/users", map[string]any{"username": "x2", "password": "x2-password"}, 201},
		{writer, "DELETE", "/api/users/x2", nil, 204}, // write includes delete
		{deleter, "POST", "/api/users", map[string]any{"username": "x3", "password": "x3-password"}, 403},
		{deleter, "DELETE", "/api/users/nobody", nil, 204},
	}
	for _, c := range cases {
		r := do(t, c.who, c.method, c.path, c.body)
		if r.Status != c.status {
			t.Errorf("%s %s %s: %s, want %d", c.who.User, c.method, c.path, r, c.status)
		}
		if r.Status == 403 && !strings.Contains(r.ErrorMessage(), "permission denied") {
			t.Errorf("403 without a reason: %s", r)
		}
	}
}

// table is a node table for the sb_mgmt_nodes tests.
type table struct {
	rows []mirror.Row
	err  error
	// hang, when set, blocks until the context ends and records how long
	// the caller allowed.
	hang *time.Duration
}

func (tb table) Nodes(ctx context.Context) ([]mirror.Row, error) {
	if tb.hang != nil {
		deadline, ok := ctx.Deadline()
		if ok {
			*tb.hang = time.Until(deadline)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return tb.rows, tb.err
}

func TestManagementNodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	decode := func(r *ts.Response) []map[string]any {
		t.Helper()
		expect(t, r, 200, "")
		var out struct{ Nodes []map[string]any }
		if err := r.Decode(&out); err != nil {
			t.Fatal(err)
		}
		for _, n := range out.Nodes {
			if got := keys(n); !slices.Equal(got, slices.Sorted(slices.Values(nodeFields))) {
				t.Fatalf("node fields %v, want exactly %v", got, nodeFields)
			}
		}
		return out.Nodes
	}

	// No table: the cluster state, and a header saying so.
	r := do(t, e.admin(), "GET", "/api/sb_mgmt_nodes", nil)
	nodes := decode(r)
	if r.Header.Get(httpapi.SourceHeader) != "cluster-state" {
		t.Fatalf("source %q", r.Header.Get(httpapi.SourceHeader))
	}
	if len(nodes) != 1 || nodes[0]["nodeId"] != e.node.ID() || nodes[0]["nodeStatus"] != "ACTIVE" ||
		nodes[0]["nodePort"] != strconv.Itoa(e.port) || nodes[0]["nodeIPAddress"] != "127.0.0.1" || nodes[0]["nodeUptime"] == "" {
		t.Fatalf("nodes from cluster state: %v", nodes)
	}

	// The table, when it answers.
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := []mirror.Row{
		{NodeID: "a:8080-mft-0", Hostname: "a", IPAddress: "10.0.0.1", Port: 8080, Status: "ACTIVE", Licensed: true,
			StartedAt: started, LastUpdate: started.Add(time.Hour), LastActiveDate: started.Add(time.Hour)},
		{NodeID: "b:8080-mft-0", Hostname: "b", IPAddress: "10.0.0.2", Port: 8080, Status: "OFFLINE",
			StartedAt: started, LastUpdate: started.Add(90 * time.Minute)},
	}
	r = do(t, e.serve(httpapi.Options{Table: table{rows: rows}}), "GET", "/api/sb_mgmt_nodes", nil)
	nodes = decode(r)
	if r.Header.Get(httpapi.SourceHeader) != "database" {
		t.Fatalf("source %q", r.Header.Get(httpapi.SourceHeader))
	}
	want := []map[string]any{
		{"nodeId": "a:8080-mft-0", "nodeHostname": "a", "nodeIPAddress": "10.0.0.1", "nodePort": "8080", "nodeStatus": "ACTIVE",
			"nodeLastUpdate": "2026-01-02T04:04:05Z", "nodeLastActiveDate": "2026-01-02T04:04:05Z"},
		{"nodeId": "b:8080-mft-0", "nodeHostname": "b", "nodeIPAddress": "10.0.0.2", "nodePort": "8080", "nodeStatus": "OFFLINE",
			"nodeUptime": "1h30m0s", "nodeLastUpdate": "2026-01-02T04:34:05Z", "nodeLastActiveDate": ""},
	}
	for i := range want {
		for k, v := range want[i] {
			if nodes[i][k] != v {
				t.Errorf("node %d %s = %v, want %v", i, k, nodes[i][k], v)
			}
		}
	}
	if d, err := time.ParseDuration(nodes[0]["nodeUptime"].(string)); err != nil || d < time.Hour {
		t.Errorf("running node's uptime %v", nodes[0]["nodeUptime"])
	}

	// A failing or hanging table: the cluster state, the database read
	// bounded by a deadline of at most two seconds.
	var allowed time.Duration
	for name, tb := range map[string]table{"failing": {err: errors.New("connection refused")}, "hanging": {hang: &allowed}} {
		r = do(t, e.serve(httpapi.Options{Table: tb}), "GET", "/api/sb_mgmt_nodes", nil)
		nodes = decode(r)
		if r.Header.Get(httpapi.SourceHeader) != "cluster-state" || len(nodes) != 1 {
			t.Fatalf("%s table: source %q, nodes %v", name, r.Header.Get(httpapi.SourceHeader), nodes)
		}
	}
	if allowed <= 0 || allowed > 2*time.Second {
		t.Fatalf("the hanging table was allowed %s, want a deadline within 2s", allowed)
	}
	if !strings.Contains(e.logs.String(), "node table unreadable") {
		t.Fatal("the fallback is not logged")
	}
}
