package main

import (
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestPasswordLoginsRemembered: a password bcrypt accepted is answered
// from memory on the next logins (udmg_password_checks_total by
// "remembered"), over SFTP and the API alike; a wrong password always
// costs bcrypt, and a password changed through the API (a new hash
// replicated through Raft) is checked by bcrypt again at once: the old one
// no longer logs in, the new one does.
func TestPasswordLoginsRemembered(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	c := ts.NewCluster(t, 1)
	active := c.WaitOneActive(60*time.Second, "")
	api := active.Admin().Tokened(t) // no password login from here on but the ones counted
	api.Must(t, 201, "POST", "/api/servers/sftp/accounts", map[string]any{"login": "carol", "password": "first-password"})
	checks := func() (bcrypt, remembered float64) {
		t.Helper()
		r, err := api.Do("GET", "/metrics", nil)
		if err != nil || r.Status != 200 {
			t.Fatalf("GET /metrics: %v %v", r, err)
		}
		return metricValue(string(r.Body), `udmg_password_checks_total{by="bcrypt"}`), metricValue(string(r.Body), `udmg_password_checks_total{by="remembered"}`)
	}
	b0, r0 := checks()
	if b0 < 0 || r0 != 0 {
		t.Fatalf("before any login: bcrypt %v, remembered %v; want both exported, none remembered", b0, r0)
	}
	login := func(password string, want bool, bcrypt, remembered float64) {
		t.Helper()
		err := sftpPassword(active.SFTPAddr(), "127.4.0.1", "carol", password)
		if (err == nil) != want {
			t.Fatalf("SFTP login of carol with %q: %v, want in = %v", password, err, want)
		}
		if b, r := checks(); b != b0+bcrypt || r != remembered {
			t.Fatalf("after the login with %q: %v bcrypt checks, %v remembered; want %v, %v", password, b-b0, r, bcrypt, remembered)
		}
	}
	login("first-password", true, 1, 0)
	login("first-password", true, 1, 1)
	login("first-password", true, 1, 2)
	login("wrong-password", false, 2, 2)
	login("first-password", true, 2, 3)

	api.Must(t, 200, "PATCH", "/api/servers/sftp/accounts/carol", map[string]any{"password": "second-password"})
	login("first-password", false, 3, 3)
	login("second-password", true, 4, 3)
	login("second-password", true, 4, 4)

	// The API's Basic logins share the node's Guard: admin's password,
	// checked by bcrypt when the token was made, is remembered.
	admin := active.Admin()
	for i := range 3 {
		if r, err := admin.Do("GET", "/api/users", nil); err != nil || r.Status != 200 {
			t.Fatalf("API login %d: %v %v", i+1, r, err)
		}
	}
	if b, r := checks(); b != b0+4 || r != 7 {
		t.Fatalf("after 3 API logins: %v bcrypt checks, %v remembered; want 4, 7", b-b0, r)
	}
}
