package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
	"github.com/udmg/gateway/transfer"
)

// secretsEnv is a real single-node cluster whose secrets key is in its
// state, as udmg-server wires it, with DataDir inside GatewayHome (the
// layout in which DataDir is reachable by a user path at all).
type secretsEnv struct {
	node    *cluster.Node
	secrets *transfer.Secrets
	home    string
	api     *ts.APIClient
	logs    *syncBuffer // the node's and the API's log
}

func newSecretsEnv(t *testing.T) *secretsEnv {
	t.Helper()
	home := t.TempDir()
	dataDir := filepath.Join(home, "node")
	secrets, err := transfer.NewSecrets(transfer.KEK{Key: cluster.DeriveKey("test token", "secrets"), Source: "[cluster] JoinToken"}, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	id := fmt.Sprintf("127.0.0.1:%d-test-0", port)
	identity, err := cluster.LoadIdentity(cluster.IdentityConfig{NodeID: id, Name: "test", Tokens: []string{"test token"}})
	if err != nil {
		t.Fatal(err)
	}
	node, err := cluster.Start(cluster.Config{
		NodeID: id, Identity: identity, DataDir: dataDir,
		RaftBind: fmt.Sprintf("127.0.0.1:%d", freePort(t)), GossipBind: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		AdvertiseHost: "127.0.0.1", BootstrapExpect: 1, Heartbeat: 500 * time.Millisecond, Deadline: 2 * time.Second,
		HeartbeatCheck: time.Second, Hostname: "test-host", AdminHost: "127.0.0.1", AdminPort: port,
		InitialUser: "admin", InitialPassword: adminPassword, Secrets: secrets, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	secrets.Bind(func() *fsm.SecretsKeys { return node.State().Secrets })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		node.Shutdown(ctx)
		if t.Failed() {
			t.Logf("node log:\n%s", tail(logs.String(), 40))
		}
	})
	if !ts.Eventually(30*time.Second, func() bool { return node.IsLeader() && node.State().Initialized }) {
		t.Fatal("node did not lead and initialise within 30s")
	}
	guard, err := confine.New(dataDir, filepath.Join(home, "passphrase.aes"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = checkAPI(t, httpapi.New(httpapi.Options{Node: node, Logger: log,
		Identity: httpapi.Identity{Hostname: "test-host", IP: "127.0.0.1", Port: port},
		MFT:      httpapi.MFT{Secrets: secrets, Protected: guard, GatewayHome: home}}))
	srv.Start()
	t.Cleanup(srv.Close)
	// A bearer token: one bcrypt comparison, not one per request.
	basic := &ts.APIClient{Base: srv.URL, User: "admin", Password: adminPassword}
	var tok wire.TokenResponse
	if err := json.Unmarshal(do(t, basic, "POST", "/api/tokens", nil).Body, &tok); err != nil || tok.Token == "" {
		t.Fatalf("token: %v", err)
	}
	return &secretsEnv{node: node, secrets: secrets, home: home, api: basic.WithToken(tok.Token), logs: logs}
}

func sshPublicKey(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// TestRotateSecretsEndpoint: POST /api/secrets/rotate reseals the host key
// and a remote account's password under a new key, both still open, and
// needs administration write.
func TestRotateSecretsEndpoint(t *testing.T) {
	e := newSecretsEnv(t)
	expect(t, do(t, e.api, "POST", "/api/partners", map[string]any{"name": "bank", "protocol": "sftp", "address": "127.0.0.1:22", "hostKey": sshPublicKey(t)}), 201, "")
	expect(t, do(t, e.api, "POST", "/api/partners/bank/accounts", map[string]any{"login": "gw", "password": "the bank's password"}), 201, "")
	before := e.node.State()
	hostKey, err := e.secrets.Open(string(before.HostKey))
	if err != nil || !bytes.Contains(hostKey, []byte("PRIVATE KEY")) {
		t.Fatalf("host key before rotation: %v", err)
	}

	r := do(t, e.api, "POST", "/api/secrets/rotate", nil)
	expect(t, r, 200, "")
	var rot wire.SecretsRotation
	if err := json.Unmarshal(r.Body, &rot); err != nil {
		t.Fatal(err)
	}
	if rot.Generation != 2 || rot.Resealed != 2 {
		t.Errorf("rotation %+v, want generation 2 and 2 values (host key, password)", rot)
	}
	after := e.node.State()
	if after.Secrets.Current == before.Secrets.Current {
		t.Error("the data key did not change")
	}
	acc := after.RemoteAccounts[fsm.AccountKey("bank", "gw")]
	if acc.Password == before.RemoteAccounts[fsm.AccountKey("bank", "gw")].Password {
		t.Error("the password was not resealed")
	}
	if p, err := e.secrets.Open(acc.Password); err != nil || string(p) != "the bank's password" {
		t.Errorf("password after rotation: %q, %v", p, err)
	}
	if k, err := e.secrets.Open(string(after.HostKey)); err != nil || !bytes.Equal(k, hostKey) {
		t.Errorf("host key after rotation: %v", err)
	}
	// A rotation, then a change, then another rotation: the machine never
	// keeps a value under a key it has dropped.
	expect(t, do(t, e.api, "POST", "/api/partners/bank/accounts", map[string]any{"login": "gw2", "password": "second"}), 201, "")
	expect(t, do(t, e.api, "POST", "/api/secrets/rotate", nil), 200, "")
	for _, v := range e.node.State().Sealed() {
		if _, err := e.secrets.Open(v.Old); err != nil {
			t.Errorf("%s after two rotations: %v", v.Ref, err)
		}
	}

	reader := e.api.As("reader", "reader-password")
	expect(t, do(t, e.api, "POST", "/api/users", map[string]any{"username": "reader", "password": "reader-password", "perms": map[string]string{"administration": "r--"}}), 201, "")
	expect(t, do(t, reader, "POST", "/api/secrets/rotate", nil), 403, "permission denied")
}

// TestPathsIntoDataDirRefused: rules, transfers and accounts whose paths
// reach DataDir or the key file are refused with 400 naming the object and
// the path; ordinary ones are accepted.
func TestPathsIntoDataDirRefused(t *testing.T) {
	e := newSecretsEnv(t)
	if err := os.Symlink(filepath.Join(e.home, "node"), filepath.Join(e.home, "innocent")); err != nil {
		t.Fatal(err)
	}
	expect(t, do(t, e.api, "POST", "/api/partners", map[string]any{"name": "bank", "protocol": "sftp", "address": "127.0.0.1:22", "hostKey": sshPublicKey(t)}), 201, "")
	expect(t, do(t, e.api, "POST", "/api/partners/bank/accounts", map[string]any{"login": "gw", "password": "pw"}), 201, "")
	cases := []struct {
		name, method, path string
		body               map[string]any
		want               int
		names              string
	}{
		{"rule into DataDir", "POST", "/api/rules", map[string]any{"name": "r1", "direction": "send", "path": "/", "localDir": "node/raft"}, 400, "rule r1"},
		{"rule through a symlink", "POST", "/api/rules", map[string]any{"name": "r2", "direction": "receive", "path": "/", "localDir": "innocent"}, 400, "rule r2"},
		{"ordinary rule", "POST", "/api/rules", map[string]any{"name": "plain", "direction": "send", "path": "/"}, 201, ""},
		{"transfer of the key file", "POST", "/api/transfers", map[string]any{"rule": "plain", "partner": "bank", "account": "gw", "file": "passphrase.aes"}, 400, "passphrase.aes"},
		{"transfer of the raft log", "POST", "/api/transfers", map[string]any{"rule": "plain", "partner": "bank", "account": "gw", "file": "node/raft/raft.db"}, 400, "node/raft/raft.db"},
		{"ordinary transfer", "POST", "/api/transfers", map[string]any{"rule": "plain", "partner": "bank", "account": "gw", "file": "report.csv"}, 201, ""},
		{"account whose home is DataDir", "POST", "/api/servers/sftp/accounts", map[string]any{"login": "node", "password": "pw-of-node-1"}, 400, "account node"},
		{"ordinary account", "POST", "/api/servers/sftp/accounts", map[string]any{"login": "alice", "password": "pw-of-alice-1"}, 201, ""},
	}
	expect(t, do(t, e.api, "POST", "/api/servers", map[string]any{"name": "sftp", "protocol": "sftp", "port": freePort(t)}), 201, "")
	for _, c := range cases {
		r := do(t, e.api, c.method, c.path, c.body)
		if r.Status != c.want || (c.want == 400 && (!strings.Contains(r.ErrorMessage(), c.names) || !strings.Contains(r.ErrorMessage(), "no rule, transfer or account"))) {
			t.Errorf("%s: %s, want %d naming %q", c.name, r, c.want, c.names)
		}
	}
}
