package transfer_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// pushOnce sends GatewayHome/out/name to the partner and waits for DONE:
// the partner's private key and password opened.
func pushOnce(t *testing.T, home string, api *ts.APIClient, remoteDir, name string) {
	t.Helper()
	sum := ts.WriteRandomFile(t, filepath.Join(home, "out", name), 64<<10)
	id := startTransfer(t, api, "push", name, nil)
	tr := api.WaitTransfer(t, id, time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
	if tr.Status != "DONE" {
		t.Fatalf("push of %s: %+v", name, tr)
	}
	if ts.FileSHA256(t, filepath.Join(remoteDir, name)) != sum {
		t.Fatalf("partner's %s differs", name)
	}
}

// TestKeyTheftRefused is issue 12's attack with rules and transfers
// write: a send rule whose local path names the key file, or a file under
// DataDir, and a receive rule pulling a partner's file named like the key.
// DataDir and the previous release's key file lie inside GatewayHome, the
// layout in which they are reachable at all.
func TestKeyTheftRefused(t *testing.T) {
	skipShort(t)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	// GatewayHome becomes the cluster directory: the node's DataDir
	// (node1) and a left-over passphrase.aes are inside it.
	n.Kill()
	n.SetEnv("UDMG_PATHS_GATEWAYHOME=" + c.Dir)
	keyFile := filepath.Join(c.Dir, "passphrase.aes")
	keyContent := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	if err := os.WriteFile(keyFile, keyContent, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	remoteDir := t.TempDir()
	setupPartner(t, api, sshd, remoteDir)
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "leak", "direction": "send", "path": remoteDir})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "clobber", "direction": "receive", "path": remoteDir})
	// The partner offers a file named like the key.
	if err := os.WriteFile(filepath.Join(remoteDir, "passphrase.aes"), []byte("the partner's key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Base(n.DataDir)

	refused := func(what, rule, file string) {
		t.Helper()
		body := map[string]any{"rule": rule, "partner": "remote", "account": currentUser(t), "file": file}
		r, err := api.Do("POST", "/api/transfers", body)
		if err != nil {
			t.Fatal(err)
		}
		msg := r.ErrorMessage()
		if r.Status != 400 || !strings.Contains(msg, "rule "+rule) || !strings.Contains(msg, file) || !strings.Contains(msg, "no rule, transfer or account") {
			t.Errorf("%s: %d %q, want 400 naming the rule, the path and why", what, r.Status, msg)
		} else {
			t.Logf("%s: %d %s", what, r.Status, msg)
		}
	}
	refused("send the key file", "leak", "passphrase.aes")
	refused("send the raft log", "leak", dataDir+"/raft/raft-wal/wal-meta.db")
	refused("send the node ID", "leak", dataDir+"/node-id")
	refused("receive over the key file", "clobber", "passphrase.aes")
	refused("receive into DataDir", "clobber", dataDir+"/raft/raft.db")

	// A rule or account whose directory is DataDir is refused as well.
	r, _ := api.Do("POST", "/api/rules", map[string]any{"name": "raftdir", "direction": "send", "path": remoteDir, "localDir": dataDir + "/raft"})
	if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "rule raftdir") {
		t.Errorf("rule with localDir in DataDir: %d %s", r.Status, r.ErrorMessage())
	}
	r, _ = api.Do("POST", "/api/servers/sftp/accounts", map[string]any{"login": dataDir, "password": "pw-of-an-intruder"})
	if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "account "+dataDir) {
		t.Errorf("account whose home is DataDir: %d %s", r.Status, r.ErrorMessage())
	}
	r, _ = api.Do("POST", "/api/servers/sftp/accounts", map[string]any{"login": "passphrase.aes", "password": "pw-of-an-intruder"})
	if r.Status != 400 {
		t.Errorf("account whose home is the key file: %d %s", r.Status, r.ErrorMessage())
	}

	// Nothing was sent, nothing overwritten.
	if b, _ := os.ReadFile(filepath.Join(remoteDir, "passphrase.aes")); string(b) != "the partner's key\n" {
		t.Errorf("the partner's passphrase.aes is now %q", b)
	}
	if _, err := os.Stat(filepath.Join(remoteDir, "wal-meta.db")); err == nil {
		t.Error("the raft log reached the partner")
	}
	if b, _ := os.ReadFile(keyFile); !bytes.Equal(b, keyContent) {
		t.Errorf("the key file is now %q", b)
	}
	// Ordinary files still go: the guard refuses only what it must.
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "plain", "direction": "send", "path": remoteDir})
	ts.WriteRandomFile(t, filepath.Join(c.Dir, "report.csv"), 1000)
	id := startTransfer(t, api, "plain", "report.csv", nil)
	if tr := api.WaitTransfer(t, id, time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" }); tr.Status != "DONE" {
		t.Fatalf("ordinary push: %+v", tr)
	}
	// Even with the key file overwritten, the node serves again after a
	// restart: the secrets key is in the state, not in that file.
	os.WriteFile(keyFile, []byte("a partner's file\n"), 0o600)
	n.Kill()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	pushOnce(t, c.Dir, n.Admin(), remoteDir, "after-restart.bin")
}

// TestSecretsRotate checks `secrets rotate` through the API on a running
// node: every value resealed, the partner's key and password and the SSH
// host key still open, also after a restart and a second rotation (which
// drops the first key).
func TestSecretsRotate(t *testing.T) {
	skipShort(t)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	remoteDir := t.TempDir()
	setupPartner(t, api, sshd, remoteDir)
	hostKey := ts.HostKey(t, n.SFTPAddr())
	pushOnce(t, c.Home, api, remoteDir, "before.bin")

	rotate := func() wire.SecretsRotation {
		t.Helper()
		var rot wire.SecretsRotation
		r := api.Must(t, 200, "POST", "/api/secrets/rotate", nil)
		if err := json.Unmarshal(r.Body, &rot); err != nil {
			t.Fatal(err)
		}
		return rot
	}
	rot := rotate()
	// The host key, the remote account's password and private key.
	if rot.Generation != 2 || rot.Resealed < 3 {
		t.Fatalf("rotation: %+v, want generation 2 and at least 3 values resealed", rot)
	}
	t.Logf("rotation: generation %d, %d values resealed", rot.Generation, rot.Resealed)
	pushOnce(t, c.Home, api, remoteDir, "after-rotate.bin")
	n.Kill()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n = c.WaitOneActive(30*time.Second, "")
	api = n.Admin()
	if got := ts.HostKey(t, n.SFTPAddr()); got != hostKey {
		t.Errorf("host key changed by the rotation: %s, was %s", got, hostKey)
	}
	if rot = rotate(); rot.Generation != 3 {
		t.Fatalf("second rotation: %+v", rot)
	}
	pushOnce(t, c.Home, api, remoteDir, "after-second-rotate.bin")
	// Without administration write, no rotation.
	api.Must(t, 201, "POST", "/api/users", map[string]any{"username": "op", "password": "op-password-1", "perms": map[string]string{"administration": "r--", "transfers": "rw-"}})
	if r, _ := api.As("op", "op-password-1").Do("POST", "/api/secrets/rotate", nil); r.Status != 403 {
		t.Errorf("rotation by a user without administration write: %d, want 403", r.Status)
	}
}
