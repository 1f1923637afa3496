package httpapi_test

import (
	"strings"
	"testing"

	"github.com/udmg/gateway/tasks"
	ts "github.com/udmg/gateway/testsupport"
)

// TestProtectedKeyImport: POST /api/keys takes a private key gpg protected
// with a passphrase only with that passphrase; it stores the key sealed,
// opened (the tasks need no passphrase), and the passphrase shows in no
// answer, no log line and not in the replicated state.
func TestProtectedKeyImport(t *testing.T) {
	const pass = "the treasury's key passphrase 9"
	g := ts.NewGPG(t)
	uid := "Treasury <pgp@treasury.example>"
	g.Run(nil, "--passphrase", pass, "--quick-gen-key", uid, "future-default", "default", "never")
	sec := string(g.Run(nil, "--passphrase", pass, "--armor", "--export-secret-keys", uid))
	e := newSecretsEnv(t)

	expect(t, do(t, e.api, "POST", "/api/keys", map[string]any{"name": "treasury", "key": sec}), 400, "key treasury: key passphrase: the private key is protected by a passphrase")
	expect(t, do(t, e.api, "POST", "/api/keys", map[string]any{"name": "treasury", "key": sec, "passphrase": "guess"}), 400, "the passphrase does not open")
	r := do(t, e.api, "POST", "/api/keys", map[string]any{"name": "treasury", "key": sec, "passphrase": pass})
	expect(t, r, 201, "")
	for _, body := range []string{string(r.Body), string(do(t, e.api, "GET", "/api/keys/treasury", nil).Body), string(do(t, e.api, "GET", "/api/keys", nil).Body)} {
		if strings.Contains(body, pass) || strings.Contains(body, "PGP") || !strings.Contains(body, `"private": true`) {
			t.Errorf("answer %s", body)
		}
	}
	k := e.node.State().Keys["treasury"]
	if strings.Contains(k.Armored, "PGP") || strings.Contains(k.Armored, pass) {
		t.Fatal("the key is stored in clear")
	}
	opened, err := e.secrets.Open(k.Armored)
	if err != nil {
		t.Fatal(err)
	}
	if imp, err := tasks.Import(string(opened), ""); err != nil || !imp.Private || imp.Fingerprint != k.Fingerprint {
		t.Errorf("the stored key does not open without a passphrase: %+v, %v", imp, err)
	}
	if strings.Contains(e.logs.String(), pass) {
		t.Error("the passphrase is in the log")
	}
}
