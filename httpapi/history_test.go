package httpapi_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/mirror"
)

// TestHistoryFilterParameters: GET /api/history on a real (SQLite) history
// table passes its filters on, combined with each other and with paging,
// and refuses bad values with 400 naming the parameter. Every exchange is
// checked against the OpenAPI description.
func TestHistoryFilterParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	store, err := mirror.Open(t.Context(), mirror.Options{Path: filepath.Join(t.TempDir(), "udmg.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	// Six transfers an hour apart from 2026-12-01T00:00:00Z (h0 the
	// oldest): pushes to partner bank as gw, and uploads by alice to the
	// local server sftp-main.
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		h := mirror.HistoryEntry{ID: fmt.Sprint(i), IsSend: true, Protocol: "sftp", Rule: "push", Account: "gw", Agent: "bank",
			Status: "DONE", Step: "FINALIZATION", Start: start.Add(time.Duration(i) * time.Hour), NodeID: "n1"}
		if i%2 == 1 {
			h.IsServer, h.IsSend, h.Rule, h.Account, h.Agent = true, false, "inbound", "alice", "sftp-main"
		}
		if i == 4 {
			h.Status = "ERROR"
		}
		if err := store.AddHistory(t.Context(), h); err != nil {
			t.Fatal(err)
		}
	}
	api := e.serve(httpapi.Options{MFT: httpapi.MFT{History: store}})

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"5", "4", "3", "2", "1", "0"}},
		{"rule=push", []string{"4", "2", "0"}},
		{"partner=bank", []string{"4", "2", "0"}},
		{"partner=sftp-main", nil}, // a server is no partner
		{"account=alice", []string{"5", "3", "1"}},
		{"since=2026-12-01T02:00:00Z", []string{"5", "4", "3", "2"}},
		{"until=2026-12-01T02:00:00Z", []string{"1", "0"}},
		{"since=2026-12-01T03:00:00%2B02:00&until=2026-12-01T04:00:00Z", []string{"3", "2", "1"}},
		{"since=2026-12-01T01:30:00.5Z&until=2026-12-01T01:30:00.5Z", nil},
		{"rule=push&status=DONE", []string{"2", "0"}},
		{"partner=bank&since=2026-12-01T01:00:00Z&limit=1&offset=1", []string{"2"}},
		{"account=alice&rule=inbound&status=DONE&until=2026-12-01T05:00:00Z&offset=1", []string{"1"}},
	} {
		r := do(t, api, "GET", "/api/history?"+tc.query, nil)
		expect(t, r, 200, "")
		var out struct{ History []wire.HistoryItem }
		if err := r.Decode(&out); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range out.History {
			ids = append(ids, h.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("history?%s: %v, want %v", tc.query, ids, tc.want)
		}
	}

	for _, tc := range []struct{ query, err string }{
		{"since=yesterday", `since: "yesterday" is not an RFC3339 time`},
		{"until=" + url.QueryEscape("2026-12-01 00:00:00"), `until: "2026-12-01 00:00:00" is not an RFC3339 time`},
		{"since=2026-12-01", `since: "2026-12-01" is not an RFC3339 time`},
		{"since=2026-12-01T00:00:00", `since: "2026-12-01T00:00:00" is not an RFC3339 time`}, // no zone
		{"until=2026-12-01T00:00:00Z&since=2026-12-02T00:00:00Z", "until: 2026-12-01T00:00:00Z is before since 2026-12-02T00:00:00Z"},
		{"status=FINISHED&rule=push", `status: "FINISHED" is not one of`},
		{"rule=push&limit=0", `limit: "0" is not a number from 1 to 1000`},
		{"partner=bank&offset=-1", `offset: "-1" is not a number`},
	} {
		expect(t, do(t, api, "GET", "/api/history?"+tc.query, nil), 400, tc.err)
	}
}
