package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// TestMFTObjects drives servers, accounts, partners, remote accounts, rules
// and transfers through udmgctl against a real node, through a PASSIVE
// node of a two-node cluster so that every write is forwarded.
func TestMFTObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real node processes")
	}
	c := ts.NewCluster(t, 2)
	active := c.WaitOneActive(40*time.Second, "PASSIVE")
	passive := c.Other(active)
	addr := passive.AdminURL()
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}

	code, _, errOut := udmgctl(addr, "servers", "add", "clear-ftp", "--protocol", "ftp", "--port", "2125", "--tls-required")
	if code == 0 || !strings.Contains(errOut, "tlsRequired: only for a server with tls") {
		t.Fatalf("--tls-required without --tls: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "servers", "add", "in-ftp", "--protocol", "ftp", "--port", "2124", "--passive", "32000-32004", "--tls", "--tls-required")
	mustRun(t, addr, "accounts", "add", "in-ftp", "carol", "--password", "carol-password")
	mustRun(t, addr, "accounts", "add", "sftp", "dave", "--key-file", key+".pub")
	hostKey, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = udmgctl(addr, "partners", "add", "bank", "--protocol", "sftp", "--address", "bank.example:22")
	if code == 0 || !strings.Contains(errOut, "hostKey: required") {
		t.Fatalf("an sftp partner without its host key: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "partners", "add", "bank", "--protocol", "sftp", "--address", "bank.example:22", "--host-key", strings.TrimSpace(string(hostKey)))
	mustRun(t, addr, "remote-accounts", "add", "bank", "gw", "--password", "remote-secret-pw", "--key-file", key)
	// An FTPS partner pinned to a certificate (here in-ftp's own), and one
	// given a file that holds no certificate.
	var srv wire.Server
	if err := active.Admin().Must(t, 200, "GET", "/api/servers/in-ftp", nil).Decode(&srv); err != nil || !srv.TLSRequired {
		t.Fatalf("in-ftp: %v %+v", err, srv)
	}
	certFile := filepath.Join(dir, "shop.pem")
	if err := os.WriteFile(certFile, []byte(srv.TLSCert), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, addr, "partners", "add", "shop", "--protocol", "ftp", "--address", "shop.example:21", "--tls", "--tls-cert-file", certFile)
	code, _, errOut = udmgctl(addr, "partners", "add", "shop2", "--protocol", "ftp", "--address", "shop.example:21", "--tls", "--tls-cert-file", key+".pub")
	if code == 0 || !strings.Contains(errOut, "tlsCert: no PEM certificate") {
		t.Fatalf("an FTPS partner pinned to no certificate: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "rules", "add", "statements", "--direction", "receive", "--path", "/outgoing", "--local-dir", "statements")
	out := mustRun(t, addr, "transfers", "add", "--rule", "statements", "--partner", "bank", "--account", "gw", "--file", "may.csv")
	if !strings.Contains(out, "planned") {
		t.Fatalf("transfers add: %q", out)
	}
	// Schedules: a cron spec that does not parse is refused naming the
	// field; a poll is listed, disabled and deleted.
	code, _, errOut = udmgctl(addr, "schedules", "add", "nightly", "--kind", "CRON", "--rule", "statements", "--partner", "bank", "--account", "gw", "--cron", "61 * * * *", "--file", "x.csv")
	if code == 0 || !strings.Contains(errOut, `cron: "61 * * * *" does not parse`) {
		t.Fatalf("a cron spec that does not parse: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "schedules", "add", "fetch", "--kind", "poll", "--rule", "statements", "--partner", "bank", "--account", "gw", "--dir", "/outgoing", "--after", "delete", "--interval", "1m", "--disabled")
	mustRun(t, addr, "schedules", "enable", "fetch")
	if out := mustRun(t, addr, "schedules", "list"); !strings.Contains(out, "fetch") || !strings.Contains(out, "poll") || !strings.Contains(out, "/outgoing") {
		t.Errorf("schedules list lacks the poll:\n%s", out)
	}
	mustRun(t, addr, "schedules", "disable", "fetch")
	var sc wire.Schedule
	if err := active.Admin().Must(t, 200, "GET", "/api/schedules/fetch", nil).Decode(&sc); err != nil || sc.Enabled || sc.After != "delete" {
		t.Fatalf("disabled poll: %v %+v", err, sc)
	}
	mustRun(t, addr, "schedules", "delete", "fetch")

	for _, check := range []struct {
		args []string
		want []string
	}{
		{[]string{"servers", "list"}, []string{"in-ftp", "2124", "true", "sftp", "2222"}},
		{[]string{"accounts", "list", "in-ftp"}, []string{"carol", "true"}},
		{[]string{"accounts", "list", "sftp"}, []string{"dave", "admin"}},
		{[]string{"partners", "list"}, []string{"bank", "bank.example:22", "shop", "shop.example:21", "true"}},
		{[]string{"remote-accounts", "list", "bank"}, []string{"gw", "true"}},
		{[]string{"rules", "list"}, []string{"statements", "receive", "/outgoing"}},
		{[]string{"transfers", "list"}, []string{"statements", "bank", "/outgoing/may.csv"}},
	} {
		out := mustRun(t, active.AdminURL(), check.args...)
		for _, w := range check.want {
			if !strings.Contains(out, w) {
				t.Errorf("udmgctl %s lacks %q:\n%s", strings.Join(check.args, " "), w, out)
			}
		}
		for _, secret := range []string{"remote-secret-pw", "carol-password", "PRIVATE KEY"} {
			if strings.Contains(out, secret) {
				t.Errorf("udmgctl %s shows a secret:\n%s", strings.Join(check.args, " "), out)
			}
		}
	}
	b, _ := os.ReadFile(key)
	if strings.Contains(mustRun(t, addr, "--json", "remote-accounts", "list", "bank"), string(b[40:80])) {
		t.Error("remote account JSON shows the private key")
	}

	// Errors name the field.
	if code, _, errOut := udmgctl(addr, "servers", "add", "bad", "--protocol", "gopher", "--port", "1"); code == 0 || !strings.Contains(errOut, "protocol") {
		t.Errorf("bad protocol: exit %d, %q", code, errOut)
	}
	if code, _, errOut := udmgctl(addr, "rules", "add", "r", "--direction", "sideways", "--path", "/x"); code == 0 || !strings.Contains(errOut, "direction") {
		t.Errorf("bad direction: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "transfers", "cancel", "1")
	mustRun(t, addr, "servers", "disable", "in-ftp")
	mustRun(t, addr, "rules", "delete", "statements", "receive")
	mustRun(t, addr, "accounts", "delete", "in-ftp", "carol")
	mustRun(t, addr, "servers", "delete", "in-ftp")
	if out := mustRun(t, addr, "servers", "list"); strings.Contains(out, "in-ftp") {
		t.Errorf("deleted server still listed:\n%s", out)
	}
}
