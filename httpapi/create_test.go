package httpapi_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	ts "github.com/udmg/gateway/testsupport"
)

// TestConcurrentCreatesOneWins runs three udmg-server processes and sends
// eight POSTs of the same object at once, spread over all three nodes (most
// of them forwarded to the leader): the machine decides, so exactly one is
// created (201) and the seven others are refused (409, naming the object),
// and every node holds the winner's object, not the last writer's. A
// password change then revokes the user's tokens on every node.
func TestConcurrentCreatesOneWins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	t.Parallel()
	c := ts.NewCluster(t, 3)
	c.WaitOneActive(60*time.Second, "")
	// Each node must know the leader and the administrator before the race.
	for _, p := range c.Nodes {
		var r *ts.Response
		if !ts.Eventually(30*time.Second, func() bool {
			var err error
			r, err = p.Admin().Do("POST", "/api/rules", map[string]any{"name": "probe-" + p.Name, "direction": "send", "path": "/probe"})
			return err == nil && r.Status == 201
		}) {
			t.Fatalf("no write through %s: %v", p.Name, r)
		}
	}

	const writers = 8
	userWinner := -1
	// Accounts differ by their key, which the API shows.
	var testKeys []string
	for range writers {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		testKeys = append(testKeys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
	}
	cases := []struct {
		what string
		path string
		body func(i int) map[string]any
		// object names the object in the 409's error.
		object string
		// holds reports whether node p has writer i's version.
		holds func(p *ts.Proc, i int) bool
	}{
		{"server", "/api/servers", func(i int) map[string]any {
			return map[string]any{"name": "race", "protocol": "ftp", "port": 2300 + i, "enabled": false}
		}, `server "race"`, func(p *ts.Proc, i int) bool {
			return getField(p.Admin(), "/api/servers/race", "port") == fmt.Sprint(2300+i)
		}},
		{"account", "/api/servers/race/accounts", func(i int) map[string]any {
			return map[string]any{"login": "acc", "publicKeys": []string{testKeys[i]}}
		}, `account "acc" on server "race"`, func(p *ts.Proc, i int) bool {
			return strings.Contains(getField(p.Admin(), "/api/servers/race/accounts/acc", "publicKeys"), strings.Fields(testKeys[i])[1])
		}},
		{"partner", "/api/partners", func(i int) map[string]any {
			return map[string]any{"name": "race", "protocol": "ftp", "address": fmt.Sprintf("127.0.0.1:%d", 2400+i)}
		}, `partner "race"`, func(p *ts.Proc, i int) bool {
			return getField(p.Admin(), "/api/partners/race", "address") == fmt.Sprintf("127.0.0.1:%d", 2400+i)
		}},
		{"remote account", "/api/partners/race/accounts", func(i int) map[string]any {
			return map[string]any{"login": "ra", "password": fmt.Sprintf("remote-password-%d", i)}
		}, `remote account "ra" at partner "race"`, nil},
		{"rule", "/api/rules", func(i int) map[string]any {
			return map[string]any{"name": "race", "direction": "receive", "path": fmt.Sprintf("/in-%d", i)}
		}, `receive rule "race"`, func(p *ts.Proc, i int) bool {
			return getField(p.Admin(), "/api/rules/race/receive", "path") == fmt.Sprintf("/in-%d", i)
		}},
		{"user", "/api/users", func(i int) map[string]any {
			return map[string]any{"username": "race", "password": fmt.Sprintf("race-password-%d", i)}
		}, `user "race"`, func(p *ts.Proc, i int) bool {
			r, err := p.Admin().As("race", fmt.Sprintf("race-password-%d", i)).Do("GET", "/api/users/race", nil)
			return err == nil && r.Status == 200
		}},
	}
	for _, tc := range cases {
		answers := make([]*ts.Response, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				r, err := c.Nodes[i%len(c.Nodes)].Admin().Do("POST", tc.path, tc.body(i))
				if err != nil {
					r = &ts.Response{Body: []byte(err.Error())}
				}
				answers[i] = r
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, r := range answers {
			switch {
			case r.Status == 201 && winner < 0:
				winner = i
			case r.Status == 201:
				t.Errorf("%s: writers %d and %d both got 201", tc.what, winner, i)
			case r.Status == 409 && strings.Contains(r.ErrorMessage(), tc.object+" already exists"):
			default:
				t.Errorf("%s: writer %d (through %s) got %v, want 409 naming %s", tc.what, i, c.Nodes[i%len(c.Nodes)].Name, r, tc.object)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: no writer got 201: %v", tc.what, answers)
		}
		if tc.what == "user" {
			userWinner = winner
		}
		t.Logf("%s: writer %d (through %s) created it; %d refused with %q", tc.what, winner, c.Nodes[winner%len(c.Nodes)].Name, writers-1, answers[(winner+1)%writers].ErrorMessage())
		if tc.holds == nil {
			continue
		}
		for _, p := range c.Nodes {
			if !ts.Eventually(10*time.Second, func() bool { return tc.holds(p, winner) }) {
				t.Errorf("%s: %s does not hold the version of writer %d, whose create was acknowledged", tc.what, p.Name, winner)
			}
		}
	}

	// Updates stay updates: one of a missing object is a 404 on every node.
	for _, p := range c.Nodes {
		expect(t, do(t, p.Admin(), "PUT", "/api/rules/nothing/send", map[string]any{"path": "/x"}), 404, `no send rule "nothing"`)
		expect(t, do(t, p.Admin(), "PATCH", "/api/servers/nothing", map[string]any{"port": 2399}), 404, `no server "nothing"`)
	}

	// A password change revokes the user's tokens on every node, not only
	// on the one that took the change.
	user := c.Nodes[0].Admin().As("race", fmt.Sprintf("race-password-%d", userWinner))
	var tokens []*ts.APIClient
	for _, p := range c.Nodes {
		tokens = append(tokens, p.Admin().WithToken(createToken(t, at(user, p)).Token))
	}
	adminTok := c.Nodes[0].Admin().WithToken(createToken(t, c.Nodes[0].Admin()).Token)
	expect(t, do(t, tokens[1], "PATCH", "/api/users/race", map[string]any{"password": "changed-password"}), 200, "")
	for i, p := range c.Nodes {
		for j, tok := range tokens {
			tok := at(tok, p)
			if !ts.Eventually(10*time.Second, func() bool {
				r, err := tok.Do("GET", "/api/users/race", nil)
				return err == nil && r.Status == 401
			}) {
				t.Errorf("token %d still valid on %s after the password change", j, c.Nodes[i].Name)
			}
		}
		expect(t, do(t, at(adminTok, p), "GET", "/api/sb_healthcheck", nil), 200, "")
	}
}

// at is c with p's API as the base.
func at(c *ts.APIClient, p *ts.Proc) *ts.APIClient {
	d := *c
	d.Base = p.AdminURL()
	return &d
}

// getField is one field of the JSON object at path, formatted with %v
// ("" when it cannot be read).
func getField(c *ts.APIClient, path, field string) string {
	r, err := c.Do("GET", path, nil)
	if err != nil || r.Status != 200 {
		return ""
	}
	var m map[string]any
	if r.Decode(&m) != nil || m[field] == nil {
		return ""
	}
	return fmt.Sprint(m[field])
}
