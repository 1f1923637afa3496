package cluster_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// pushDone sends GatewayHome/out/name to the partner of
// ts.AddSSHDPartner and waits for DONE: the sealed private key opened.
func pushDone(t *testing.T, c *ts.Cluster, api *ts.APIClient, sshd *ts.SSHD, remoteDir, name string) {
	t.Helper()
	sum := ts.WriteRandomFile(t, filepath.Join(c.Home, "out", name), 32<<10)
	var tr ts.Transfer
	if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "push", "partner": "remote", "account": sshd.User, "file": name}).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	tr = api.WaitTransfer(t, tr.ID, time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
	if tr.Status != "DONE" {
		t.Fatalf("push %s: %s %s", name, tr.ErrorCode, tr.ErrorDetails)
	}
	if ts.FileSHA256(t, filepath.Join(remoteDir, name)) != sum {
		t.Fatalf("partner's %s differs", name)
	}
}

// TestWrongKEKRefusesActive: a node whose key-encryption key does not open
// the cluster's secrets key (here its [database] AESPassphrase file
// changed) never becomes ACTIVE and says why in one line; with the right
// file back it serves with the same host key.
func TestWrongKEKRefusesActive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	keyFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(keyFile, []byte("the operator's passphrase A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := ts.NewCluster(t, 1, "UDMG_DATABASE_AESPASSPHRASE="+keyFile)
	n := c.WaitOneActive(30*time.Second, "")
	hostKey := ts.HostKey(t, n.SFTPAddr())
	n.Kill()

	os.WriteFile(keyFile, []byte("another passphrase B\n"), 0o600)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	const refusal = "refusing to become ACTIVE"
	epochsBefore := n.CountLog("lease acquired")
	if !ts.Eventually(30*time.Second, func() bool { return n.CountLog(refusal) > 0 }) {
		t.Fatalf("no %q line", refusal)
	}
	// Several lease attempts later it is still not ACTIVE, and has said
	// so once.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if code, mode := n.Ping(); code == 200 {
			t.Fatalf("ACTIVE (%s) with a key-encryption key that does not open the secrets key", mode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := n.CountLog(refusal); got != 1 {
		t.Errorf("%d refusal lines, want 1", got)
	}
	// It refuses before taking a lease epoch, which would only make a
	// successor wait.
	if got := n.CountLog("lease acquired") - epochsBefore; got != 0 {
		t.Errorf("the refusing node took %d lease epochs", got)
	}
	for _, line := range strings.Split(n.Log(), "\n") {
		if strings.Contains(line, refusal) {
			t.Logf("%s", line)
			if !strings.Contains(line, "JoinToken") || !strings.Contains(line, "AESPassphrase") || !strings.Contains(line, keyFile) {
				t.Errorf("refusal %q does not name JoinToken, AESPassphrase and the key file", line)
			}
		}
	}
	n.Kill()
	os.WriteFile(keyFile, []byte("the operator's passphrase A\n"), 0o600)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	if got := ts.HostKey(t, n.SFTPAddr()); got != hostKey {
		t.Errorf("host key %s after the right key file came back, was %s", got, hostKey)
	}
}

// previousRelease builds udmg-server as of the last commit that kept the
// secrets key in <GatewayHome>/passphrase.aes.
func previousRelease(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("SKIP: no git checkout to build the previous release from: %v", err)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", strings.TrimSpace(string(root))}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	// The commit that changed "func LoadSecrets" last; its parent when
	// that commit removed it.
	rev := git("log", "-1", "--format=%H", "-S", "func LoadSecrets", "--", "transfer/secrets.go")
	if !strings.Contains(git("show", rev+":transfer/secrets.go"), "func LoadSecrets") {
		rev += "^"
	}
	bin := ts.ReleaseBinary(t, rev)
	t.Logf("previous release: %s", git("log", "-1", "--format=%h %s", rev))
	return bin
}

// TestUpgradeFromKeyFileLayout: a node of the previous release sealed the
// host key and a partner's key with <GatewayHome>/passphrase.aes. After
// the upgrade the key is in the replicated state: the same host key, the
// partner's key opens, and the file can be overwritten (as a receive rule
// did in issue 12) or deleted without losing a secret.
func TestUpgradeFromKeyFileLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real nodes")
	}
	previous := previousRelease(t)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	// The node starts afresh on the previous release.
	n := c.Nodes[0]
	n.Kill()
	for _, d := range []string{n.DataDir, c.Home} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	current := ts.ServerBinary(t)
	n.UseBinary(previous)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	remoteDir := t.TempDir()
	api.AddSSHDPartner(t, sshd, remoteDir)
	pushDone(t, c, api, sshd, remoteDir, "before-upgrade.bin")
	hostKey := ts.HostKey(t, n.SFTPAddr())
	legacy := filepath.Join(c.Home, "passphrase.aes")
	if _, err := os.Stat(legacy); err != nil {
		t.Fatalf("the previous release left no key file: %v", err)
	}

	n.Kill()
	n.UseBinary(current)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	if n.CountLog("is now kept in the cluster state") != 1 {
		t.Errorf("no log line saying the key file was moved in and can be deleted:\n%s", n.LogTail(20))
	}
	if got := ts.HostKey(t, n.SFTPAddr()); got != hostKey {
		t.Errorf("host key after upgrade %s, was %s", got, hostKey)
	}
	api = n.Admin()
	pushDone(t, c, api, sshd, remoteDir, "after-upgrade.bin")
	// The file no longer matters, and no rule may read it.
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "leak", "direction": "send", "path": remoteDir})
	if r, _ := api.Do("POST", "/api/transfers", map[string]any{"rule": "leak", "partner": "remote", "account": sshd.User, "file": "passphrase.aes"}); r.Status != 400 {
		t.Errorf("sending the old key file: %d %s, want 400", r.Status, r.ErrorMessage())
	}
	if err := os.WriteFile(legacy, []byte("a partner's file of that name\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Kill()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	pushDone(t, c, n.Admin(), sshd, remoteDir, "after-overwrite.bin")
	if got := ts.HostKey(t, n.SFTPAddr()); got != hostKey {
		t.Errorf("host key after the file was overwritten %s, was %s", got, hostKey)
	}
	if bytes.Contains([]byte(n.Log()), []byte("wrong AES passphrase")) {
		t.Error("the node still reads the old key file")
	}
}

// TestLoneNodeGivenToken: an evaluation node with neither JoinToken nor
// AESPassphrase keeps its key-encryption key in DataDir (0600), nothing in
// GatewayHome; given a JoinToken later it reseals the secrets key under
// the token, after which the DataDir key is no longer needed.
func TestLoneNodeGivenToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	c := ts.NewCluster(t, 1, "UDMG_CLUSTER_JOINTOKEN=")
	n := c.WaitOneActive(30*time.Second, "")
	hostKey := ts.HostKey(t, n.SFTPAddr())
	kek := filepath.Join(n.DataDir, "secrets.kek")
	fi, err := os.Stat(kek)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("DataDir key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(c.Home)
	for _, e := range entries {
		if strings.Contains(e.Name(), "passphrase") || strings.Contains(e.Name(), "kek") {
			t.Errorf("a key file in GatewayHome: %s", e.Name())
		}
	}

	n.Kill()
	n.SetEnv("UDMG_CLUSTER_JOINTOKEN=" + c.Token)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	if !ts.Eventually(10*time.Second, func() bool { return n.CountLog("secrets key resealed") == 1 }) {
		t.Errorf("no reseal under the token logged:\n%s", n.LogTail(15))
	}
	if got := ts.HostKey(t, n.SFTPAddr()); got != hostKey {
		t.Errorf("host key with the token %s, was %s", got, hostKey)
	}
	n.Kill()
	if err := os.Remove(kek); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	if got := ts.HostKey(t, n.SFTPAddr()); got != hostKey {
		t.Errorf("host key without the DataDir key %s, was %s", got, hostKey)
	}
}
