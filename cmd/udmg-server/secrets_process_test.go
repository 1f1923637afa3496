package main

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestHostKeySealedAtRest checks that the cluster's SSH host key reaches
// Raft's log and snapshots only sealed with the AES passphrase: no file of
// the DataDir holds the private key in PEM, raw or as the base64 of the
// JSON commands, while the node serves SFTP with it.
func TestHostKeySealedAtRest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	if !ts.Eventually(10*time.Second, func() bool { return ts.Greeting(n.SFTPAddr(), time.Second, "SSH-2.0-Go") }) {
		t.Fatalf("no SFTP banner on %s", n.SFTPAddr())
	}
	n.Signal(syscall.SIGTERM)
	if !n.Wait(30 * time.Second) {
		t.Fatal("node did not stop on SIGTERM")
	}
	header := []byte("-----BEGIN OPENSSH PRIVATE KEY-----")
	// 24 bytes from offset 0 encode to 32 characters whatever follows.
	encoded := []byte(base64.StdEncoding.EncodeToString(header[:24]))
	files := 0
	err := filepath.WalkDir(n.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, header) || bytes.Contains(b, encoded) {
			t.Errorf("%s holds the host key in clear", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", n.DataDir)
	}
}
