package httpapi_test

import (
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	ts "github.com/udmg/gateway/testsupport"
)

// TestWritesForwardedToLeader runs three udmg-server processes: writes sent
// to a node that does not lead are carried out by the leader and answered
// as if local.
func TestWritesForwardedToLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	t.Parallel()
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(60*time.Second, "")
	var followers []*ts.Proc
	for _, p := range c.Nodes {
		if p != active {
			followers = append(followers, p)
		}
	}
	f1, f2 := followers[0], followers[1]

	// The follower may not have the replicated administrator yet, or not
	// know the leader: wait for an answer that is neither.
	newUser := map[string]any{"username": "forwarded", "password": "forwarded-password", "perms": map[string]string{"users": "r--"}}
	var r *ts.Response
	if !ts.Eventually(30*time.Second, func() bool {
		var err error
		r, err = f1.Admin().Do("POST", "/api/users", newUser)
		return err == nil && r.Status != 401 && r.Status != 503
	}) {
		t.Fatalf("POST /api/users on %s: %v", f1.Name, r)
	}
	expect(t, r, 201, "")
	if r.Header.Get("Location") != "/api/users/forwarded" {
		t.Fatalf("forwarded answer lost its headers: %v", r.Header)
	}
	if u := decodeUser(t, r); u.Username != "forwarded" || u.Perms["users"] != "r--" {
		t.Fatalf("forwarded answer %+v", u)
	}

	// The follower answered once it had the write itself: the new user
	// works there at once.
	expect(t, do(t, f1.Admin().As("forwarded", "forwarded-password"), "GET", "/api/users/forwarded", nil), 200, "")
	if r.Header.Get(httpapi.IndexHeader) == "" {
		t.Fatalf("forwarded write answered without the leader's index: %v", r.Header)
	}
	// The user works on every node.
	for _, p := range c.Nodes {
		user := p.Admin().As("forwarded", "forwarded-password")
		if !ts.Eventually(10*time.Second, func() bool {
			r, err := user.Do("GET", "/api/users/forwarded", nil)
			return err == nil && r.Status == 200
		}) {
			t.Fatalf("new user cannot log in on %s", p.Name)
		}
	}
	// The leader's refusals come back as they are.
	expect(t, do(t, f2.Admin(), "POST", "/api/users", newUser), 409, "already exists")
	expect(t, do(t, f2.Admin(), "POST", "/api/users", map[string]any{"username": "x"}), 400, "password")

	// A token made through a follower is good there at once, and on the leader.
	tok := createToken(t, f2.Admin())
	expect(t, do(t, f2.Admin().WithToken(tok.Token), "GET", "/api/sb_healthcheck", nil), 200, "")
	bearer := active.Admin().WithToken(tok.Token)
	if !ts.Eventually(5*time.Second, func() bool {
		r, err := bearer.Do("GET", "/api/sb_healthcheck", nil)
		return err == nil && r.Status == 200
	}) {
		t.Fatal("token made through a follower refused by the leader")
	}

	// A request already forwarded once is never forwarded again.
	r = rawRequest(t, "POST", f1.AdminURL()+"/api/users", basic("admin", ts.AdminPassword), httpapi.ForwardedByHeader, "some-node")
	expect(t, r, 503, "does not lead")

	// Delete through the other follower.
	expect(t, do(t, f2.Admin(), "DELETE", "/api/users/forwarded", nil), 204, "")
	for _, p := range c.Nodes {
		if !ts.Eventually(10*time.Second, func() bool {
			r, err := p.Admin().Do("GET", "/api/users/forwarded", nil)
			return err == nil && r.Status == 404
		}) {
			t.Fatalf("deleted user still on %s", p.Name)
		}
	}

	// Without a leader, writes answer 503 and reads still work.
	active.Kill()
	f2.Kill()
	if !ts.Eventually(20*time.Second, func() bool {
		r, err := f1.Admin().Do("POST", "/api/users", map[string]any{"username": "late", "password": "late-password"})
		return err == nil && r.Status == 503 && r.ErrorMessage() == "no cluster leader"
	}) {
		r, _ := f1.Admin().Do("POST", "/api/users", map[string]any{"username": "late", "password": "late-password"})
		t.Fatalf("write without a leader: %v", r)
	}
	expect(t, do(t, f1.Admin(), "GET", "/api/users", nil), 200, "")
}
