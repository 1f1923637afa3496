package httpapi_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	ts "github.com/udmg/gateway/testsupport"
)

type tokenOut struct {
	Token   string `json:"token"`
	Expires string `json:"expires"`
}

func createToken(t *testing.T, c *ts.APIClient) tokenOut {
	t.Helper()
	r := do(t, c, "POST", "/api/tokens", nil)
	expect(t, r, 201, "")
	var tok tokenOut
	if err := r.Decode(&tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.admin()

	tok := createToken(t, admin)
	if raw, err := base64.RawURLEncoding.DecodeString(tok.Token); err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 bytes in base64url", tok.Token)
	}
	exp, err := time.Parse(time.RFC3339, tok.Expires)
	if err != nil || exp.Sub(time.Now()) < 23*time.Hour || exp.Sub(time.Now()) > 25*time.Hour {
		t.Fatalf("expires %q, want about 24h from now", tok.Expires)
	}
	// Only the SHA-256 is replicated.
	sum := sha256.Sum256([]byte(tok.Token))
	st := e.node.State()
	if got := st.Tokens[hex.EncodeToString(sum[:])]; got.User != "admin" {
		t.Fatalf("replicated token %+v", got)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), tok.Token) {
		t.Fatal("the token itself is in the replicated state")
	}

	bearer := admin.WithToken(tok.Token)
	expect(t, do(t, bearer, "GET", "/api/sb_healthcheck", nil), 200, "")
	expect(t, do(t, bearer, "GET", "/api/users", nil), 200, "")
	expect(t, do(t, bearer, "POST", "/api/tokens", nil), 401, "HTTP Basic")
	expect(t, do(t, admin, "DELETE", "/api/tokens/current", nil), 400, "no bearer token")

	// A token carries its user's permissions.
	viewer := e.addUser("viewer", "viewer-password", nil)
	vt := admin.WithToken(createToken(t, viewer).Token)
	expect(t, do(t, vt, "GET", "/api/sb_healthcheck", nil), 200, "")
	expect(t, do(t, vt, "GET", "/api/sb_mgmt_nodes", nil), 403, "administration read")

	// Expired tokens are refused, and pruned by the next creation.
	short := createToken(t, admin)
	e.clock.Advance(24*time.Hour + time.Minute)
	expect(t, do(t, admin.WithToken(short.Token), "GET", "/api/sb_healthcheck", nil), 401, "expired")
	fresh := createToken(t, admin)
	expect(t, do(t, admin.WithToken(fresh.Token), "GET", "/api/sb_healthcheck", nil), 200, "")
	sum = sha256.Sum256([]byte(short.Token))
	if _, ok := e.node.State().Tokens[hex.EncodeToString(sum[:])]; ok {
		t.Fatal("expired token not pruned")
	}

	// Logout revokes exactly the presented token.
	expect(t, do(t, admin.WithToken(fresh.Token), "DELETE", "/api/tokens/current", nil), 204, "")
	expect(t, do(t, admin.WithToken(fresh.Token), "GET", "/api/sb_healthcheck", nil), 401, "invalid or revoked")

	// Deleting a user revokes its tokens.
	expect(t, do(t, admin, "DELETE", "/api/users/viewer", nil), 204, "")
	expect(t, do(t, vt, "GET", "/api/sb_healthcheck", nil), 401, "")

	// The lifetime is an option.
	tok = createToken(t, e.serve(httpapi.Options{TokenTTL: time.Hour}))
	exp, _ = time.Parse(time.RFC3339, tok.Expires)
	if d := exp.Sub(e.clock.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("token lasts %s, want 1h", d)
	}
}

// TestPasswordChangeRevokesTokens: a new password ends every session the
// old one opened (in the replicated state, so on every node), whoever
// changes it; a change of permissions alone keeps them.
func TestPasswordChangeRevokesTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.admin()
	user := e.addUser("rotating", "old-password-1", perms("transfers", "r--"))
	t1, t2 := admin.WithToken(createToken(t, user).Token), admin.WithToken(createToken(t, user).Token)
	adminTok := admin.WithToken(createToken(t, admin).Token)

	expect(t, do(t, admin, "PATCH", "/api/users/rotating", map[string]any{"perms": perms("transfers", "rw-")}), 200, "")
	expect(t, do(t, t1, "GET", "/api/users/rotating", nil), 200, "")

	// The user changes its own password with one of its tokens: both go.
	expect(t, do(t, t1, "PATCH", "/api/users/rotating", map[string]any{"password": "new-password-2"}), 200, "")
	for i, tok := range []*ts.APIClient{t1, t2} {
		if r := do(t, tok, "GET", "/api/users/rotating", nil); r.Status != 401 {
			t.Fatalf("token %d after the password change: %v, want 401", i+1, r)
		}
	}
	expect(t, do(t, user, "GET", "/api/users/rotating", nil), 401, "")
	user = user.As("rotating", "new-password-2")
	expect(t, do(t, user, "GET", "/api/users/rotating", nil), 200, "")

	// An administrator's reset (PUT) revokes the new token too, and no one
	// else's.
	t3 := admin.WithToken(createToken(t, user).Token)
	expect(t, do(t, admin, "PUT", "/api/users/rotating", map[string]any{"password": "reset-password-3", "perms": perms("transfers", "r--")}), 200, "")
	expect(t, do(t, t3, "GET", "/api/users/rotating", nil), 401, "")
	expect(t, do(t, adminTok, "GET", "/api/sb_healthcheck", nil), 200, "")
	if n := len(e.node.State().Tokens); n != 1 {
		t.Fatalf("%d tokens in the state, want only the administrator's", n)
	}
}
