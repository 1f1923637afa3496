package httpapi_test

import (
	"strings"
	"testing"
	"time"
)

func TestRepeatedBadPasswordsAreSlowedDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const guess = "guess-number-"
	for i := range 5 {
		r := rawRequest(t, "GET", e.srv.URL+"/api/sb_healthcheck", basic("admin", guess+string(rune('a'+i))))
		expect(t, r, 401, "invalid user name or password")
	}

	// The sixth attempt from this address waits, even with the right password.
	start := time.Now()
	expect(t, do(t, e.admin(), "GET", "/api/sb_healthcheck", nil), 200, "")
	if d := time.Since(start); d < time.Second {
		t.Fatalf("attempt after 5 failures answered in %s, want at least 1s", d)
	}
	// Another failure doubles the wait.
	expect(t, rawRequest(t, "GET", e.srv.URL+"/api/sb_healthcheck", basic("admin", guess+"f")), 401, "")
	start = time.Now()
	expect(t, do(t, e.admin(), "GET", "/api/sb_healthcheck", nil), 200, "")
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("attempt after 6 failures answered in %s, want at least 2s", d)
	}

	// Tokens are not slowed down (they cannot be guessed): a Basic attempt
	// now waits 4s, a bearer request does not.
	tok := createToken(t, e.admin())
	start = time.Now()
	expect(t, do(t, e.admin().WithToken(tok.Token), "GET", "/api/sb_healthcheck", nil), 200, "")
	if d := time.Since(start); d >= 3*time.Second {
		t.Fatalf("bearer request took %s: slowed down like a password", d)
	}

	logs := e.logs.String()
	if strings.Count(logs, "authentication failed") < 6 || !strings.Contains(logs, "remote=127.0.0.1") ||
		!strings.Contains(logs, "slowing down logins") {
		t.Fatalf("failures not logged with the address:\n%s", tail(logs, 30))
	}
	if strings.Contains(logs, guess) {
		t.Fatal("a password reached the log")
	}
}
