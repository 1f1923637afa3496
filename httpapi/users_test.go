package httpapi_test

import (
	"maps"
	"strings"
	"testing"

	ts "github.com/udmg/gateway/testsupport"
)

type userOut struct {
	Username string            `json:"username"`
	Perms    map[string]string `json:"perms"`
}

func decodeUser(t *testing.T, r *ts.Response) userOut {
	t.Helper()
	var u userOut
	if err := r.Decode(&u); err != nil {
		t.Fatal(err)
	}
	return u
}

func perms(kv ...string) map[string]string {
	m := map[string]string{"administration": "---", "servers": "---", "partners": "---", "rules": "---", "users": "---", "transfers": "---"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// noSecrets fails when an answer carries a password hash.
func noSecrets(t *testing.T, r *ts.Response) {
	t.Helper()
	if s := string(r.Body); strings.Contains(s, "$2a$") || strings.Contains(strings.ToLower(s), "hash") {
		t.Fatalf("answer shows a hash: %s", r)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.admin()

	// Create: 201, Location, every domain shown, no hash.
	r := do(t, admin, "POST", "/api/users", map[string]any{"username": "alice", "password": "alice-password",
		"perms": map[string]string{"transfers": "rw-", "users": "r--"}})
	expect(t, r, 201, "")
	noSecrets(t, r)
	if r.Header.Get("Location") != "/api/users/alice" {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}
	if u := decodeUser(t, r); u.Username != "alice" || !maps.Equal(u.Perms, perms("transfers", "rw-", "users", "r--")) {
		t.Fatalf("created %+v", u)
	}
	alice := admin.As("alice", "alice-password")
	expect(t, do(t, alice, "GET", "/api/sb_healthcheck", nil), 200, "")
	if h := e.node.State().Users["alice"].Hash; len(h) == 0 || string(h) == "alice-password" {
		t.Fatal("the replicated user has no bcrypt hash")
	}

	// Validation names the problem.
	bad := []struct {
		name   string
		body   any
		status int
		want   string
	}{
		{"bad name", map[string]any{"username": "-bob", "password": "bob-password"}, 400, "invalid username"},
		{"name with slash", map[string]any{"username": "bo/b", "password": "bob-password"}, 400, "invalid username"},
		{"short password", map[string]any{"username": "bob", "password": "short"}, 400, "password too short"},
		{"no password", map[string]any{"username": "bob"}, 400, `needs "username" and "password"`},
		{"unknown domain", map[string]any{"username": "bob", "password": "bob-password", "perms": map[string]string{"files": "rw-"}}, 400, `unknown domain "files"`},
		{"bad mode", map[string]any{"username": "bob", "password": "bob-password", "perms": map[string]string{"transfers": "rx-"}}, 400, "perms.transfers"},
		{"mode too long", map[string]any{"username": "bob", "password": "bob-password", "perms": map[string]string{"transfers": "rw--"}}, 400, "perms.transfers"},
		{"unknown field", map[string]any{"username": "bob", "password": "bob-password", "role": "admin"}, 400, `unknown field "role"`},
		{"not JSON", []byte("{"), 400, "request body"},
		{"empty body", []byte(""), 400, "got nothing"},
		{"duplicate", map[string]any{"username": "alice", "password": "alice-password"}, 409, "already exists"},
	}
	for _, b := range bad {
		expect(t, do(t, admin, "POST", "/api/users", b.body), b.status, b.want)
	}

	// Read one, list, sort, page.
	r = do(t, alice, "GET", "/api/users/alice", nil)
	expect(t, r, 200, "")
	noSecrets(t, r)
	expect(t, do(t, admin, "GET", "/api/users/nobody", nil), 404, `no user "nobody"`)
	e.addUser("carol", "carol-password", nil)
	var list struct{ Users []userOut }
	r = do(t, alice, "GET", "/api/users?sort=username-&limit=2", nil)
	expect(t, r, 200, "")
	noSecrets(t, r)
	r.Decode(&list)
	if len(list.Users) != 2 || list.Users[0].Username != "carol" || list.Users[1].Username != "alice" {
		t.Fatalf("users sorted down, limit 2: %+v", list.Users)
	}
	r = do(t, alice, "GET", "/api/users?offset=1", nil)
	list.Users = nil
	r.Decode(&list)
	if len(list.Users) != 2 || list.Users[0].Username != "alice" || list.Users[1].Username != "carol" {
		t.Fatalf("users from offset 1: %+v", list.Users)
	}
	expect(t, do(t, alice, "GET", "/api/users?sort=age", nil), 400, "sort")
	expect(t, do(t, alice, "GET", "/api/users?limit=0", nil), 400, "limit")

	// PATCH changes only what it names, with Waarp's chmod-like changes.
	r = do(t, admin, "PATCH", "/api/users/alice", map[string]any{"perms": map[string]string{"users": "+w", "rules": "=r--"}})
	expect(t, r, 200, "")
	if u := decodeUser(t, r); !maps.Equal(u.Perms, perms("transfers", "rw-", "users", "rw-", "rules", "r--")) {
		t.Fatalf("after PATCH %+v", u)
	}
	// PUT replaces the permissions; the password stays when not given.
	r = do(t, admin, "PUT", "/api/users/alice", map[string]any{"perms": map[string]string{"rules": "rwd"}})
	expect(t, r, 200, "")
	if u := decodeUser(t, r); !maps.Equal(u.Perms, perms("rules", "rwd")) {
		t.Fatalf("after PUT %+v", u)
	}
	expect(t, do(t, alice, "GET", "/api/sb_healthcheck", nil), 200, "")
	expect(t, do(t, admin, "PATCH", "/api/users/nobody", map[string]any{"password": "new-password"}), 404, "")
	expect(t, do(t, admin, "PATCH", "/api/users/alice", map[string]any{"perms": map[string]string{"rules": "+x"}}), 400, "perms.rules")

	// Users change their own password without users write, nothing else.
	carol := admin.As("carol", "carol-password")
	expect(t, do(t, carol, "GET", "/api/users/carol", nil), 200, "")
	expect(t, do(t, carol, "GET", "/api/users/alice", nil), 403, "permission denied")
	expect(t, do(t, carol, "PATCH", "/api/users/carol", map[string]any{"perms": map[string]string{"users": "rw-"}}), 403, "only its own password")
	expect(t, do(t, carol, "PATCH", "/api/users/carol", map[string]any{"username": "carol2"}), 403, "only its own password")
	expect(t, do(t, carol, "PATCH", "/api/users/alice", map[string]any{"password": "stolen-password"}), 403, "permission denied")
	expect(t, do(t, carol, "PATCH", "/api/users/carol", map[string]any{"password": "carol-new-password"}), 200, "")
	expect(t, do(t, carol, "GET", "/api/users/carol", nil), 401, "invalid user name or password")
	carol = admin.As("carol", "carol-new-password")
	expect(t, do(t, carol, "GET", "/api/users/carol", nil), 200, "")

	// Rename.
	r = do(t, admin, "PATCH", "/api/users/carol", map[string]any{"username": "caroline"})
	expect(t, r, 200, "")
	if r.Header.Get("Location") != "/api/users/caroline" {
		t.Fatalf("rename Location %q", r.Header.Get("Location"))
	}
	expect(t, do(t, admin, "GET", "/api/users/carol", nil), 404, "")
	expect(t, do(t, admin.As("caroline", "carol-new-password"), "GET", "/api/users/caroline", nil), 200, "")
	expect(t, do(t, admin, "PATCH", "/api/users/caroline", map[string]any{"username": "alice"}), 409, "already exists")

	// Someone must keep users write.
	expect(t, do(t, admin, "DELETE", "/api/users/admin", nil), 409, "users write")
	expect(t, do(t, admin, "PATCH", "/api/users/admin", map[string]any{"perms": map[string]string{"users": "r--"}}), 409, "users write")
	expect(t, do(t, admin, "PUT", "/api/users/admin", map[string]any{}), 409, "users write")
	expect(t, do(t, admin, "PATCH", "/api/users/alice", map[string]any{"perms": map[string]string{"users": "rw-"}}), 200, "")
	expect(t, do(t, admin, "DELETE", "/api/users/admin", nil), 204, "")
	expect(t, do(t, admin, "GET", "/api/sb_healthcheck", nil), 401, "")
	expect(t, do(t, alice, "DELETE", "/api/users/alice", nil), 409, "users write")
	expect(t, do(t, alice, "DELETE", "/api/users/nobody", nil), 404, `no user "nobody"`)
	expect(t, do(t, alice, "DELETE", "/api/users/caroline", nil), 204, "")
	if _, ok := e.node.State().Users["caroline"]; ok {
		t.Fatal("deleted user still in the replicated state")
	}
}
