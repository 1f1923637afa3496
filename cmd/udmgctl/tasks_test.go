package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestRulesWithTasks: udmgctl declares a receive rule's tasks (inline and
// from a file), shows a refused task with the rule, list, position and
// problem, and, once a partner's SFTP upload ran the rule's post-tasks,
// lists them in transfers show with their state, duration and node.
func TestRulesWithTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real node processes")
	}
	if _, err := exec.LookPath("sftp"); err != nil {
		t.Skip("sftp not installed (make deps installs it)")
	}
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(40*time.Second, "")
	addr := n.AdminURL()
	dir := t.TempDir()

	code, _, errOut := udmgctl(addr, "rules", "add", "inbox", "--direction", "receive", "--path", "/in",
		"--post-tasks", `[{"type": "COPY", "args": {"path": "archive"}}, {"type": "MOVE"}]`)
	if code == 0 || !strings.Contains(errOut, `rule inbox: postTasks task 2 ("MOVE"): MOVE: argument "path" is required`) {
		t.Fatalf("a MOVE without its path: exit %d, %q", code, errOut)
	}
	code, _, errOut = udmgctl(addr, "rules", "add", "inbox", "--direction", "receive", "--path", "/in", "--post-tasks", `{"type": "COPY"}`)
	if code == 0 || !strings.Contains(errOut, "postTasks: not a JSON array of tasks") {
		t.Fatalf("tasks that are not an array: exit %d, %q", code, errOut)
	}
	post := filepath.Join(dir, "post.json")
	if err := os.WriteFile(post, []byte(`[{"type": "CHECKSUM"}, {"type": "COPY", "args": {"path": "archive"}}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, addr, "rules", "add", "inbox", "--direction", "receive", "--path", "/in", "--post-tasks", "@"+post,
		"--pre-tasks", `[{"type": "CHECK", "args": {"namePattern": "*.csv"}}]`)
	mustRun(t, addr, "rules", "update", "inbox", "receive", "--error-tasks", `[{"type": "MOVE", "args": {"path": "quarantine"}}]`)
	if out := mustRun(t, addr, "rules", "list"); !strings.Contains(out, "inbox") || !strings.Contains(out, "/in") {
		t.Fatalf("rules list:\n%s", out)
	}
	if out := mustRun(t, addr, "--json", "rules", "list"); !strings.Contains(out, `"quarantine"`) || !strings.Contains(out, `"*.csv"`) {
		t.Fatalf("rules list --json lacks the tasks:\n%s", out)
	}

	// A partner uploads to the seeded "sftp" server with its own key.
	key := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	mustRun(t, addr, "accounts", "add", "sftp", "erin", "--key-file", key+".pub")
	src := filepath.Join(dir, "report.csv")
	if err := os.WriteFile(src, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !ts.Eventually(20*time.Second, func() bool { return ts.Greeting(n.SFTPAddr(), time.Second, "SSH-2.0-Go") }) {
		t.Fatal("no SFTP server")
	}
	if out, err := ts.SFTP(n.SFTPAddr(), "erin", key, fmt.Sprintf("-mkdir in\nput %s in/report.csv\n", src)); err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	var id uint64
	if !ts.Eventually(30*time.Second, func() bool {
		all, err := n.Admin().Transfers()
		for _, tr := range all {
			if tr.RemotePath == "/in/report.csv" && tr.Status == "DONE" {
				id = tr.ID
			}
		}
		return err == nil && id != 0
	}) {
		t.Fatal("the upload's chain did not end DONE")
	}
	out := mustRun(t, addr, "transfers", "show", fmt.Sprint(id))
	for _, want := range []string{"Tasks:", "PHASE", "pre ", "CHECK", "post", "CHECKSUM", "COPY", "DONE", n.IP} {
		if !strings.Contains(out, want) {
			t.Errorf("transfers show lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Home, "archive", "report.csv")); err != nil {
		t.Errorf("the COPY post-task left no copy: %v", err)
	}
}

// TestKeysAddProtected: keys add takes a private key gpg protected with a
// passphrase only with --passphrase-file; the passphrase shows nowhere in
// udmgctl's output, and keys list shows the key private. secrets add,
// update, list and delete handle a secret of the tasks from a file.
func TestKeysAddProtected(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real node processes")
	}
	const pass = "desk passphrase 4"
	g := ts.NewGPG(t)
	uid := "Desk <pgp@desk.example>"
	g.Run(nil, "--passphrase", pass, "--quick-gen-key", uid, "future-default", "default", "never")
	dir := t.TempDir()
	keyFile, passFile := filepath.Join(dir, "desk.asc"), filepath.Join(dir, "pass")
	if err := os.WriteFile(keyFile, g.Run(nil, "--passphrase", pass, "--armor", "--export-secret-keys", uid), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := ts.NewCluster(t, 1)
	addr := c.WaitOneActive(40*time.Second, "").AdminURL()
	code, _, errOut := udmgctl(addr, "keys", "add", "desk", "--file", keyFile)
	if code == 0 || !strings.Contains(errOut, "protected by a passphrase") {
		t.Fatalf("a protected key without its passphrase: exit %d, %q", code, errOut)
	}
	code, out, errOut := udmgctl(addr, "keys", "add", "desk", "--file", keyFile, "--passphrase-file", passFile)
	if code != 0 || strings.Contains(out+errOut, pass) {
		t.Fatalf("keys add with --passphrase-file: exit %d, %q %q", code, out, errOut)
	}
	if out := mustRun(t, addr, "keys", "list"); !strings.Contains(out, "desk") || !strings.Contains(out, "true") || strings.Contains(out, pass) {
		t.Errorf("keys list:\n%s", out)
	}

	// A secret of the tasks, from a file, never shown.
	valueFile := filepath.Join(dir, "token")
	if err := os.WriteFile(valueFile, []byte("Bearer desk-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := udmgctl(addr, "secrets", "add", "desk-hook"); code == 0 || !strings.Contains(errOut, "--value-file is required") {
		t.Fatalf("secrets add without a value: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "secrets", "add", "desk-hook", "--value-file", valueFile)
	mustRun(t, addr, "secrets", "update", "desk-hook", "--value-file", valueFile)
	if out := mustRun(t, addr, "secrets", "list"); !strings.Contains(out, "desk-hook") || strings.Contains(out, "desk-token") {
		t.Errorf("secrets list:\n%s", out)
	}
	mustRun(t, addr, "secrets", "delete", "desk-hook")
	if out := mustRun(t, addr, "secrets", "list"); strings.Contains(out, "desk-hook") {
		t.Errorf("secrets list after delete:\n%s", out)
	}
}
