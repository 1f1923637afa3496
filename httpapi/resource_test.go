package httpapi_test

import (
	"encoding/json"
	"testing"
)

// TestResourceAnswers walks each kind of object the generic resource
// handlers serve through the answers they share, with each kind's own
// words: a create lacking what it needs (400), a create (201 and its
// Location), the same again (409 naming the commit), a rename (400), a
// missing object (404), a bad sort (400), the list under its field, and a
// delete (204, then 404).
func TestResourceAnswers(t *testing.T) {
	e := newSecretsEnv(t)
	for _, c := range []struct {
		what, collection, field, item, location string
		body, rename                            map[string]any
		needs, renamed, missing, missingPath    string
		sort                                    string
		deleteMissing                           string // DELETE missingPath's error
	}{{
		what: "server", collection: "/api/servers", field: "servers", item: "/api/servers/s1", location: "/api/servers/s1",
		body: map[string]any{"name": "s1", "protocol": "ftp", "port": 2321}, rename: map[string]any{"name": "s2"},
		needs: `a new server needs "name", "protocol" and "port"`, renamed: "name: a server cannot be renamed",
		missingPath: "/api/servers/nothing", missing: `no server "nothing"`, sort: "name", deleteMissing: "delete server: ",
	}, {
		what: "account", collection: "/api/servers/s1/accounts", field: "accounts", item: "/api/servers/s1/accounts/bob", location: "/api/servers/s1/accounts/bob",
		body: map[string]any{"login": "bob", "password": "bob-password-1"}, rename: map[string]any{"login": "carol"},
		needs: `a new account needs "login" and a "password" or "publicKeys"`, renamed: "login: an account cannot be renamed",
		missingPath: "/api/servers/s1/accounts/nobody", missing: `no account "nobody" on server "s1"`, sort: "name", deleteMissing: "delete account: ",
	}, {
		what: "partner", collection: "/api/partners", field: "partners", item: "/api/partners/p1", location: "/api/partners/p1",
		body: map[string]any{"name": "p1", "protocol": "ftp", "address": "127.0.0.1:2121"}, rename: map[string]any{"name": "p2"},
		needs: `a new partner needs "name", "protocol" and "address"`, renamed: "name: a partner cannot be renamed",
		missingPath: "/api/partners/nothing", missing: `no partner "nothing"`, sort: "name", deleteMissing: "delete partner: ",
	}, {
		what: "remote account", collection: "/api/partners/p1/accounts", field: "accounts", item: "/api/partners/p1/accounts/ra", location: "/api/partners/p1/accounts/ra",
		body: map[string]any{"login": "ra", "password": "secret"}, rename: map[string]any{"login": "rb"},
		needs: `a new remote account needs "login" and a "password" or "privateKey"`, renamed: "login: an account cannot be renamed",
		missingPath: "/api/partners/p1/accounts/nobody", missing: `no account "nobody" at partner "p1"`, sort: "name", deleteMissing: "delete remote account: ",
	}, {
		what: "rule", collection: "/api/rules", field: "rules", item: "/api/rules/r1/send", location: "/api/rules/r1/send",
		body: map[string]any{"name": "r1", "direction": "send", "path": "/in"}, rename: map[string]any{"direction": "receive"},
		needs: `a new rule needs "name", "direction" and "path"`, renamed: "name, direction: a rule cannot be renamed or turned around",
		missingPath: "/api/rules/r1/receive", missing: `no receive rule "r1"`, sort: "name", deleteMissing: `no receive rule "r1"`,
	}, {
		what: "schedule", collection: "/api/schedules", field: "schedules", item: "/api/schedules/c1", location: "/api/schedules/c1",
		body:   map[string]any{"name": "c1", "kind": "cron", "rule": "r1", "partner": "p1", "account": "ra", "cron": "@hourly", "file": "a.txt"},
		rename: map[string]any{"kind": "at"}, needs: `a new schedule needs "name", "kind", "rule", "partner" and "account"`,
		renamed: "name, kind: a schedule cannot be renamed or change its kind", missingPath: "/api/schedules/nothing",
		missing: `no schedule "nothing"`, sort: "name", deleteMissing: "delete schedule: ",
	}, {
		what: "user", collection: "/api/users", field: "users", item: "/api/users/u1", location: "/api/users/u1",
		body:  map[string]any{"username": "u1", "password": "u1-password"},
		needs: `a new user needs "username" and "password"`, missingPath: "/api/users/nobody", missing: `no user "nobody"`,
		sort: "username", deleteMissing: `no user "nobody"`,
	}} {
		expect(t, do(t, e.api, "POST", c.collection, map[string]any{}), 400, c.needs)
		r := do(t, e.api, "POST", c.collection, c.body)
		expect(t, r, 201, "")
		if loc := r.Header.Get("Location"); loc != c.location {
			t.Errorf("%s: Location %q, want %q", c.what, loc, c.location)
		}
		expect(t, do(t, e.api, "POST", c.collection, c.body), 409, "create "+c.what+": ")
		if c.rename != nil {
			expect(t, do(t, e.api, "PATCH", c.item, c.rename), 400, c.renamed)
		}
		expect(t, do(t, e.api, "GET", c.missingPath, nil), 404, c.missing)
		expect(t, do(t, e.api, "PUT", c.missingPath, map[string]any{}), 404, c.missing)
		expect(t, do(t, e.api, "DELETE", c.missingPath, nil), 404, c.deleteMissing)
		expect(t, do(t, e.api, "GET", c.collection+"?sort=size", nil), 400, `sort: "size" is not `+c.sort+"+ or "+c.sort+"-")
		var list map[string][]json.RawMessage
		if err := do(t, e.api, "GET", c.collection+"?sort="+c.sort+"-", nil).Decode(&list); err != nil || len(list[c.field]) == 0 {
			t.Errorf("%s: list %v (%v), want objects under %q", c.what, list, err, c.field)
		}
		expect(t, do(t, e.api, "GET", c.item, nil), 200, "")
	}
	// Children answer 404 for a parent that is not there, listed or created.
	expect(t, do(t, e.api, "GET", "/api/servers/nothing/accounts", nil), 404, `no server "nothing"`)
	expect(t, do(t, e.api, "POST", "/api/partners/nothing/accounts", map[string]any{}), 404, `no partner "nothing"`)
	expect(t, do(t, e.api, "GET", "/api/rules/r1/sideways", nil), 404, `direction: "sideways" is not send or receive`)
	expect(t, do(t, e.api, "GET", "/api/keys/nothing", nil), 404, `no key "nothing"`)
	expect(t, do(t, e.api, "DELETE", "/api/keys/nothing", nil), 404, `no key "nothing"`)
	// Switches answer 202 with the object, and deletes in the reverse order
	// of the creates (a schedule holds its rule, partner and account).
	var s struct{ Enabled bool }
	if err := do(t, e.api, "PUT", "/api/servers/s1/disable", nil).Decode(&s); err != nil || s.Enabled {
		t.Errorf("disabled server: %+v %v", s, err)
	}
	expect(t, do(t, e.api, "PUT", "/api/schedules/c1/disable", nil), 202, "")
	for _, item := range []string{"/api/users/u1", "/api/schedules/c1", "/api/rules/r1/send", "/api/partners/p1/accounts/ra", "/api/partners/p1", "/api/servers/s1/accounts/bob", "/api/servers/s1"} {
		expect(t, do(t, e.api, "DELETE", item, nil), 204, "")
		expect(t, do(t, e.api, "GET", item, nil), 404, "no ")
	}
}
