package httpapi_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/licensing"
	"github.com/udmg/gateway/metrics"
	"github.com/udmg/gateway/mirror"
	ts "github.com/udmg/gateway/testsupport"
)

// history is a history table of one finished transfer.
type history struct{}

func (history) History(_ context.Context, q mirror.HistoryQuery) ([]mirror.HistoryEntry, error) {
	start := time.Now().Add(-time.Minute)
	return []mirror.HistoryEntry{{ID: "7", IsSend: true, Protocol: "sftp", Rule: "tour", Account: "gw", Agent: "bank",
		LocalPath: "out/a.txt", RemotePath: "/in/a.txt", Filesize: 5, Progress: 5, Status: "DONE", Step: "FINALIZATION",
		Start: start, Stop: start.Add(time.Second), NodeID: "n1"}}, nil
}

// TestOpenAPIEveryOperation drives every operation of the description
// through the checking middleware on a real node with secrets, metrics, a
// node table and a history table, and requires a successful answer checked
// against the description for each (DELETE /api/nodes/{id} aside: a single
// node has no other member to remove, so its 404 is checked instead).
// Together with TestOpenAPIRoutes this keeps httpapi/openapi.json true.
func TestOpenAPIEveryOperation(t *testing.T) {
	t.Parallel()
	d := mustDescription(t)
	e := newSecretsEnv(t)
	reg := metrics.New()
	srv := httptest.NewUnstartedServer(nil)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	srv.Config.Handler = checkAPI(t, httpapi.New(httpapi.Options{Node: e.node, Logger: slog.New(slog.DiscardHandler),
		Identity: httpapi.Identity{Hostname: "test-host", IP: "127.0.0.1", Port: port},
		Table:    table{rows: []mirror.Row{{NodeID: e.node.ID(), Hostname: "test-host", IPAddress: "127.0.0.1", Port: 8080, Status: "ACTIVE", StartedAt: time.Now(), LastUpdate: time.Now()}}},
		Metrics:  reg.Handler(),
		MFT:      httpapi.MFT{Secrets: e.secrets, GatewayHome: e.home, History: history{}}}))
	srv.Start()
	t.Cleanup(srv.Close)
	basic := &ts.APIClient{Base: srv.URL, User: "admin", Password: adminPassword}
	var tok wire.TokenResponse
	r := do(t, basic, "POST", "/api/tokens", nil)
	expect(t, r, 201, "")
	if err := r.Decode(&tok); err != nil {
		t.Fatal(err)
	}
	api := basic.WithToken(tok.Token)
	anyone := &ts.APIClient{Base: srv.URL}

	step := func(c *ts.APIClient, method, path string, body any, status int) *ts.Response {
		t.Helper()
		r := do(t, c, method, path, body)
		expect(t, r, status, "")
		return r
	}
	// Public: the probe, this description, its page, the admin page.
	step(anyone, "GET", "/ping", nil, 200)
	if r := step(anyone, "GET", "/api/openapi.json", nil, 200); !bytes.Equal(r.Body, httpapi.OpenAPI()) {
		t.Fatal("GET /api/openapi.json is not the embedded description")
	}
	if r := step(anyone, "GET", "/api/docs", nil, 200); !strings.Contains(string(r.Body), "/api/docs/docs.js") {
		t.Fatalf("docs page does not load its script: %s", r.Body)
	}
	step(anyone, "GET", "/api/docs/docs.js", nil, 200)
	step(anyone, "GET", "/api/docs/docs.css", nil, 200)
	step(anyone, "GET", "/", nil, 200)
	step(anyone, "GET", "/ui/app.js", nil, 200)
	if r := do(t, anyone, "GET", "/ui/no-such-asset", nil); r.Status != 404 { // the file server's plain text
		t.Fatalf("GET /ui/no-such-asset: %v", r)
	}
	expect(t, do(t, anyone, "POST", "/api/openapi.json", nil), 405, "allowed: GET, HEAD")

	// Status.
	step(api, "GET", "/api/sb_healthcheck", nil, 200)
	step(api, "GET", "/api/sb_mgmt_nodes", nil, 200)
	step(api, "GET", "/api/cluster", nil, 200)
	step(api, "GET", "/metrics", nil, 200)
	step(api, "DELETE", "/api/nodes/no-such-node", nil, 404)

	// Tokens and users.
	other := createToken(t, basic)
	step(basic.WithToken(other.Token), "DELETE", "/api/tokens/current", nil, 204)
	step(api, "POST", "/api/users", map[string]any{"username": "tourist", "password": "tourist-password", "perms": map[string]string{"transfers": "rw-"}}, 201)
	step(api, "GET", "/api/users?limit=5&sort=username-", nil, 200)
	step(api, "GET", "/api/users/tourist", nil, 200)
	step(api, "PUT", "/api/users/tourist", map[string]any{"perms": map[string]string{"rules": "r--"}}, 200)
	step(api, "PATCH", "/api/users/tourist", map[string]any{"perms": map[string]string{"rules": "+w"}}, 200)
	step(api, "DELETE", "/api/users/tourist", nil, 204)

	// License and secrets.
	step(api, "GET", "/api/license", nil, 200)
	now := time.Now()
	step(api, "PUT", "/api/license", sign(t, licensing.License{ID: "lic-tour", Licensee: "Tour", Nodes: 3, Issued: now.Add(-time.Hour), Expires: now.AddDate(1, 0, 0)}, vendorPriv), 200)
	step(api, "POST", "/api/secrets/rotate", nil, 200)

	// Servers and their accounts.
	step(api, "POST", "/api/servers", map[string]any{"name": "tour", "protocol": "ftp", "port": 2121, "root": "tour", "passiveMin": 30000, "passiveMax": 30010, "tls": true, "enabled": false}, 201)
	step(api, "GET", "/api/servers?sort=name-", nil, 200)
	step(api, "GET", "/api/servers/tour", nil, 200)
	step(api, "PUT", "/api/servers/tour", map[string]any{"port": 2122}, 200)
	step(api, "PATCH", "/api/servers/tour", map[string]any{"publicHost": "gw.example.com", "tlsRequired": true}, 200)
	for _, action := range []string{"enable", "disable", "start", "stop"} {
		step(api, "PUT", "/api/servers/tour/"+action, nil, 202)
	}
	step(api, "POST", "/api/servers/tour/accounts", map[string]any{"login": "alice", "password": "alice-password"}, 201)
	step(api, "GET", "/api/servers/tour/accounts", nil, 200)
	step(api, "GET", "/api/servers/tour/accounts/alice", nil, 200)
	step(api, "PUT", "/api/servers/tour/accounts/alice", map[string]any{"publicKeys": []string{sshPublicKey(t)}}, 200)
	step(api, "PATCH", "/api/servers/tour/accounts/alice", map[string]any{"password": ""}, 200)

	// Partners, their accounts, a rule, a transfer through its states.
	step(api, "POST", "/api/partners", map[string]any{"name": "bank", "protocol": "sftp", "address": "127.0.0.1:2222", "hostKey": sshPublicKey(t)}, 201)
	step(api, "GET", "/api/partners", nil, 200)
	step(api, "GET", "/api/partners/bank", nil, 200)
	step(api, "PUT", "/api/partners/bank", map[string]any{"address": "127.0.0.1:2223"}, 200)
	step(api, "PATCH", "/api/partners/bank", map[string]any{"hostKey": sshPublicKey(t)}, 200)
	step(api, "POST", "/api/partners/bank/accounts", map[string]any{"login": "gw", "password": "the bank's password"}, 201)
	step(api, "GET", "/api/partners/bank/accounts", nil, 200)
	step(api, "GET", "/api/partners/bank/accounts/gw", nil, 200)
	step(api, "PUT", "/api/partners/bank/accounts/gw", map[string]any{"password": "another password"}, 200)
	step(api, "PATCH", "/api/partners/bank/accounts/gw", map[string]any{"password": "a third password"}, 200)
	step(api, "POST", "/api/rules", map[string]any{"name": "tour", "direction": "send", "path": "/in", "localDir": "out"}, 201)
	step(api, "GET", "/api/rules", nil, 200)
	step(api, "GET", "/api/rules/tour/send", nil, 200)
	step(api, "PUT", "/api/rules/tour/send", map[string]any{"path": "/inbox"}, 200)
	step(api, "PATCH", "/api/rules/tour/send", map[string]any{"localDir": "outbox"}, 200)
	if r := step(api, "POST", "/api/keys", map[string]any{"name": "bank-pgp", "key": armoredKey(t)}, 201); strings.Contains(string(r.Body), "PGP") {
		t.Fatalf("a stored key is shown: %s", r.Body)
	}
	step(api, "GET", "/api/keys", nil, 200)
	if r := step(api, "GET", "/api/keys/bank-pgp", nil, 200); strings.Contains(string(r.Body), "PGP") || !strings.Contains(string(r.Body), `"private": false`) {
		t.Fatalf("key: %s", r.Body)
	}
	step(api, "POST", "/api/keys", map[string]any{"name": "junk", "key": "not a key"}, 400)
	step(api, "DELETE", "/api/keys/bank-pgp", nil, 204)
	if r := step(api, "POST", "/api/task-secrets", map[string]any{"name": "hook-token", "value": "Bearer tour-token-1"}, 201); strings.Contains(string(r.Body), "tour-token") {
		t.Fatalf("a stored secret is shown: %s", r.Body)
	}
	step(api, "PUT", "/api/task-secrets/hook-token", map[string]any{"value": "Bearer tour-token-2"}, 200)
	hooked := map[string]any{"errorTasks": []map[string]any{{"type": "WEBHOOK", "args": map[string]any{"url": "https://hooks.example/t",
		"headers": map[string]any{"Authorization": "#SECRET:hook-token#"}}}}}
	step(api, "PATCH", "/api/rules/tour/send", hooked, 200)
	step(api, "DELETE", "/api/task-secrets/hook-token", nil, 409)
	step(api, "PATCH", "/api/rules/tour/send", map[string]any{"errorTasks": []map[string]any{}}, 200)
	if r := step(api, "GET", "/api/task-secrets", nil, 200); strings.Contains(string(r.Body), "tour-token") || !strings.Contains(string(r.Body), "hook-token") {
		t.Fatalf("secrets: %s", r.Body)
	}
	step(api, "DELETE", "/api/task-secrets/hook-token", nil, 204)
	withTasks := map[string]any{"preTasks": []map[string]any{{"type": "CHECK", "args": map[string]any{"namePattern": "*.csv"}}},
		"postTasks": []map[string]any{{"type": "COPY", "args": map[string]any{"path": "archive"}}}}
	if r := step(api, "PATCH", "/api/rules/tour/send", withTasks, 200); !strings.Contains(string(r.Body), `"namePattern": "*.csv"`) && !strings.Contains(string(r.Body), `"namePattern":"*.csv"`) {
		t.Fatalf("rule with tasks: %s", r.Body)
	}
	r = step(api, "POST", "/api/transfers", map[string]any{"rule": "tour", "partner": "bank", "account": "gw", "file": "a.txt", "maxAttempts": 3, "retryDelay": "1s", "retryFactor": 2}, 201)
	id := r.Header.Get("Location")
	step(api, "GET", "/api/transfers?status=PLANNED&sort=id-", nil, 200)
	step(api, "GET", id, nil, 200)
	for _, action := range []string{"pause", "resume", "cancel", "retry", "cancel"} {
		step(api, "PUT", id+"/"+action, nil, 202)
	}
	step(api, "GET", "/api/history?limit=10&status=DONE", nil, 200)
	step(api, "POST", "/api/schedules", map[string]any{"name": "nightly", "kind": "cron", "cron": "0 2 * * *", "rule": "tour", "partner": "bank", "account": "gw", "file": "a.txt"}, 201)
	step(api, "GET", "/api/schedules?sort=name-", nil, 200)
	step(api, "GET", "/api/schedules/nightly", nil, 200)
	step(api, "PUT", "/api/schedules/nightly", map[string]any{"cron": "30 2 * * *"}, 200)
	step(api, "PATCH", "/api/schedules/nightly", map[string]any{"file": "b.txt"}, 200)
	step(api, "PUT", "/api/schedules/nightly/disable", nil, 202)
	step(api, "PUT", "/api/schedules/nightly/enable", nil, 202)
	step(api, "POST", "/api/schedules", map[string]any{"name": "bad", "kind": "cron", "cron": "61 * * * *", "rule": "tour", "partner": "bank", "account": "gw", "file": "a.txt"}, 400)
	step(api, "DELETE", "/api/schedules/nightly", nil, 204)

	// Refusals the description describes too.
	step(api, "POST", "/api/servers", map[string]any{"name": "x", "protocol": "sftp", "port": 22, "colour": "red"}, 400)
	step(api, "GET", "/api/transfers?status=done", nil, 400)
	bad := map[string]any{"errorTasks": []map[string]any{{"type": "MOVE", "args": map[string]any{"path": "quarantine"}}, {"type": "NO-SUCH-TASK"}}}
	if r := step(api, "PATCH", "/api/rules/tour/send", bad, 400); !strings.Contains(string(r.Body), `rule tour: errorTasks task 2 (\"NO-SUCH-TASK\")`) {
		t.Fatalf("bad task refused without naming the rule, list and position: %s", r.Body)
	}
	noPath := map[string]any{"postTasks": []map[string]any{{"type": "COPY"}}}
	if r := step(api, "PATCH", "/api/rules/tour/send", noPath, 400); !strings.Contains(string(r.Body), `rule tour: postTasks task 1 (\"COPY\"): COPY: argument \"path\" is required`) {
		t.Fatalf("missing argument refused without naming it: %s", r.Body)
	}
	step(anyone, "GET", "/api/servers", nil, 401)

	// And away again.
	step(api, "DELETE", "/api/servers/tour/accounts/alice", nil, 204)
	step(api, "DELETE", "/api/servers/tour", nil, 204)
	step(api, "DELETE", "/api/rules/tour/send", nil, 204)
	step(api, "DELETE", "/api/partners/bank/accounts/gw", nil, 204)
	step(api, "DELETE", "/api/partners/bank", nil, 204)
	step(api, "DELETE", "/api/tokens/current", nil, 204)

	checked.Lock()
	defer checked.Unlock()
	var missing []string
	for path, item := range d.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if checked.ok[op.OperationID] == 0 && !(op.OperationID == "removeNode" && checked.all[op.OperationID] > 0) {
				missing = append(missing, method+" "+path+" ("+op.OperationID+")")
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("operations of httpapi/openapi.json never answered with success through the check:\n  %s", strings.Join(missing, "\n  "))
	}
	t.Logf("%d exchanges checked, %d operations answered with success", sum(checked.all), len(checked.ok))
}

// armoredKey is a fresh OpenPGP public key, armored.
func armoredKey(t *testing.T) string {
	t.Helper()
	e, err := openpgp.NewEntity("Bank", "", "pgp@bank.example", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.String()
}
