package httpapi_test

import (
	"strings"
	"testing"
)

// TestPasswordsOver72Bytes: the API refuses to set a password bcrypt would
// truncate, naming the field, and a 72-byte password followed by anything
// never logs in.
func TestPasswordsOver72Bytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pw72 := strings.Repeat("z", 72)
	r := do(t, e.admin(), "POST", "/api/users", map[string]any{"username": "long", "password": pw72 + "!", "perms": map[string]string{"transfers": "r--"}})
	expect(t, r, 400, "password too long: 73 bytes, at most 72")
	r = do(t, e.admin(), "POST", "/api/servers/sftp/accounts", map[string]any{"login": "long", "password": pw72 + "!"})
	if r.Status != 400 && r.Status != 404 {
		t.Fatalf("local account with a 73-byte password: %s", r)
	}
	if r.Status == 400 && !strings.Contains(r.ErrorMessage(), "password too long") {
		t.Fatalf("local account with a 73-byte password: %s", r)
	}

	u := e.addUser("long", pw72, map[string]string{"transfers": "r--"})
	expect(t, do(t, u, "GET", "/api/transfers", nil), 200, "")
	expect(t, do(t, e.admin().As("long", pw72+"anything"), "GET", "/api/transfers", nil), 401, "invalid user name or password")
}
