package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi"
	ts "github.com/udmg/gateway/testsupport"
)

// machineNode is an httpapi.Node over a bare machine: the ACTIVE leader of
// a cluster of one, whose state was built by applying commands directly
// (no Raft), so that the benchmarks measure what the API itself does with
// the state. Its PasswordHash looks the user up in place, as
// cluster.Node's does.
type machineNode struct{ *fsm.Machine }

func (machineNode) ID() string                  { return ts.StateHolder }
func (machineNode) Mode() cluster.Mode          { return cluster.Active }
func (machineNode) StartedAt() time.Time        { return time.Time{} }
func (machineNode) LastActive() time.Time       { return time.Time{} }
func (machineNode) IsLeader() bool              { return true }
func (machineNode) AppliedIndex() uint64        { return 0 }
func (machineNode) LeaderAPI() (string, bool)   { return "", false }
func (n machineNode) Apply(c fsm.Command) error { return n.apply(c) }

func (n machineNode) apply(c fsm.Command) error {
	b, err := fsm.Encode(c)
	if err != nil {
		return err
	}
	return n.Machine.Apply(b).Err
}

func (n machineNode) PasswordHash(user string) []byte {
	var hash []byte
	n.Read(func(s *fsm.State) { hash = s.Users[user].Hash })
	return hash
}

// BenchmarkAPIState serves /ping and authenticated reads (bearer token
// and Basic password, bcrypt.MinCost) from an empty state and from the
// issue's large one (testsupport.IssueState); the cost of each should not
// grow with the state. p99-ns is the 99th percentile of one request.
func BenchmarkAPIState(b *testing.B) {
	const token = "bench-token"
	sum := sha256.Sum256([]byte(token))
	for _, size := range []struct {
		name string
		size ts.StateSize
	}{{"empty", ts.StateSize{Accounts: 1, Transfers: 1}}, {"large", ts.IssueState}} {
		m := fsm.New()
		ts.LargeState(b, m, size.size)
		node := machineNode{m}
		if err := node.apply(fsm.Command{Op: fsm.OpTokenPut, At: time.Now(),
			Token: &fsm.Token{Hash: hex.EncodeToString(sum[:]), User: ts.StateAdmin, Expires: time.Now().Add(time.Hour)}}); err != nil {
			b.Fatal(err)
		}
		api := httpapi.New(httpapi.Options{Node: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		for _, rq := range []struct {
			name, path string
			auth       func(*http.Request)
		}{
			{"ping", "/ping", func(*http.Request) {}},
			{"bearer-healthcheck", "/api/sb_healthcheck", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }},
			{"bearer-transfer", "/api/transfers/1", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }},
			{"basic-account", "/api/servers/" + ts.StateServer + "/accounts/" + ts.StateLogin, func(r *http.Request) { r.SetBasicAuth(ts.StateAdmin, ts.StatePassword) }},
		} {
			b.Run(rq.name+"/"+size.name, func(b *testing.B) {
				ts.LoopP99(b, func() {
					r := httptest.NewRequest("GET", rq.path, nil)
					r.RemoteAddr = "127.0.0.1:40000"
					rq.auth(r)
					w := httptest.NewRecorder()
					api.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						b.Fatalf("GET %s: %d %s", rq.path, w.Code, w.Body)
					}
				})
			})
		}
	}
}

func (n machineNode) WaitApplied(context.Context, uint64) error { return nil }
