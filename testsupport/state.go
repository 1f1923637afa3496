package testsupport

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/udmg/gateway/fsm"
)

// StateSize is how large a state LargeState builds: the issue's "flat cost
// as the state grows" figures use 10,000 local accounts, 1,000 partners
// and 10,000 live transfers.
type StateSize struct {
	Accounts, Partners, Transfers int
}

// IssueState is the size of the issue's large state.
var IssueState = StateSize{Accounts: 10000, Partners: 1000, Transfers: 10000}

// Fixture names in the states LargeState builds.
const (
	StateHolder   = "node-a"   // holds the lease (epoch 1) and a license slot
	StateServer   = "sftp"     // the local SFTP server holding every account
	StateLogin    = "login-0"  // an account whose password is StatePassword
	StatePassword = "password" // hashed at bcrypt.MinCost (see LargeState)
	StateAdmin    = "admin"    // an administrator with every permission
)

// LargeState applies to m, as a leader would through Raft, a lease held by
// StateHolder, the node registry entry, an administrator, one SFTP server
// with size.Accounts accounts, size.Partners partners each with a remote
// account, and size.Transfers live (RUNNING) transfers. Every password hash
// is bcrypt.MinCost, so that a benchmarked login shows what the state
// costs rather than bcrypt's default cost. The 100,000 history rows of the
// issue live in the mirror's table, not in the state (the machine keeps a
// bounded window of finished transfers), so no login or /ping reads them.
func LargeState(tb testing.TB, m *fsm.Machine, size StateSize) {
	tb.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(StatePassword), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	apply := func(c fsm.Command) {
		tb.Helper()
		c.At = at
		b, err := fsm.Encode(c)
		if err != nil {
			tb.Fatal(err)
		}
		if r := m.Apply(b); r.Err != nil {
			tb.Fatalf("apply %s: %v", c.Op, r.Err)
		}
	}
	apply(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: StateHolder, Session: "s", Epoch: 1, Duration: time.Hour}})
	apply(fsm.Command{Op: fsm.OpNodeRegister, Node: &fsm.Node{ID: StateHolder, Hostname: "a", AdminAddr: "127.0.0.1:8080"}})
	apply(fsm.Command{Op: fsm.OpSlots, Licensed: []string{StateHolder}})
	perms := map[string]string{"administration": "rwx", "servers": "rwx", "partners": "rwx", "rules": "rwx", "users": "rwx", "transfers": "rwx"}
	apply(fsm.Command{Op: fsm.OpInit, Init: &fsm.InitArgs{Admin: fsm.User{Name: StateAdmin, Hash: hash, Perms: perms}}})
	apply(fsm.Command{Op: fsm.OpServerPut, Server: &fsm.Server{Name: StateServer, Protocol: fsm.ProtoSFTP, Port: 2222, Enabled: true}})
	for i := range size.Accounts {
		apply(fsm.Command{Op: fsm.OpAccountPut, Account: &fsm.LocalAccount{Server: StateServer, Login: fmt.Sprintf("login-%d", i), PasswordHash: hash}})
	}
	for i := range size.Partners {
		name := fmt.Sprintf("partner-%d", i)
		apply(fsm.Command{Op: fsm.OpPartnerPut, Partner: &fsm.Partner{Name: name, Protocol: fsm.ProtoSFTP, Address: "partner.example:22",
			HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}})
		apply(fsm.Command{Op: fsm.OpRemoteAccountPut, RemoteAccount: &fsm.RemoteAccount{Partner: name, Login: "gw", Password: "sealed"}})
	}
	for i := range size.Transfers {
		apply(fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &fsm.Transfer{ID: uint64(i + 1), IsServer: true, Protocol: fsm.ProtoSFTP,
			Agent: StateServer, Account: fmt.Sprintf("login-%d", i%max(size.Accounts, 1)), LocalPath: fmt.Sprintf("in/%d.bin", i),
			RemotePath: fmt.Sprintf("%d.bin", i), Filesize: -1, Status: fsm.StatusRunning, Step: fsm.StepData, Start: at, NodeID: StateHolder}})
	}
}

// LoopP99 runs f under b.Loop and reports, beside the mean, the 99th
// percentile of one call as p99-ns: the issue's goals on the large state
// are percentiles.
func LoopP99(b *testing.B, f func()) {
	b.Helper()
	var times []time.Duration
	for b.Loop() {
		t0 := time.Now()
		f()
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)*99/100]), "p99-ns")
}
