package httpapi_test

import (
	"encoding/json"
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
		if strings.Contains(body, pass) || strings.Contains(body, "BEGIN PGP") || !strings.Contains(body, `"private": true`) {
			t.Errorf("answer %s", body)
		}
	}
	k := e.node.State().Keys["treasury"]
	// The sealed key is base64, which holds "PGP" by chance now and then:
	// look for the armour's header, which base64 cannot hold.
	if strings.Contains(k.Armored, "BEGIN PGP") || strings.Contains(k.Armored, pass) {
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

// TestTaskSecrets: a rule's WEBHOOK header names a stored secret; a rule
// naming an unknown one is refused (rule, task, secret named); the rule
// stores and shows the reference only, the value is sealed in the state,
// resealed by a rotation, never in an answer or the log; a secret in use
// is not deleted.
func TestTaskSecrets(t *testing.T) {
	const value = "Bearer hook-value-never-shown"
	e := newSecretsEnv(t)
	expect(t, do(t, e.api, "POST", "/api/rules", map[string]any{"name": "in", "direction": "receive", "path": "/in"}), 201, "")
	hooked := func(ref string) map[string]any {
		return map[string]any{"errorTasks": []map[string]any{{"type": "WEBHOOK", "args": map[string]any{"url": "https://hooks.example/x",
			"headers": map[string]any{"Authorization": ref}}}}}
	}
	expect(t, do(t, e.api, "PATCH", "/api/rules/in/receive", hooked("#SECRET:hook#")), 400,
		`rule in: errorTasks task 1 ("WEBHOOK"): no secret "hook"`)
	r := do(t, e.api, "POST", "/api/task-secrets", map[string]any{"name": "hook", "value": value})
	expect(t, r, 201, "")
	expect(t, do(t, e.api, "POST", "/api/task-secrets", map[string]any{"name": "hook", "value": "again"}), 409, "")
	r2 := do(t, e.api, "PATCH", "/api/rules/in/receive", hooked("#SECRET:hook#"))
	expect(t, r2, 200, "")
	expect(t, do(t, e.api, "DELETE", "/api/task-secrets/hook", nil), 409, `secret hook: in use by receive rule in: errorTasks task 1 ("WEBHOOK")`)
	expect(t, do(t, e.api, "PUT", "/api/task-secrets/hook", map[string]any{"value": value + "-2"}), 200, "")
	before := e.node.State().SecretValues["hook"].Value
	expect(t, do(t, e.api, "POST", "/api/secrets/rotate", nil), 200, "")
	if e.node.State().SecretValues["hook"].Value == before {
		t.Error("the rotation did not reseal the secret")
	}
	for _, body := range []string{string(r.Body), string(r2.Body), string(do(t, e.api, "GET", "/api/task-secrets", nil).Body),
		string(do(t, e.api, "GET", "/api/rules/in/receive", nil).Body)} {
		if strings.Contains(body, "hook-value") {
			t.Errorf("an answer shows the secret: %s", body)
		}
	}
	if !strings.Contains(string(r2.Body), "#SECRET:hook#") {
		t.Errorf("the rule does not show its reference: %s", r2.Body)
	}
	st := e.node.State()
	if b, _ := json.Marshal(st); strings.Contains(string(b), "hook-value") {
		t.Fatal("the replicated state holds the secret in clear")
	}
	if v, err := e.secrets.Open(st.SecretValues["hook"].Value); err != nil || string(v) != value+"-2" {
		t.Errorf("the sealed secret opens to %q, %v", v, err)
	}
	if strings.Contains(e.logs.String(), "hook-value") {
		t.Error("the secret is in the log")
	}
	expect(t, do(t, e.api, "PATCH", "/api/rules/in/receive", map[string]any{"errorTasks": []map[string]any{}}), 200, "")
	expect(t, do(t, e.api, "DELETE", "/api/task-secrets/hook", nil), 204, "")
}
