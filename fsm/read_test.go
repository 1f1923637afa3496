package fsm

import (
	"bytes"
	"testing"
)

// The single-object lookups find what the state holds, and what they
// return is the caller's own: changing it leaves the machine as it was.
func TestLookupsCopyOnlyWhatTheyReturn(t *testing.T) {
	m := New()
	mustApply(t, m, lease(OpLeaseAcquire, "a", "s1", 1))
	mustApply(t, m, Command{Op: OpInit, Init: &InitArgs{Admin: User{Name: "admin", Hash: []byte("h"), Perms: map[string]string{"users": "rw-"}}}})
	mustApply(t, m, Command{Op: OpTokenPut, Token: &Token{Hash: "th", User: "admin"}})
	mustApply(t, m, Command{Op: OpServerPut, Server: &Server{Name: "sftp", Protocol: ProtoSFTP, Port: 2222}})
	mustApply(t, m, Command{Op: OpAccountPut, Account: &LocalAccount{Server: "sftp", Login: "bob", PasswordHash: []byte("ph"), PublicKeys: []string{"k"}}})
	mustApply(t, m, Command{Op: OpTransferAdd, Transfer: &Transfer{ID: 7, Status: StatusRunning}})
	mustApply(t, m, Command{Op: OpNodeRegister, Node: &Node{ID: "a"}})
	mustApply(t, m, Command{Op: OpLicenseSet, License: []byte("lic")})

	u, ok := m.User("admin")
	if !ok || string(u.Hash) != "h" || u.Perms["users"] != "rw-" {
		t.Fatalf("User(admin) = %+v, %v", u, ok)
	}
	u.Hash[0], u.Perms["users"] = 'x', "---"
	if tk, ok := m.Token("th"); !ok || tk.User != "admin" {
		t.Fatalf("Token(th) = %+v, %v", tk, ok)
	}
	a, ok := m.Account("sftp", "bob")
	if !ok || string(a.PasswordHash) != "ph" || len(a.PublicKeys) != 1 {
		t.Fatalf("Account(sftp, bob) = %+v, %v", a, ok)
	}
	a.PasswordHash[0], a.PublicKeys[0] = 'x', "changed"
	if tr, ok := m.Transfer(7); !ok || tr.Status != StatusRunning {
		t.Fatalf("Transfer(7) = %+v, %v", tr, ok)
	}
	srv := m.Servers()
	delete(srv, "sftp")
	nodes := m.Nodes()
	delete(nodes, "a")
	lic := m.License()
	lic[0] = 'x'

	st := m.State()
	switch {
	case string(st.Users["admin"].Hash) != "h", st.Users["admin"].Perms["users"] != "rw-":
		t.Error("changing User's result changed the machine's user")
	case !bytes.Equal(st.Accounts["sftp/bob"].PasswordHash, []byte("ph")), st.Accounts["sftp/bob"].PublicKeys[0] != "k":
		t.Error("changing Account's result changed the machine's account")
	case len(st.Servers) != 1, len(st.Nodes) != 1, string(st.License) != "lic":
		t.Error("changing Servers', Nodes' or License's result changed the machine")
	}
	for name, found := range map[string]bool{
		"user":     func() bool { _, ok := m.User("nobody"); return ok }(),
		"account":  func() bool { _, ok := m.Account("sftp", "nobody"); return ok }(),
		"transfer": func() bool { _, ok := m.Transfer(8); return ok }(),
		"token":    func() bool { _, ok := m.Token("none"); return ok }(),
	} {
		if found {
			t.Errorf("a missing %s was found", name)
		}
	}
}
