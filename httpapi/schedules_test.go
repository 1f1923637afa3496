package httpapi_test

import (
	"testing"

	"github.com/udmg/gateway/httpapi/wire"
)

// TestScheduleValidation: each bad schedule is refused with 400 naming
// the field at fault (a cron spec that does not parse, a watch directory
// outside GatewayHome or reaching DataDir, a field its kind does not
// take, a rule of the wrong direction); a good one is created with its
// next slot, and an update keeps what it does not name.
func TestScheduleValidation(t *testing.T) {
	t.Parallel()
	e := newSecretsEnv(t)
	api := e.api
	expect(t, do(t, api, "POST", "/api/partners", map[string]any{"name": "bank", "protocol": "sftp", "address": "127.0.0.1:2222", "hostKey": sshPublicKey(t)}), 201, "")
	expect(t, do(t, api, "POST", "/api/partners/bank/accounts", map[string]any{"login": "gw", "password": "pw"}), 201, "")
	expect(t, do(t, api, "POST", "/api/rules", map[string]any{"name": "out", "direction": "send", "path": "/in", "localDir": "out"}), 201, "")
	expect(t, do(t, api, "POST", "/api/rules", map[string]any{"name": "in", "direction": "receive", "path": "/out", "localDir": "in"}), 201, "")
	base := func(kind string, kv ...any) map[string]any {
		m := map[string]any{"name": "s", "kind": kind, "rule": "out", "partner": "bank", "account": "gw"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"cron that does not parse", base("cron", "cron", "61 * * * *", "file", "a.txt"), `cron: "61 * * * *" does not parse`},
		{"cron with too many fields", base("cron", "cron", "* * * * * * *", "file", "a.txt"), "cron: "},
		{"cron without its spec", base("cron", "file", "a.txt"), "cron: a cron schedule needs it"},
		{"watch outside GatewayHome", base("watch", "dir", "../elsewhere"), `dir: "../elsewhere" must be a relative path inside GatewayHome`},
		{"watch at an absolute path", base("watch", "dir", "/etc"), `dir: "/etc" must be a relative path inside GatewayHome`},
		{"watch of DataDir", base("watch", "dir", "node"), `schedule s: dir "node"`},
		{"watch of a receive rule", base("watch", "dir", "out", "rule", "in"), "rule: a watch sends"},
		{"poll of a send rule", base("poll", "dir", "/out"), "rule: a poll fetches"},
		{"poll with an unknown after", base("poll", "dir", "/out", "rule", "in", "after", "shred"), `after: "shred" is not delete or move:<dir`},
		{"after on a watch", base("watch", "dir", "out", "after", "delete"), "after: not for a watch schedule"},
		{"at that is no time", base("at", "at", "tomorrow", "file", "a.txt"), `at: "tomorrow" is not an RFC 3339 time`},
		{"unknown kind", base("hourly"), `kind: "hourly" is not one of`},
		{"unknown partner", base("cron", "cron", "@every 1m", "file", "a.txt", "partner", "nobody"), `partner: no partner "nobody"`},
		{"bad settle", base("watch", "dir", "out", "settle", "soon"), `settle: "soon" is not a duration`},
		{"file escaping", base("at", "at", "2026-12-01T14:00:00Z", "file", "../x"), `file: "../x" must be a relative path`},
	} {
		t.Run(c.name, func(t *testing.T) {
			expect(t, do(t, api, "POST", "/api/schedules", c.body), 400, c.want)
		})
	}
	r := do(t, api, "POST", "/api/schedules", base("cron", "name", "nightly", "cron", "0 2 * * *", "file", "a.txt"))
	expect(t, r, 201, "")
	var sc wire.Schedule
	if err := r.Decode(&sc); err != nil || sc.NextRun == "" || sc.Direction != "send" || !sc.Enabled || r.Header.Get("Location") != "/api/schedules/nightly" {
		t.Fatalf("created %+v (%v), Location %q", sc, err, r.Header.Get("Location"))
	}
	expect(t, do(t, api, "POST", "/api/schedules", base("cron", "name", "nightly", "cron", "0 3 * * *", "file", "a.txt")), 409, "exists")
	expect(t, do(t, api, "PATCH", "/api/schedules/nightly", map[string]any{"cron": "every night"}), 400, "cron: ")
	expect(t, do(t, api, "PATCH", "/api/schedules/nightly", map[string]any{"kind": "watch"}), 400, "kind")
	r = do(t, api, "PATCH", "/api/schedules/nightly", map[string]any{"cron": "30 2 * * *"})
	expect(t, r, 200, "")
	if err := r.Decode(&sc); err != nil || sc.Cron != "30 2 * * *" || sc.File != "a.txt" || sc.Rule != "out" {
		t.Fatalf("updated %+v (%v)", sc, err)
	}
	expect(t, do(t, api, "POST", "/api/schedules", base("poll", "name", "fetch", "rule", "in", "dir", "out/", "after", "move:done")), 201, "")
	r = do(t, api, "GET", "/api/schedules/fetch", nil)
	expect(t, r, 200, "")
	if err := r.Decode(&sc); err != nil || sc.Dir != "/out" || sc.After != "move:/done" || sc.Direction != "receive" {
		t.Fatalf("poll %+v (%v)", sc, err)
	}
	expect(t, do(t, api, "DELETE", "/api/schedules/fetch", nil), 204, "")
	expect(t, do(t, api, "DELETE", "/api/schedules/fetch", nil), 404, "")
}
